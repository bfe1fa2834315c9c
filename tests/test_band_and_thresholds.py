"""The guide's 100-1,000 band, and `would_change` thresholds found by re-running the engine."""

from __future__ import annotations

import pytest

from advisor.answers import parse_answers
from advisor.engine import evaluate
from advisor.recommend import recommend
from advisor.rules import load_rules

BASE = {
    "task": "classification",
    "clear_task": True,
    "knowledge_changes_often": False,
    "tried_prompting": True,
    "model": "meta-llama/Llama-3.1-8B",
    "gpus": [{"name": "NVIDIA GeForce RTX 4090", "memory_gib": 24}],
}


def _rec(**kw):
    return recommend(parse_answers({**BASE, **kw}), detect_gpus=False)


@pytest.mark.parametrize("n", [100, 500, 999])
def test_the_band_with_static_knowledge_and_prompting_tried_recommends_peft_with_small_data_settings(n):
    rec = _rec(examples=n)
    d, p = rec.decision, rec.plan
    assert (d.approach, d.method) == (
        "fine-tune",
        "lora",
    ) and "TW120-some-examples-static-knowledge" in d.fired
    assert "full" in d.excluded and p.lora.r == 8 and p.learning_rate == 1e-4  # TW600's small-data settings


@pytest.mark.parametrize(
    "kw", [{"knowledge_changes_often": True}, {"tried_prompting": False}, {"examples": 99}]
)
def test_outside_the_bands_conditions_it_does_not_fine_tune(kw):
    d = _rec(**{"examples": 500, **kw}).decision
    assert d.approach != "fine-tune" and "TW120-some-examples-static-knowledge" not in d.fired


def test_would_change_quotes_the_count_that_really_flips_the_decision():
    # 50 examples with a privacy goal: 100 already flips it (not the fixed "1,000+")
    d = _rec(examples=50, goals=["privacy"]).decision
    assert (
        d.approach == "prompting" and "with 100+ examples, the approach would be fine-tune" in d.would_change
    )
    # the quoted count is exact: one fewer does not flip the decision, that one does
    rules = load_rules()
    rec = _rec(examples=50, goals=["privacy"])
    values = rec.facts.values
    for n, flips in ((99, False), (100, True)):
        alt = evaluate(
            rules,
            {**values, "examples": float(n), "sft_examples": float(n)},
            rec.facts.thresholds,
            explain=False,
        )
        assert (alt.approach != "prompting") is flips


def test_would_change_for_pairs_is_searched_too():
    d = _rec(examples=5000).decision
    assert (
        "with 100+ preference pairs (prompt, chosen, rejected), the stage would be sft+dpo" in d.would_change
    )
    assert not any("examples, the approach" in line for line in d.would_change)
