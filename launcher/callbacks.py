"""Trainer callbacks the training script adds: metrics.jsonl, clean stop on a signal, test faults.

Imported by `launcher.train` inside `main()` only (it pulls in transformers).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from transformers import TrainerCallback

from launcher.summary import SPEED_LARGE_DIFFERENCE

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
    """Ends training after the step during which a stop was requested (`jobcontrol.StopRequest`: SIGTERM,
    Ctrl-C, the launcher gone), with a checkpoint saved; every rank stops at the same step."""

    def __init__(self, request) -> None:
        self.stop = request

    @property
    def requested(self) -> str | None:
        return self.stop.requested

    def on_step_end(self, args, state, control, **kwargs):
        if _distributed_any(self.stop.requested is not None):
            self.stop.requested = self.stop.requested or "peer"
            control.should_save = True
            control.should_training_stop = True
        return control


class LogLastStep(TrainerCallback):
    """Log the last optimizer step's loss too, whatever the logging interval: summary.json's `loss_last` is
    the last step's (a 2-step run logging every 5 steps used to report its first step's loss as the last)."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.max_steps and state.global_step >= state.max_steps:
            control.should_log = True
        return control


class MarkComplete(TrainerCallback):
    """After each save, record the checkpoint's files and sizes (`launcher.checkpoints`), last and
    atomically: a checkpoint without the record, or whose files no longer match it, is not resumed from."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            from launcher.checkpoints import write_record

            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ckpt.is_dir():
                write_record(ckpt)
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

        row = {
            "time": round(time.time(), 3),
            "stage": self.stage,
            "step": state.global_step,
            "max_steps": state.max_steps,
            "epoch": round(state.epoch or 0.0, 4),
        }
        row.update({k: v for k, v in logs.items() if isinstance(v, int | float | str)})
        elapsed = time.monotonic() - self.t0
        seen = (state.num_input_tokens_seen or 0) - (self.tokens0 or 0)
        row["tokens_seen"] = int(state.num_input_tokens_seen or 0)  # non-padding tokens, this process
        if seen > 0 and elapsed > 0:
            # Tokens this process saw; every rank sees as many, so the job's rate is this x world size.
            row["tokens_per_s"] = round(seen * max(1, args.world_size) / elapsed, 1)
        if torch.cuda.is_available():
            row["gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / GiB, 3)
        from launcher.safefiles import append_line

        append_line(self.path, json.dumps(row))


# The job's own speed: the first optimizer steps after these warm-up steps (CUDA kernels chosen, caches
# filled) are timed, then the measured step replaces the plan's forecast in the ETA.
SPEED_WARMUP_STEPS = 2
SPEED_WINDOW_STEPS = 5


class SpeedProbe(TrainerCallback):
    """Measures the optimizer step after warm-up and replaces the plan's forecast with a measured ETA.

    Step time is the sum of on_step_begin -> on_step_end intervals (evaluation and checkpointing between
    steps are left out, so it compares with the forecast's step); the ETA uses the wall-clock rate over the
    same steps (evaluations included). One `{"event": "speed", ...}` row goes to metrics.jsonl, the job
    prints the comparison (with a warning when it differs by more than SPEED_LARGE_DIFFERENCE), and
    `result()` gives the summary.json fields. `predicted_step_s`/`predicted_tokens_per_s`: the plan's.
    """

    def __init__(
        self,
        path: Path,
        stage: str,
        predicted_step_s: float | None = None,
        predicted_tokens_per_s: float | None = None,
        *,
        compare: bool = True,
        warmup: int = SPEED_WARMUP_STEPS,
        window: int = SPEED_WINDOW_STEPS,
    ) -> None:
        self.path, self.stage, self.compare = Path(path), stage, compare
        self.predicted_step_s, self.predicted_tokens_per_s = predicted_step_s, predicted_tokens_per_s
        self.warmup, self.window = warmup, window
        self.first_step: int | None = None
        self.begin: float | None = None
        self.busy = 0.0  # seconds inside the timed steps
        self.timed = 0
        self.start: tuple[float, int] | None = None  # (wall clock, tokens seen) when timing began
        self.measured: dict | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.first_step = state.global_step  # a resumed run warms up again

    def on_step_begin(self, args, state, control, **kwargs):
        if self.measured is None and state.global_step - (self.first_step or 0) >= self.warmup:
            self.begin = time.monotonic()
            if self.start is None:
                self.start = (self.begin, state.num_input_tokens_seen or 0)

    def on_step_end(self, args, state, control, **kwargs):
        if self.begin is None or self.measured is not None:
            return
        now = time.monotonic()
        self.busy += now - self.begin
        self.begin = None
        self.timed += 1
        if self.timed >= self.window or state.global_step >= state.max_steps:
            self._measure(args, state, now)

    def _measure(self, args, state, now: float) -> None:
        wall = now - self.start[0]
        tokens = ((state.num_input_tokens_seen or 0) - self.start[1]) * max(1, args.world_size)
        step_s = self.busy / self.timed
        self.measured = {
            "step_s_measured": round(step_s, 4),
            "tokens_per_s_measured": round(tokens / self.busy, 1) if tokens > 0 else None,
            "eta_s": round((state.max_steps - state.global_step) * wall / self.timed, 3),
        }
        if not state.is_world_process_zero:
            return
        row = {
            "time": round(time.time(), 3),
            "event": "speed",
            "stage": self.stage,
            "step": state.global_step,
            "max_steps": state.max_steps,
            **self.measured,
            "step_s_predicted": self.predicted_step_s,
            "tokens_per_s_predicted": self.predicted_tokens_per_s,
        }
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        line = (
            speed_line(self.measured, self.predicted_step_s, self.predicted_tokens_per_s)
            if self.compare
            else speed_line(self.measured, None, None).replace(
                "no forecast to compare with", "the forecast is for the plan's GPU, not this device"
            )
        )
        print(
            f"[tunewise] {line}; "
            f"ETA {self.measured['eta_s'] / 60:,.1f} min for the remaining {state.max_steps - state.global_step} "
            "steps",
            flush=True,
        )

    def result(
        self, wall_s: float, steps_run: int, planned_steps: int | None, planned_s: float | None
    ) -> dict:
        """summary.json's speed fields: predicted and measured tokens/s, step and wall time of this stage.
        The predicted wall time is the plan's for the stage, scaled to the steps this run was set to do."""
        m = self.measured or {}
        predicted_wall = None
        if planned_s and planned_steps and steps_run:
            predicted_wall = round(planned_s * steps_run / planned_steps, 1)
        return {
            "tokens_per_s_predicted": self.predicted_tokens_per_s,
            "tokens_per_s_measured": m.get("tokens_per_s_measured"),
            "step_s_predicted": self.predicted_step_s,
            "step_s_measured": m.get("step_s_measured"),
            "wall_s_predicted": predicted_wall,
            "wall_s_measured": round(wall_s, 1),
        }


def speed_line(measured: dict, predicted_step_s: float | None, predicted_tokens_per_s: float | None) -> str:
    """ "measured 0.62 s per step (6,600 tokens/s) after warm-up; predicted 0.64 s (6,400 tokens/s): -3%"."""
    step = measured.get("step_s_measured")
    tps = measured.get("tokens_per_s_measured")
    text = f"measured {step:.3g} s per step" + (f" ({tps:,.0f} tokens/s)" if tps else "") + " after warm-up"
    if not predicted_step_s:
        return text + "; no forecast to compare with"
    diff = step / predicted_step_s - 1
    text += (
        f"; predicted {predicted_step_s:.3g} s"
        + (f" ({predicted_tokens_per_s:,.0f} tokens/s)" if predicted_tokens_per_s else "")
        + f": {diff:+.0%}"
    )
    if abs(diff) > SPEED_LARGE_DIFFERENCE:
        text += (
            " — a large difference: the forecast assumed the plan's GPU and settings; "
            "the ETA now follows the measurement"
        )
    return text


class FaultInjection(TrainerCallback):
    """Test hooks, off unless their environment variables are set.

    TUNEWISE_TEST_OOM_ATTEMPTS=N: attempts 1..N (TUNEWISE_ATTEMPT, set by the launcher) raise
    `torch.OutOfMemoryError` on their first step, as a too-large micro-batch would on a real GPU.
    TUNEWISE_TEST_STEP_DELAY=S: sleep S seconds per step, so a test can signal mid-training.
    TUNEWISE_TEST_DISK_FULL_AT_STEP=N: from step N on the disk is full: step N raises ENOSPC and every
    later fsync (each atomic write, summary.json included) fails the same way.
    """

    def __init__(self) -> None:
        self.oom_attempts = int(os.environ.get("TUNEWISE_TEST_OOM_ATTEMPTS", "0"))
        self.attempt = int(os.environ.get("TUNEWISE_ATTEMPT", "1"))
        self.delay = float(os.environ.get("TUNEWISE_TEST_STEP_DELAY", "0"))
        self.disk_full_at = int(os.environ.get("TUNEWISE_TEST_DISK_FULL_AT_STEP", "0"))

    def on_step_begin(self, args, state, control, **kwargs):
        if self.disk_full_at and state.global_step + 1 >= self.disk_full_at:
            import errno

            def full(fd):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            os.fsync = full
            full(0)
        if self.attempt <= self.oom_attempts:
            import torch

            raise torch.OutOfMemoryError(
                f"CUDA out of memory (injected by TUNEWISE_TEST_OOM_ATTEMPTS, attempt {self.attempt})"
            )
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
