"""`summary.json`: what one run did, written atomically at the start and end of every stage.

Fields (issue 5): status (running | completed | stopped | failed), stage, method, steps, loss_first,
loss_last, eval_loss, tokens_per_s, peak_gib_measured (torch.cuda.max_memory_allocated, null on CPU),
peak_gib_predicted (the plan's estimate), resumed_from, output_dir, adapter_dir, oom_steps; plus
error and attempt where they apply. Measured vs predicted peak is the memory estimator's feedback.
Also trainable_params (what the optimizer updated). On a GPU also: peak_reserved_gib (the caching
allocator's peak), device_gib_measured (what the GPU showed in use at the end of training) and
device_gib_predicted (the plan's device estimate).
Speed (issue 18): tokens_per_s_predicted and step_s_predicted (the plan's forecast for the stage, `speed`),
tokens_per_s_measured and step_s_measured (the optimizer steps after warm-up, launcher.callbacks.SpeedProbe),
wall_s_measured (the stage's trainer.train() on this launch) and wall_s_predicted (the plan's time for the
stage, scaled to the steps this launch ran); null when unknown.
"""

from __future__ import annotations

import json
from pathlib import Path

from launcher.rundir import atomic_write

FIELDS = (
    "status",
    "stage",
    "method",
    "steps",
    "loss_first",
    "loss_last",
    "eval_loss",
    "tokens_per_s",
    "peak_gib_measured",
    "peak_gib_predicted",
    "resumed_from",
    "output_dir",
    "adapter_dir",
    "oom_steps",
    "tokens_per_s_predicted",
    "tokens_per_s_measured",
    "step_s_predicted",
    "step_s_measured",
    "wall_s_predicted",
    "wall_s_measured",
)


# A measured speed this far from the forecast (either way) is worth telling the user (the job and the launch).
SPEED_LARGE_DIFFERENCE = 0.25


def read_summary(run_dir: str | Path) -> dict:
    """The run's summary, or {} when there is none yet (or it cannot be parsed)."""
    try:
        data = json.loads((Path(run_dir) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}  # a JSON list or number is no summary


def write_summary(run_dir: str | Path, **values) -> dict:
    """Merge `values` into the run's summary.json (every contract field present, null when unknown)."""
    summary = {k: None for k in FIELDS}
    summary["oom_steps"] = []
    summary.update(read_summary(run_dir))
    summary.update(values)
    atomic_write(Path(run_dir) / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    return summary
