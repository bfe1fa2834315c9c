"""`summary.json`: what one run did, written atomically at the start and end of every stage.

Fields (issue 5): status (running | completed | stopped | failed), stage, method, steps, loss_first,
loss_last, eval_loss, tokens_per_s, peak_gib_measured (torch.cuda.max_memory_allocated, null on CPU),
peak_gib_predicted (the plan's estimate), resumed_from, output_dir, adapter_dir, oom_steps; plus
error and attempt where they apply. Measured vs predicted peak is the memory estimator's feedback.
Also trainable_params (what the optimizer updated). On a GPU also: peak_reserved_gib (the caching
allocator's peak), device_gib_measured (what the GPU showed in use at the end of training) and
device_gib_predicted (the plan's device estimate).
"""

from __future__ import annotations

import json
from pathlib import Path

from launcher.rundir import atomic_write

FIELDS = ("status", "stage", "method", "steps", "loss_first", "loss_last", "eval_loss", "tokens_per_s",
          "peak_gib_measured", "peak_gib_predicted", "resumed_from", "output_dir", "adapter_dir", "oom_steps")


def read_summary(run_dir: str | Path) -> dict:
    """The run's summary, or {} when there is none yet (or it cannot be parsed)."""
    try:
        return json.loads((Path(run_dir) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_summary(run_dir: str | Path, **values) -> dict:
    """Merge `values` into the run's summary.json (every contract field present, null when unknown)."""
    summary = {k: None for k in FIELDS}
    summary["oom_steps"] = []
    summary.update(read_summary(run_dir))
    summary.update(values)
    atomic_write(Path(run_dir) / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    return summary
