"""`tunewise eval RUN_DIR [--format text|json] [--max-examples N]`: did fine-tuning help?

Scores the base model zero-shot and few-shot and the fine-tuned model(s) on the run's held-out split, with
paired bootstrap intervals and a verdict; writes RUN_DIR/eval.json, the Evaluation section of report.md,
eval_loss.png and eval_metrics.png, and the headline numbers into summary.json.
Exit codes: 0 measured (whatever the verdict); 2 bad input (no run, no held-out split, no reference
answers, base model not on disk).
"""

from __future__ import annotations

import json


def add_parser(sub):
    p = sub.add_parser(
        "eval",
        help="measure the base model (zero- and few-shot) and the fine-tuned model on the "
        "held-out split: metrics with intervals and a verdict",
        description="Did fine-tuning help? Scores the base model zero-shot and few-shot and the "
        "fine-tuned model(s) on the run's held-out split, with paired bootstrap intervals and a verdict; "
        "writes eval.json, report.md's Evaluation section and two PNG plots. Runs at the end of a "
        "launched job too, unless plan.yaml sets evaluation.enabled: false.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `tunewise recommend --out`")
    p.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="text (a table and the verdict) or json (the eval.json object on stdout)",
    )
    p.add_argument(
        "--max-examples",
        type=int,
        metavar="N",
        help="evaluate at most N held-out examples (default: plan.yaml evaluation.max_examples, 200)",
    )
    return p


def run(args) -> int:
    from advisor.errors import UserError

    if args.max_examples is not None and args.max_examples < 1:
        raise UserError(
            f"--max-examples must be at least 1, got {args.max_examples}", "e.g. --max-examples 100"
        )
    from launcher.evaluation import evaluate_run

    result = evaluate_run(args.run_dir, max_examples=args.max_examples)
    if args.format == "json":
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        from rich.console import Console

        from launcher.evaluation.section import terminal

        Console().print(terminal(result))
    return 0
