"""The out-of-memory ladder: what to give up, in order, when the first steps run out of GPU memory.

1. Halve the micro-batch and double gradient accumulation (same effective batch, less activation
   memory), down to a micro-batch of 1.
2. Turn gradient checkpointing on (recompute activations instead of storing them).
3. LoRA -> QLoRA (4-bit base weights; "Essential Parameter-Efficient Fine-Tuning Methods").
Then stop: the job does not fit this GPU, and the message says what was tried.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from advisor.memory import carry_prediction
from advisor.plan import QuantSpec, TrainingPlan
from advisor.throughput.forecast import carry_speed


@dataclass
class Step:
    change: str  # one line for the summary, the report and the terminal
    plan: TrainingPlan


def next_step(plan: TrainingPlan) -> Step | None:
    """The next rung down from `plan` (its memory predicted again), or None when the ladder is exhausted."""
    step = _rung(plan)
    if step is not None:
        carry_prediction(plan, step.plan)
        carry_speed(plan, step.plan)  # the step's speed changes too (checkpointing, QLoRA's dequantisation)
    return step


def _rung(plan: TrainingPlan) -> Step | None:
    p = copy.deepcopy(plan)
    if p.micro_batch_size > 1:
        p.micro_batch_size = max(1, p.micro_batch_size // 2)
        p.grad_accum *= plan.micro_batch_size // p.micro_batch_size
        change = (
            f"micro-batch {plan.micro_batch_size} -> {p.micro_batch_size}, gradient accumulation "
            f"{plan.grad_accum} -> {p.grad_accum} (effective batch unchanged)"
        )
        p.reasons["micro_batch_size"] = f"out of memory at micro-batch {plan.micro_batch_size}: {change}"
        return Step(change, p)
    if not p.gradient_checkpointing:
        p.gradient_checkpointing = True
        change = "gradient checkpointing on"
        p.reasons["gradient_checkpointing"] = f"out of memory at micro-batch 1: {change}"
        return Step(change, p)
    if p.method == "lora":
        p.method = "qlora"
        p.quantization = p.quantization or QuantSpec()
        change = "LoRA -> QLoRA (4-bit NF4 base weights)"
        p.reasons["method"] = f"out of memory with LoRA at micro-batch 1 with checkpointing: {change}"
        return Step(change, p)
    return None


def exhausted_message(plan: TrainingPlan, steps: list[str]) -> str:
    tried = "; ".join(steps) if steps else "nothing left to step down"
    return (
        f"out of memory in the first steps with {plan.method} at micro-batch {plan.micro_batch_size}, "
        f"max_length {plan.max_length}; tried: {tried}"
    )
