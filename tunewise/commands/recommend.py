"""`tunewise recommend --answers F [--format text|markdown|json] [--brief] [--out RUN_DIR] [--no-detect]`.

Exit codes: 0 with a recommendation (even "do not fine-tune"); 1 when a method the user forced does
not fit or the dataset is unusable; 2 for bad input.
"""

from __future__ import annotations

import json
import sys

from advisor.errors import CheckFailed, UserError


def add_parser(sub):
    p = sub.add_parser(
        "recommend",
        help="recommend prompting / RAG / fine-tuning and write the training plan",
        description="Reads an answers file, inspects the data, model and GPUs, applies the "
        "guide's rules and prints the recommendation with its reasons.",
    )
    p.add_argument(
        "--answers", required=True, metavar="FILE", help="answers YAML (see README: the answers file)"
    )
    p.add_argument(
        "--format",
        choices=["text", "markdown", "json"],
        default="text",
        help="text (terminal), markdown (report.md) or json (one object on stdout)",
    )
    p.add_argument(
        "--out",
        metavar="RUN_DIR",
        help="also write a run directory: report.md, report.json, "
        "plan.yaml, launch.sh, data split (never overwrites: an existing RUN_DIR gets a sibling)",
    )
    p.add_argument(
        "--no-detect", action="store_true", help="do not probe NVML; use only the gpus in the answers"
    )
    p.add_argument(
        "--probe",
        action="store_true",
        help="load the model and measure few-shot prompting on a "
        "held-out sample of the dataset before deciding (the figure the rules weigh against `success`)",
    )
    p.add_argument(
        "--brief",
        action="store_true",
        help="about one screen: the decision, the rules that decided "
        "it, the memory fit, the key plan values and every warning (text format only)",
    )
    return p


def run(args) -> int:
    from advisor.answers import load_answers
    from advisor.recommend import recommend, recommendation_json

    if getattr(args, "brief", False) and args.format != "text":
        raise UserError(
            f"--brief works with --format text only, not --format {args.format}",
            f"drop --brief for the full {args.format} report, or drop --format for the brief view",
        )
    if args.out is not None and not args.out.strip():
        raise UserError("--out is empty", "name the run directory to write, e.g. --out runs/my-run")
    answers = load_answers(args.answers)
    probe = None
    if getattr(args, "probe", False):
        from launcher.evaluation import probe as measure

        probe = measure(answers)
    rec = recommend(answers, detect_gpus=not args.no_detect, probe=probe)
    if getattr(args, "brief", False):
        return _brief(rec, args)
    run_dir = failed = None
    if args.out:  # first: writing completes the plan (the data split), which is then printed
        try:
            run_dir = _write_run_dir(rec, args.out)
        except (UserError, CheckFailed) as e:
            failed = e  # the report is still shown, then the error
    if args.format == "json":
        print(json.dumps(recommendation_json(rec), indent=2, default=str))
    else:
        from advisor.report import render

        sys.stdout.write(render(rec, args.format))
    if failed is not None:
        raise failed
    if run_dir is not None:
        print(_wrote(run_dir, args.out), file=sys.stderr)
    for p in rec.problems:
        print(f"tunewise: {p}", file=sys.stderr)
    return rec.exit_code


def _brief(rec, args) -> int:
    """The brief view; with --out the run directory is written first, so the view can point at its report."""
    import shlex

    from advisor.report import show_path
    from advisor.report.brief import render_brief

    command = f"`tunewise recommend --answers {shlex.quote(args.answers)}`"
    where = f"Full report: {command}"
    if args.out:
        run_dir = _write_run_dir(rec, args.out)
        print(_wrote(run_dir, args.out), file=sys.stderr)
        where = f"Full report: `{show_path(str(run_dir / 'report.md'))}`, or {command}"
    sys.stdout.write(render_brief(rec, where))
    for p in rec.problems:
        print(f"tunewise: {p}", file=sys.stderr)
    return rec.exit_code


def _wrote(run_dir, asked: str) -> str:
    """Say where the run went; when RUN_DIR existed, say why a sibling was made instead."""
    from pathlib import Path

    if Path(run_dir).resolve() != Path(asked).expanduser().resolve():
        return f"{asked} already exists and is never overwritten: wrote {run_dir}"
    return f"wrote {run_dir}"


def _write_run_dir(rec, out: str):
    """The run directory (a Spectrum plan has its layers already: `recommend` scanned the local model)."""
    from launcher.rundir import write_recommendation

    return write_recommendation(rec, out)
