"""Held-out evaluation: did fine-tuning help, beyond the noise, over prompting? (`tunewise eval RUN_DIR`)

`evaluate_run(run_dir)` scores the base model zero-shot and few-shot and the fine-tuned model(s) on the run's
held-out split, with paired bootstrap intervals and a verdict (launcher/evaluation/run.py);
`probe(answers)` measures few-shot prompting on a sample of the user's data for `recommend --probe`.
torch, transformers and the metric libraries load only when a function runs.
"""

from __future__ import annotations

__all__ = ["evaluate_at_end", "evaluate_run", "probe"]


def evaluate_run(run_dir, **kwargs) -> dict:
    from launcher.evaluation.run import evaluate_run as _run

    return _run(run_dir, **kwargs)


def probe(answers, **kwargs) -> dict:
    from launcher.evaluation.probe import probe_few_shot

    return probe_few_shot(answers, **kwargs)


def evaluate_at_end(run_dir, plan) -> None:
    """The end of a launched job: evaluate when the plan's `evaluation.enabled` says so (plans written by
    `recommend` do; a plan without the section does not). A problem is reported, never fails the job."""
    import os
    import sys

    from advisor.errors import UserError

    if plan.evaluation is None or not plan.evaluation.enabled:
        return
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        print(
            f"[tunewise] eval: not run inside a multi-process job; run `tunewise eval {run_dir}`", flush=True
        )
        return
    try:
        from launcher.evaluation.run import evaluate_run as _run
        from launcher.evaluation.section import terminal

        result = _run(run_dir)
    except UserError as e:
        print(f"[tunewise] eval: skipped: {e}", file=sys.stderr, flush=True)
        return
    except Exception as e:  # the model is trained and saved; a failed measurement must not undo that
        print(
            f"[tunewise] eval: failed ({type(e).__name__}: {e}); retry with `tunewise eval {run_dir}`",
            file=sys.stderr,
            flush=True,
        )
        return
    from rich.console import Console

    Console(stderr=False).print(terminal(result))
