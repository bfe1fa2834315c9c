"""`tunewise export RUN_DIR --merge [--out DIR]`: a merged model and an inference snippet."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser(
        "export",
        help="merge a trained adapter into its base model; write inference.py",
        description="Write RUN_DIR/inference.py (same chat template as training) and, with "
        "--merge, a merged bf16 model (QLoRA: merged into a dequantised base).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory whose training completed")
    p.add_argument("--merge", action="store_true", help="merge the LoRA/QLoRA adapter into the base weights")
    p.add_argument(
        "--out", metavar="DIR", help="where the merged model goes (default RUN_DIR/merged; never overwritten)"
    )
    p.add_argument(
        "--allow-network",
        action="store_true",
        help="let --merge download the base model from the hub (default: local files and the HF cache "
        "only; no request, no token sent)",
    )
    return p


def run(args) -> int:
    from launcher.export import export

    export(args.run_dir, merge=args.merge, out=args.out, allow_network=args.allow_network)
    return 0
