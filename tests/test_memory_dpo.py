"""The DPO stage's memory (advisor/memory/dpo.py), the plan's DPO batch and the job's DPOConfig.

The byte counts themselves are checked against real DPOTrainer steps on CPU in tests/test_memory_trace.py
(bench/memory_trace.py `dpo_grid`); here: what the DPO step adds to the SFT step, validation, and the plan.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import pytest

from advisor.errors import UserError
from advisor.memory import MemoryConfig, estimate, fit_search, step_parts
from advisor.memory.dpo import REFERENCE_PHASE, dpo_rows
from advisor.models import count_params, resolve_model

GiB = 1024**3


@pytest.fixture(scope="module")
def llama8b():
    return resolve_model("llama-3.1-8b")


def test_stage_is_validated_and_the_plain_stack_refuses_dpo(llama8b):
    with pytest.raises(UserError, match="invalid stage: 'rl'"):
        estimate(llama8b, MemoryConfig("lora", stage="rl"))
    with pytest.raises(UserError, match="'plain' stack has no DPO step") as e:
        estimate(llama8b, MemoryConfig("lora", stack="plain", stage="dpo"))
    assert "tunewise" in e.value.hint


@pytest.mark.parametrize("method", ["lora", "qlora", "spectrum", "full"])
@pytest.mark.parametrize("ckpt", [True, False])
def test_dpo_step_is_the_sft_step_of_twice_the_rows_plus_the_reference(llama8b, method, ckpt):
    cfg = MemoryConfig(method, seq_len=1024, batch_size=2, grad_ckpt=ckpt, stage="dpo")
    dpo = step_parts(llama8b, cfg)
    rows = step_parts(llama8b, dpo_rows(cfg))  # 4 padded rows with a mask, as SFT would run them
    assert dpo_rows(cfg).batch_size == 4 and dpo_rows(cfg).packed_docs and not dpo_rows(cfg).padding_free
    # the SFT moments are unchanged (but for full fine-tuning's fp32 master weights: the policy head's bf16 weight
    # cast, held through the loss, CPU trace); the reference forward is one more moment
    for k, v in rows.phase_totals.items():
        head = 2 * llama8b.vocab_size * llama8b.hidden_size if method == "full" and k == "loss" else 0
        assert dpo.phase_totals[k] == v + head
    assert set(dpo.phase_totals) == set(rows.phase_totals) | {REFERENCE_PHASE}
    # full and Spectrum hold TRL's second, frozen copy of the model in the policy's dtype (fp32 for full
    # fine-tuning with fp32 master weights, bf16 for Spectrum); adapters disable instead
    ref_weights = {"full": 4, "spectrum": 2}.get(method, 0) * count_params(llama8b)["total"]
    assert dpo.resident - rows.resident == pytest.approx(ref_weights)
    assert dpo.at_peak.get("reference_weights", 0) == pytest.approx(ref_weights)
    peak = sum(dpo.at_peak.values())
    assert peak == pytest.approx(dpo.resident + max(dpo.phase_totals.values()))
    assert peak >= sum(rows.at_peak.values()) + ref_weights - 1


def test_dpo_needs_more_than_sft_at_the_same_micro_batch(llama8b):
    for method in ("lora", "qlora", "full"):
        sft = estimate(llama8b, MemoryConfig(method, seq_len=2048, batch_size=4))
        dpo = estimate(llama8b, MemoryConfig(method, seq_len=2048, batch_size=4, stage="dpo"))
        assert dpo.peak_allocated_gib > sft.peak_allocated_gib, method
    full = estimate(llama8b, MemoryConfig("full", seq_len=2048, batch_size=4, stage="dpo"))
    assert full.breakdown["reference_weights"] == pytest.approx(4 * llama8b.params_total / GiB, abs=0.01)
    comp = estimate(
        llama8b, MemoryConfig("full", seq_len=2048, batch_size=4, stage="dpo", precision="bf16-compensated")
    )
    assert comp.breakdown["reference_weights"] == pytest.approx(2 * llama8b.params_total / GiB, abs=0.01)


def test_reference_forward_outgrows_the_loss_when_its_layer_is_wide():
    # Without checkpointing and with a vocabulary too small for the head tile to matter, a wide MLP puts
    # the reference's no-grad layer above the loss moment: it sits on top of everything the policy saved.
    # (The first layer's backward, with its gradient working set, stays larger still.)
    from advisor.models import facts_from_config

    m = facts_from_config(
        dict(
            model_type="llama",
            vocab_size=4096,
            hidden_size=1024,
            intermediate_size=16384,
            num_hidden_layers=2,
            num_attention_heads=8,
            num_key_value_heads=8,
            max_position_embeddings=4096,
        ),
        name="wide",
        source="local",
    )
    cfg = MemoryConfig("lora", seq_len=2048, batch_size=4, grad_ckpt=False, stage="dpo", lora_dropout=0.0)
    p = step_parts(m, cfg)
    assert p.phase_totals[REFERENCE_PHASE] > p.phase_totals["loss"]
    assert p.phase == "first layer backward"
    assert p.phase_parts[REFERENCE_PHASE]["reference_forward"] > 3 * 16384 * 2 * 8 * 2048


def test_fit_search_and_advice_work_for_dpo(llama8b):
    cfg = MemoryConfig("lora", seq_len=1024, batch_size=8, stage="dpo")
    fit = fit_search(llama8b, cfg, 24, target_effective_batch=16, seq_lens=(1024,))
    assert fit.fits and fit.micro_batch * fit.grad_accum == 16
    assert estimate(llama8b, replace(cfg, batch_size=fit.micro_batch)).device_gib <= 24 * 0.9
    assert estimate(llama8b, replace(cfg, batch_size=2 * fit.micro_batch)).device_gib > 24 * 0.9
    sft = fit_search(llama8b, replace(cfg, stage="sft"), 24, target_effective_batch=16, seq_lens=(1024,))
    assert sft.micro_batch > fit.micro_batch


def _persona_plan(**changes):
    """A brand-voice chatbot with preference pairs on a 24 GiB GPU: 8B LoRA, SFT then DPO (`changes`
    override answers)."""
    from advisor.answers import parse_answers
    from advisor.recommend import recommend

    answers = {
        "task": "chat",
        "goals": ["tone-style"],
        "clear_task": True,
        "tried_prompting": True,
        "needs_citations": False,
        "knowledge_changes_often": False,
        "examples": 3000,
        "preference_pairs": 800,
        "model": "meta-llama/Llama-3.1-8B",
        "gpus": [{"memory_gib": 24}],
    }
    return recommend(parse_answers({**answers, **changes}), detect_gpus=False)


def test_plan_gives_dpo_a_smaller_micro_batch_when_the_sft_one_does_not_fit(llama8b):
    from advisor.memory import config_for_plan

    rec = _persona_plan()
    p = rec.plan
    assert p.stage == "sft+dpo" and p.method == "lora"
    usable = rec.facts.values["gpu_usable_gib"]
    cfg = replace(config_for_plan(p), stage="dpo", spectrum_fraction=0.3, dpo_ref_adapter=True)
    at_sft_batch = estimate(llama8b, cfg).device_gib
    assert at_sft_batch > usable  # the SFT micro-batch does not fit the DPO step
    assert p.dpo.micro_batch_size < p.micro_batch_size
    assert p.dpo.micro_batch_size * p.dpo.grad_accum == p.micro_batch_size * p.grad_accum
    assert estimate(llama8b, replace(cfg, batch_size=p.dpo.micro_batch_size)).device_gib <= usable
    why = p.reasons["dpo.micro_batch_size"]
    assert f"micro-batch {p.dpo.micro_batch_size} x accumulation {p.dpo.grad_accum}" in why
    assert f"{at_sft_batch:.1f} GiB" in why and "memory estimate" in why
    # the plan file keeps it
    from advisor.plan import TrainingPlan

    again = TrainingPlan.from_dict(p.to_dict())
    assert (again.dpo.micro_batch_size, again.dpo.grad_accum) == (p.dpo.micro_batch_size, p.dpo.grad_accum)


def test_plan_keeps_the_sft_batch_for_dpo_when_it_fits():
    p = _persona_plan(model="meta-llama/Llama-3.2-1B").plan
    assert p.dpo.micro_batch_size is None and p.dpo.grad_accum is None
    assert p.stage_batch("dpo") == (p.micro_batch_size, p.grad_accum)
    assert f"the same micro-batch {p.micro_batch_size}" in p.reasons["dpo.micro_batch_size"]


def test_invalid_dpo_batch_in_a_plan_file_is_refused():
    from advisor.plan import TrainingPlan

    d = _persona_plan().plan.to_dict()
    d["dpo"]["micro_batch_size"] = 0
    with pytest.raises(UserError, match=r"dpo.micro_batch_size must be a positive integer"):
        TrainingPlan.from_dict(d)


def test_the_jobs_dpo_config_runs_the_dpo_batch(tmp_path):
    from launcher.train import trainer_config

    p = _persona_plan().plan
    args = argparse.Namespace(max_steps=None, save_steps=None)
    dpo = trainer_config(p, "dpo", tmp_path / "dpo", None, None, args, cuda=False)
    assert type(dpo).__name__ == "DPOConfig"
    assert (dpo.per_device_train_batch_size, dpo.gradient_accumulation_steps) == (
        p.dpo.micro_batch_size,
        p.dpo.grad_accum,
    )
    assert dpo.per_device_eval_batch_size == p.dpo.micro_batch_size
    from datasets import Dataset

    ds = Dataset.from_dict({"messages": [[{"role": "user", "content": "hi"}]]})
    sft = trainer_config(p, "sft", tmp_path / "sft", ds, None, args, cuda=False)
    assert (sft.per_device_train_batch_size, sft.gradient_accumulation_steps) == (
        p.micro_batch_size,
        p.grad_accum,
    )


def test_oom_ladder_lowering_the_plan_batch_also_lowers_dpo():
    p = _persona_plan().plan
    effective = p.dpo.micro_batch_size * p.dpo.grad_accum
    p.micro_batch_size, p.grad_accum = 2, p.grad_accum * 4  # what launcher/oom.py does, twice
    assert p.stage_batch("dpo") == (2, effective // 2)
    assert p.stage_batch("sft") == (2, p.grad_accum)


def test_dpo_after_sft_holds_a_frozen_fp32_copy_of_the_adapter(llama8b):
    cfg = MemoryConfig("lora", seq_len=1024, batch_size=2, stage="dpo")
    fresh, after = step_parts(llama8b, cfg), step_parts(llama8b, replace(cfg, dpo_ref_adapter=True))
    assert after.resident - fresh.resident == pytest.approx(4 * fresh.trainable_params)
    assert after.phase_totals[REFERENCE_PHASE] > fresh.phase_totals[REFERENCE_PHASE]  # the "ref" adapter runs
    full = MemoryConfig("full", seq_len=1024, batch_size=2, stage="dpo")
    assert (
        step_parts(llama8b, replace(full, dpo_ref_adapter=True)).resident
        == step_parts(llama8b, full).resident
    )


def test_a_dpo_only_plan_predicts_the_dpo_step(llama8b):
    # Preference data alone: the plan is DPO alone, so its predicted peak (what summary.json compares the
    # run with, and the plan table shows) is the DPO step's at the batch DPO runs, not the SFT step's.
    from advisor.memory import config_for_plan

    p = _persona_plan(examples=0, preference_pairs=3000, gpus=[{"memory_gib": 80}]).plan
    assert p.stage == "dpo"
    dpo = estimate(llama8b, replace(config_for_plan(p, "dpo"), spectrum_fraction=0.3))
    sft = estimate(llama8b, replace(config_for_plan(p, "sft"), spectrum_fraction=0.3))
    assert (
        p.predicted_peak_gib == round(dpo.peak_allocated_gib, 2)
        and p.predicted_peak_gib > sft.peak_allocated_gib
    )
    assert "for the DPO step" in p.reasons["predicted_peak_gib"]


def test_an_sft_then_dpo_plan_carries_the_dpo_steps_prediction(llama8b):
    # The planner owns the DPO stage's figure (the job only reads it): written into plan.yaml's `dpo` section
    # at the batch DPO runs, with the frozen copy of the SFT adapter; the plan's own figure stays the SFT step's.
    from advisor.memory import config_for_plan

    p = _persona_plan().plan
    assert p.stage == "sft+dpo"
    dpo = estimate(llama8b, replace(config_for_plan(p, "dpo"), spectrum_fraction=0.3))
    sft = estimate(llama8b, replace(config_for_plan(p, "sft"), spectrum_fraction=0.3))
    assert (p.dpo.predicted_peak_gib, p.dpo.predicted_device_gib) == (
        round(dpo.peak_allocated_gib, 2),
        round(dpo.device_gib, 2),
    )
    assert (
        p.predicted_peak_gib != p.dpo.predicted_peak_gib
        and abs(p.predicted_peak_gib - sft.peak_allocated_gib) < 0.05
    )
    assert "predicted_peak_gib" in p.to_yaml().split("dpo:")[1]
