"""Held-out evaluation: did fine-tuning help, beyond the noise, over prompting? (`tunewise eval RUN_DIR`)

`evaluate_run(run_dir)` scores the base model zero-shot and few-shot and the fine-tuned model(s) on the run's
held-out split, with paired bootstrap intervals and a verdict (launcher/evaluation/run.py);
`probe(answers)` measures few-shot prompting on a sample of the user's data for `recommend --probe`.
torch, transformers and the metric libraries load only when a function runs.
"""

from __future__ import annotations

__all__ = ["evaluate_run", "probe"]


def evaluate_run(run_dir, **kwargs) -> dict:
    from launcher.evaluation.run import evaluate_run as _run

    return _run(run_dir, **kwargs)


def probe(answers, **kwargs) -> dict:
    from launcher.evaluation.probe import probe_few_shot

    return probe_few_shot(answers, **kwargs)
