"""`tunewise launch RUN_DIR`: run (or resume) the training job a run directory describes."""

from __future__ import annotations

from tunewise.commands.argtypes import positive_int


def add_parser(sub):
    p = sub.add_parser(
        "launch",
        help="run or resume the training job in a run directory",
        description="Run the plan in RUN_DIR (written by `recommend --out` or the wizard). "
        "Launching again resumes from the last checkpoint; SIGTERM/Ctrl-C saves one and stops.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory holding plan.yaml")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="dry run on CPU: the same plan with a tiny stand-in model, a few dozen steps, in RUN_DIR/smoke",
    )
    p.add_argument(
        "--max-steps",
        type=positive_int,
        metavar="N",
        help="stop after N optimizer steps; the run then counts as "
        "finished (a later launch does not continue it), so try it on a copy of RUN_DIR",
    )
    p.add_argument("--save-steps", type=positive_int, metavar="N", help="save a checkpoint every N steps")
    p.add_argument(
        "--allow-network",
        action="store_true",
        help="let the job reach the Hugging Face hub (off by default: models must be local)",
    )
    p.add_argument(
        "--cpu",
        action="store_true",
        help="run the plan as is on CPU (tiny models and tests; several GPUs become CPU processes)",
    )
    return p


def run(args) -> int:
    from launcher.launch import launch

    return launch(
        args.run_dir,
        smoke=args.smoke,
        max_steps=args.max_steps,
        save_steps=args.save_steps,
        allow_network=args.allow_network,
        cpu=args.cpu,
    )
