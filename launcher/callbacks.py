"""Trainer callbacks the training script adds: metrics.jsonl, clean stop on a signal, test faults.

Imported by `launcher.train` inside `main()` only (it pulls in transformers).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from transformers import TrainerCallback

GiB = 1024**3


def _distributed_any(flag: bool) -> bool:
    """True on every rank when any rank has `flag` set, so all ranks stop at the same step (a rank
    that stops alone would leave the others waiting in a collective forever)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    device = "cuda" if torch.cuda.is_available() and dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


class StopOnSignal(TrainerCallback):
    """SIGTERM or Ctrl-C: finish the current step, save a checkpoint, stop. A second signal stops hard."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore(self) -> None:
        """Put the previous handlers back (the script may run inside a longer-lived process)."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if self.requested:  # second signal: the user really means it
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        print(f"\n[tunewise] {self.requested} received: saving a checkpoint after this step, then stopping",
              flush=True)

    def on_step_end(self, args, state, control, **kwargs):
        if _distributed_any(self.requested is not None):
            self.requested = self.requested or "peer"
            control.should_save = True
            control.should_training_stop = True
        return control


class MetricsLog(TrainerCallback):
    """Append one JSON object per log event to metrics.jsonl (flushed per line, readable while it grows)."""

    def __init__(self, path: Path, stage: str) -> None:
        self.path = Path(path)
        self.stage = stage
        self.t0 = time.monotonic()
        self.tokens0: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = time.monotonic()
        self.tokens0 = state.num_input_tokens_seen or 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        import torch

        row = {"time": round(time.time(), 3), "stage": self.stage, "step": state.global_step,
               "max_steps": state.max_steps, "epoch": round(state.epoch or 0.0, 4)}
        row.update({k: v for k, v in logs.items() if isinstance(v, int | float | str)})
        elapsed = time.monotonic() - self.t0
        seen = (state.num_input_tokens_seen or 0) - (self.tokens0 or 0)
        row["tokens_seen"] = int(state.num_input_tokens_seen or 0)  # non-padding tokens, this process
        if seen > 0 and elapsed > 0:
            # Tokens this process saw; every rank sees as many, so the job's rate is this x world size.
            row["tokens_per_s"] = round(seen * max(1, args.world_size) / elapsed, 1)
        if torch.cuda.is_available():
            row["gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / GiB, 3)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()


class FaultInjection(TrainerCallback):
    """Test hooks, off unless their environment variables are set.

    TUNEWISE_TEST_OOM_ATTEMPTS=N: attempts 1..N (TUNEWISE_ATTEMPT, set by the launcher) raise
    `torch.OutOfMemoryError` on their first step, as a too-large micro-batch would on a real GPU.
    TUNEWISE_TEST_STEP_DELAY=S: sleep S seconds per step, so a test can signal mid-training.
    """

    def __init__(self) -> None:
        self.oom_attempts = int(os.environ.get("TUNEWISE_TEST_OOM_ATTEMPTS", "0"))
        self.attempt = int(os.environ.get("TUNEWISE_ATTEMPT", "1"))
        self.delay = float(os.environ.get("TUNEWISE_TEST_STEP_DELAY", "0"))

    def on_step_begin(self, args, state, control, **kwargs):
        if self.attempt <= self.oom_attempts:
            import torch

            raise torch.OutOfMemoryError(f"CUDA out of memory (injected by TUNEWISE_TEST_OOM_ATTEMPTS, "
                                         f"attempt {self.attempt})")
        if self.delay:
            time.sleep(self.delay)


def stage_metrics(path: Path, stage: str) -> dict:
    """First and last training loss, last eval loss and last tokens/s of one stage, from metrics.jsonl."""
    out: dict = {"loss_first": None, "loss_last": None, "eval_loss": None, "tokens_per_s": None}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line being written right now
        if row.get("stage") != stage:
            continue
        if "loss" in row:
            out["loss_first"] = row["loss"] if out["loss_first"] is None else out["loss_first"]
            out["loss_last"] = row["loss"]
        if "eval_loss" in row:
            out["eval_loss"] = row["eval_loss"]
        if "tokens_per_s" in row:
            out["tokens_per_s"] = row["tokens_per_s"]
    return out
