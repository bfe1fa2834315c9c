"""How many examples one optimizer step averages, and how many steps the run takes.

The guide's starting batch ("batch size 4-8 with gradient accumulation 2-4", Practical Tools and Getting
Started) counts examples: 8 to 32 per optimizer step, 16 to start. With sequence packing a row holds
several short examples (BFD fills each row up to `max_length`), so 16 packed rows of 512 tokens average
~100 examples of 80 tokens: a 400-row dataset then takes a dozen optimizer steps and barely learns. This
module plans the step in examples: the rows per step are the guide's examples over the examples a row
holds, and on small data fewer examples per step (down to the guide's 8) buy the run a minimum number of
optimizer updates. Memory only bounds the micro-batch (the fit search's largest); fewer rows always fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class StepBatch:
    micro_batch: int  # rows per GPU per forward
    grad_accum: int
    rows_per_step: int  # all GPUs together
    examples_per_row: float  # 1 without packing
    target: int  # examples per step aimed at
    low: int  # the guide's range, in examples
    high: int
    min_steps: int
    steps: int | None  # optimizer steps of the whole run at these settings, when the data size is known
    note: str  # why the target is what it is


def examples_per_row(max_length: int, mean_tokens: float | None, packing: bool) -> float:
    """Examples one row holds: with packing, max_length over the examples' mean length (at least 1)."""
    if not packing or not mean_tokens or mean_tokens <= 0:
        return 1.0
    return max(1.0, max_length / mean_tokens)


def _micro(rows_per_gpu: int, fit_micro: int, accum_min: int, packed: bool) -> int:
    """The largest micro-batch that fits (<= fit_micro) and divides the rows, so micro x accumulation is
    exactly the rows asked for. Unpacked, one that leaves the guide's smallest accumulation (2) is preferred
    (batch 4-8 with accumulation 2-4); packed rows are not the guide's examples, so the largest is taken."""
    divisors = [m for m in range(max(1, min(fit_micro, rows_per_gpu)), 0, -1) if rows_per_gpu % m == 0]
    if not packed:
        with_accum = [m for m in divisors if rows_per_gpu // m >= accum_min]
        if with_accum and with_accum[0] >= min(4, divisors[0]):
            return with_accum[0]
    return divisors[0]


def plan_step(
    *,
    train_examples: int | None,
    epochs: float,
    per_row: float,
    fit_micro: int,
    n_gpus: int,
    th: dict,
) -> StepBatch:
    """Rows per step and their split into micro-batch x accumulation for `train_examples` over `epochs`.

    `fit_micro` is the largest micro-batch the memory estimate allows (or the rule's when there is no GPU to
    fit against)."""
    low = int(th.get("batch_size_start", 4)) * int(th.get("grad_accum_min", 2))
    start = int(th.get("batch_size_start", 4)) * int(th.get("grad_accum_start", 4))
    high = int(th.get("batch_size_max", 8)) * int(th.get("grad_accum_start", 4))
    min_steps = int(th.get("min_optimizer_steps", 100))
    gpus = max(1, n_gpus)
    target, note = start, f"the guide's starting {start} examples per step"
    if train_examples:
        passes = train_examples * max(epochs, 0.0)
        if passes / start < min_steps:
            # a multiple of 4 (the guide's smallest batch), never below its smallest batch x accumulation
            target = max(low, min(start, 4 * math.floor(passes / min_steps / 4)))
            note = (
                f"{train_examples:,} training examples x {epochs:g} epochs at {start} per step would give "
                f"{math.ceil(passes / start):,} optimizer steps, under the {min_steps} this plan aims for: "
                f"{target} examples per step (the guide's range goes down to {low})"
            )
    rows = max(1, round(target / per_row))
    if rows * per_row < low:  # never below the guide's smallest batch of examples
        rows = math.ceil(low / per_row)
    if rows > 1 and rows * per_row > high:
        rows = max(1, math.floor(high / per_row))
    per_gpu = max(1, math.ceil(rows / gpus))
    accum_min = int(th.get("grad_accum_min", 2))
    micro = _micro(per_gpu, max(1, fit_micro), accum_min if gpus == 1 else 1, packed=per_row > 1)
    accum = max(1, per_gpu // micro)
    rows = micro * accum * gpus
    steps = None
    if train_examples:
        seqs = max(1, math.ceil(train_examples / per_row)) if per_row > 1 else train_examples
        steps = math.ceil(max(1, math.ceil(seqs / rows)) * epochs)
    return StepBatch(micro, accum, rows, per_row, target, low, high, min_steps, steps, note)


def describe(b: StepBatch, *, packing: bool, max_length: int, n_gpus: int, memory: str) -> tuple[str, str]:
    """The plan's reasons for `micro_batch_size` and `grad_accum`; `memory` says what bounds the micro-batch."""
    gpus = f" x {n_gpus} GPUs" if n_gpus > 1 else ""
    per_step = b.rows_per_step * b.examples_per_row
    if packing and b.examples_per_row > 1:
        rows = (
            f"{b.rows_per_step} packed row(s) of {max_length:,} tokens per step, each ~{b.examples_per_row:.1f} "
            f"examples (max_length / mean example length) = ~{per_step:.0f} examples per optimizer step"
        )
    else:
        rows = f"{b.rows_per_step} examples per optimizer step (one per row)"
    if b.rows_per_step == 1 and per_step > b.high:
        where = (
            f"above the guide's {b.low}-{b.high} examples even at one row: a row this long holds many "
            "short examples"
        )
    elif b.low <= round(per_step) <= b.high:
        where = f"inside the guide's {b.low}-{b.high} (batch 4-8 x accumulation 2-4, counted in examples)"
    else:
        where = f"outside the guide's {b.low}-{b.high} examples"
    steps = ""
    if b.steps is not None:
        steps = f"; {b.steps:,} optimizer steps in all"
        if b.steps < b.min_steps:
            steps += (
                f", fewer than the {b.min_steps} this plan aims for (so warm-up, the cosine decay and early "
                "stopping's evaluations each get several updates): more examples would help"
            )
    micro = (
        f"{b.micro_batch}: {rows}, {where}; target {b.target} ({b.note}){steps}; {memory} "
        "(Practical Tools and Getting Started; the step minimum is tunewise's)"
    )
    accum = (
        f"{b.grad_accum}: {b.micro_batch} x {b.grad_accum}{gpus} = {b.rows_per_step} rows per optimizer step "
        f"(~{per_step:.0f} examples)"
    )
    return micro, accum
