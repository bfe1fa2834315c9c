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

from advisor.errors import UserError
from advisor.plan import QuantSpec, TrainingPlan


@dataclass
class Step:
    change: str  # one line for the summary, the report and the terminal
    plan: TrainingPlan


def next_step(plan: TrainingPlan) -> Step | None:
    """The next rung down from `plan` (its memory predicted again), or None when the ladder is exhausted."""
    step = _rung(plan)
    if step is not None:
        _repredict(plan, step.plan)
    return step


def _rung(plan: TrainingPlan) -> Step | None:
    p = copy.deepcopy(plan)
    if p.micro_batch_size > 1:
        p.micro_batch_size = max(1, p.micro_batch_size // 2)
        p.grad_accum *= plan.micro_batch_size // p.micro_batch_size
        change = (f"micro-batch {plan.micro_batch_size} -> {p.micro_batch_size}, gradient accumulation "
                  f"{plan.grad_accum} -> {p.grad_accum} (effective batch unchanged)")
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


def _repredict(old: TrainingPlan, new: TrainingPlan) -> None:
    """Keep summary.json's measured-vs-predicted comparison like for like after a step down: the new
    prediction is the old one moved by what the estimator says the change saves (a difference, so what
    the old figure knew that a plan does not say, such as Spectrum's scanned trainable count, carries
    over). Unknown (null) when there was no prediction or the model's config cannot be read here."""
    from advisor.memory import config_for_plan, estimate
    from advisor.models import resolve_model

    # (the plan's own prediction, for its first step; the DPO stage's after SFT, kept in `dpo`)
    pairs = [(old, new, "dpo" if old.stage == "dpo" else "sft")]
    if old.dpo is not None and new.dpo is not None and old.stage != "dpo":
        pairs.append((old.dpo, new.dpo, "dpo"))
    for _, now, _ in pairs:
        now.predicted_peak_gib = now.predicted_device_gib = None
    try:
        facts = resolve_model(old.model)
    except UserError:
        return
    for was, now, stage in pairs:
        if was.predicted_peak_gib is None:
            continue
        before, after = estimate(facts, config_for_plan(old, stage)), estimate(facts, config_for_plan(new, stage))
        now.predicted_peak_gib = round(was.predicted_peak_gib + after.peak_allocated_gib - before.peak_allocated_gib, 3)
        if was.predicted_device_gib is not None:
            now.predicted_device_gib = round(was.predicted_device_gib + after.device_gib - before.device_gib, 3)


def exhausted_message(plan: TrainingPlan, steps: list[str]) -> str:
    tried = "; ".join(steps) if steps else "nothing left to step down"
    return (f"out of memory in the first steps with {plan.method} at micro-batch {plan.micro_batch_size}, "
            f"max_length {plan.max_length}; tried: {tried}")
