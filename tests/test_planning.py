"""Plan builder: every value has a reason; method sections; small-data and memory adjustments."""

from __future__ import annotations

import pytest

from advisor.answers import parse_answers
from advisor.plan import TrainingPlan
from advisor.recommend import recommend

BASE = {
    "task": "chat",
    "goals": ["tone-style"],
    "clear_task": True,
    "tried_prompting": True,
    "needs_citations": False,
    "knowledge_changes_often": False,
}
MUST_EXPLAIN = {
    "model",
    "method",
    "stage",
    "max_length",
    "micro_batch_size",
    "grad_accum",
    "learning_rate",
    "epochs",
    "packing",
    "gradient_checkpointing",
    "early_stopping_patience",
    "eval_steps",
    "bf16",
    "n_gpus",
    "data.validation_fraction",
    "warmup_ratio",
    "lr_scheduler",
    "completion_only_loss",
}


def _rec(**kw):
    return recommend(parse_answers({**BASE, **kw}), detect_gpus=False)


def test_lora_plan_on_24gb_explains_every_value_and_round_trips():
    rec = _rec(examples=2500, model="meta-llama/Llama-3.1-8B", gpus=[{"memory_gib": 24}])
    p = rec.plan
    assert (p.method, p.stage, p.learning_rate, p.lora.r, p.lora.alpha) == ("lora", "sft", 2e-4, 16, 32)
    assert MUST_EXPLAIN | {"lora.r", "lora.alpha", "lora.dropout"} <= set(p.reasons)
    assert "TW500-peft-learning-rate" in p.reasons["learning_rate"]
    assert p.micro_batch_size * p.grad_accum == 16 and 1 <= p.micro_batch_size <= 8
    assert "memory estimate" in p.reasons["micro_batch_size"]
    assert p.predicted_peak_gib == rec.decision.candidates["lora"].peak_gib
    assert TrainingPlan.from_dict(p.to_dict()).to_dict() == p.to_dict()


def test_small_data_lowers_rank_and_rate():
    p = _rec(examples=400, model="meta-llama/Llama-3.2-1B", gpus=[{"memory_gib": 24}]).plan
    assert (p.lora.r, p.lora.alpha, p.learning_rate, p.lora.dropout) == (8, 16, 1e-4, 0.2)
    assert "TW600-small-data-overfitting" in p.reasons["lora.r"]


def test_small_gpu_gets_qlora_with_quantization_and_a_fitting_batch():
    rec = _rec(examples=3000, model="meta-llama/Llama-3.1-8B", gpus=[{"memory_gib": 16}])
    p = rec.plan
    assert p.method == "qlora" and p.quantization.load_in_4bit and p.quantization.quant_type == "nf4"
    c = rec.decision.candidates["qlora"]
    assert c.fits and c.device_gib <= rec.facts.values["gpu_usable_gib"]
    assert (p.micro_batch_size, p.max_length) == (c.micro_batch, c.seq_len)


def test_spectrum_plan_keeps_top_percent_and_leaves_the_scan_list_empty_with_a_reason():
    rec = _rec(examples=20000, model="meta-llama/Llama-3.1-8B", gpus=[{"memory_gib": 80}] * 4)
    p = rec.plan
    assert p.method == "spectrum" and p.spectrum.top_percent == 30 and p.spectrum.unfrozen_parameters == []
    assert "scan" in p.reasons["spectrum.unfrozen_parameters"] and p.learning_rate == 1e-5
    assert p.n_gpus == 4 and p.distributed in ("ddp", "fsdp")


def test_preference_data_adds_a_dpo_section():
    p = _rec(
        examples=3000, preference_pairs=800, model="meta-llama/Llama-3.2-1B", gpus=[{"memory_gib": 24}]
    ).plan
    assert p.stage == "sft+dpo" and p.dpo.beta == 0.1 and "dpo.beta" in p.reasons


@pytest.mark.parametrize(
    "kw",
    [
        {"examples": 30},
        {"examples": 5000, "clear_task": False},
        {"examples": 5000, "goals": [], "tried_prompting": False},
    ],
)
def test_no_plan_without_fine_tuning(kw):
    rec = _rec(model="meta-llama/Llama-3.2-1B", gpus=[{"memory_gib": 24}], **kw)
    assert rec.decision.approach == "prompting" and rec.plan is None and rec.decision.method is None


def test_a_model_that_fits_nowhere_plans_the_largest_catalog_model_that_does():
    rec = _rec(examples=5000, model="meta-llama/Llama-3.1-70B", gpus=[{"memory_gib": 8}])
    d = rec.decision
    assert d.approach == "fine-tune" and "TW807-smaller-model-fits" in d.fired
    assert rec.plan.model == "meta-llama/Llama-3.1-8B" and rec.facts.values["model_requested"].endswith("70B")
    assert rec.facts.candidates[rec.plan.method].fits


def test_nothing_fits_falls_back_to_prompting_for_a_hardware_reason_and_says_which_gpu_would_do():
    rec = _rec(examples=5000, model="meta-llama/Llama-3.1-70B", gpus=[{"memory_gib": 1}])
    d = rec.decision
    assert d.approach == "prompting" and "TW119-nothing-fits" in d.fired
    assert any("hardware reason" in w for w in d.warnings)
    assert "TW804-prompting-next-steps" not in d.fired  # "collect 1,000+ examples" is a data reason
    assert any(line.startswith("with a GPU of at least") and "QLoRA" in line for line in d.would_change)
