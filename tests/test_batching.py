"""The plan's step counts examples, not packed rows (issue 15): advisor/batching.py and what recommend writes."""

from __future__ import annotations

import json
import math

import pytest

from advisor.answers import parse_answers
from advisor.batching import examples_per_row, plan_step
from advisor.recommend import recommend

TH = {
    "batch_size_start": 4,
    "batch_size_max": 8,
    "grad_accum_start": 4,
    "grad_accum_min": 2,
    "min_optimizer_steps": 100,
}


def test_packed_short_examples_take_few_rows_per_step():
    # 65-token examples packed into 512-token rows: ~7.9 a row. The guide's 16 examples are 2 rows, not 16.
    per_row = examples_per_row(512, 65, packing=True)
    b = plan_step(train_examples=4000, epochs=3, per_row=per_row, fit_micro=8, n_gpus=1, th=TH)
    assert b.rows_per_step == 2 and b.micro_batch * b.grad_accum == 2
    assert 8 <= b.rows_per_step * per_row <= 32


def test_unpacked_keeps_the_guides_batch_and_the_largest_micro_batch():
    b = plan_step(train_examples=50_000, epochs=3, per_row=1.0, fit_micro=8, n_gpus=1, th=TH)
    assert (b.micro_batch, b.grad_accum) == (8, 2)
    b = plan_step(train_examples=50_000, epochs=3, per_row=1.0, fit_micro=4, n_gpus=1, th=TH)
    assert (b.micro_batch, b.grad_accum) == (4, 4)
    b = plan_step(train_examples=50_000, epochs=3, per_row=1.0, fit_micro=1, n_gpus=1, th=TH)
    assert (b.micro_batch, b.grad_accum) == (1, 16)
    # 8 examples a step (small data): the guide's batch 4 x accumulation 2, not 8 x 1
    b = plan_step(train_examples=240, epochs=3, per_row=1.0, fit_micro=8, n_gpus=1, th=TH)
    assert (b.micro_batch, b.grad_accum) == (4, 2)


@pytest.mark.parametrize("train", [160, 240, 400, 800])
def test_small_data_gets_more_steps_within_the_guides_range(train):
    b = plan_step(train_examples=train, epochs=3, per_row=1.0, fit_micro=8, n_gpus=1, th=TH)
    assert 8 <= b.rows_per_step <= 16
    at_start = math.ceil(train / 16) * 3
    # Fewer examples per step than the start only when the start would give under the minimum of steps.
    assert b.rows_per_step == 16 if at_start >= 100 else b.rows_per_step < 16
    assert b.steps == math.ceil(train / b.rows_per_step) * 3
    assert b.steps >= 100 or b.rows_per_step == 8


def test_a_long_row_of_many_examples_is_one_row_and_said():
    from advisor.batching import describe

    per_row = examples_per_row(8192, 60, packing=True)  # ~137 examples a row
    b = plan_step(train_examples=10_000, epochs=1, per_row=per_row, fit_micro=4, n_gpus=1, th=TH)
    assert b.rows_per_step == 1
    micro, _ = describe(b, packing=True, max_length=8192, n_gpus=1, memory="m")
    assert "above the guide's 8-32" in micro


def test_several_gpus_share_the_rows():
    b = plan_step(train_examples=50_000, epochs=3, per_row=1.0, fit_micro=8, n_gpus=4, th=TH)
    assert b.rows_per_step == 16 and b.micro_batch * b.grad_accum == 4


def _write_prompt_completion(path, n: int, words: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            body = " ".join(f"w{i}x{j}" for j in range(words))
            f.write(json.dumps({"prompt": f"Q{i}: {body}", "completion": f" A{i} {body}"}) + "\n")


def _recommend_extraction(data, model, gpus):
    """The recommendation for an extraction task on `data` with a local `model` and the given GPUs."""
    base = {"task": "extraction", "clear_task": True, "tried_prompting": True}
    return recommend(
        parse_answers({**base, "dataset": str(data), "model": str(model), "gpus": gpus}), detect_gpus=False
    )


def test_recommend_counts_examples_with_packing(tmp_path, smollm2_dir):
    data = tmp_path / "d.jsonl"
    _write_prompt_completion(data, 2000, 6)
    rec = _recommend_extraction(data, smollm2_dir, [{"name": "NVIDIA A100-SXM4-80GB", "memory_gib": 80}])
    p = rec.plan
    assert p is not None and p.packing
    mean = rec.facts.data.token_stats["mean"]
    per_row = p.max_length / mean
    examples = p.effective_batch * per_row
    assert 8 <= examples <= 32, (p.micro_batch_size, p.grad_accum, per_row)
    assert "examples per optimizer step" in p.reasons["micro_batch_size"]


def test_dpo_after_packed_sft_keeps_its_pairs_per_step(tmp_path, smollm2_dir):
    sft, pref = tmp_path / "sft.jsonl", tmp_path / "pref.jsonl"
    _write_prompt_completion(sft, 1500, 6)
    with open(pref, "w", encoding="utf-8") as f:
        for i in range(600):
            f.write(json.dumps({"prompt": f"Say {i}.", "chosen": f"{i}, gladly.", "rejected": "No."}) + "\n")
    a = parse_answers(
        {
            "task": "chat",
            "goals": ["tone-style"],
            "clear_task": True,
            "tried_prompting": True,
            "dataset": str(sft),
            "preference_dataset": str(pref),
            "model": str(smollm2_dir),
            "gpus": [{"name": "NVIDIA A100-SXM4-80GB", "memory_gib": 80}],
        }
    )
    p = recommend(a, detect_gpus=False).plan
    assert p.stage == "sft+dpo" and p.packing
    sft_rows = p.effective_batch
    mb, accum = p.stage_batch("dpo")
    assert sft_rows < 8 and 8 <= mb * accum <= 16  # SFT packs several examples a row; DPO pairs are one a row


def test_many_gpus_of_packed_rows_say_the_examples_per_step(tmp_path, smollm2_dir):
    data = tmp_path / "d.jsonl"
    _write_prompt_completion(data, 20_000, 6)
    rec = _recommend_extraction(data, smollm2_dir, [{"name": "NVIDIA H100 80GB HBM3", "memory_gib": 80}] * 8)
    p = rec.plan
    assert p.n_gpus == 8 and p.micro_batch_size == 1 and p.grad_accum == 1
    assert any("packed row of ~" in w and "examples per step" in w for w in rec.decision.warnings)
