"""Every shipped rule behaves as its own examples say, and the rule set covers the guide."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from advisor.engine import _run
from advisor.facts import normalise
from advisor.rules import load_rules, rule_files
from advisor.thresholds import GUIDE_SECTIONS, load_thresholds, threshold_values

RULES = sorted(load_rules(), key=lambda r: r.id)
TH = threshold_values(load_thresholds())
MIN_RULES = 45  # the guide's whole decision surface; a silently dropped folder fails here


def _status(rule, example: dict) -> str:
    ctx = {**normalise(example), "t": TH}
    return _run(rule, ctx, TH).status


def test_rule_files_are_found_through_package_resources_including_subfolders():
    root = Path(str(resources.files("advisor._rules")))
    files = rule_files(root)
    assert len(files) == len(RULES) >= MIN_RULES
    assert {p.parent.name for p in files} >= {
        "approach",
        "method",
        "stage",
        "data",
        "hyperparameters",
        "pitfalls",
        "evaluation",
        "models_and_tools",
    }
    assert all(p.parent != root for p in files)  # thresholds.yaml and models.yaml are not rules


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_rule_examples(rule):
    for ex in rule.examples["fires"]:
        assert _status(rule, ex) == "fired", (rule.id, ex)
    for ex in rule.examples["does_not_fire"]:
        # a clean "false", not a skip for a missing fact: the example must exercise the condition
        assert _status(rule, ex) == "not_fired", (rule.id, ex)


def test_every_guide_section_has_rules_and_every_threshold_is_used():
    sources = {r.source for r in RULES}
    assert set(GUIDE_SECTIONS) <= sources
    used = {n for r in RULES for n in r.thresholds}
    used |= {
        v[2:]
        for r in RULES
        for v in (r.then.get("set") or {}).values()
        if isinstance(v, str) and v.startswith("t.")
    }
    used |= {n for r in RULES for n in __import__("re").findall(r"\{t\.(\w+)\}", r.message)}
    # thresholds read by code (facts, planning, engine) rather than by a rule
    by_code = {
        "fit_margin",
        "max_length_min",
        "max_length_start",
        "batch_size_max",
        "lora_alpha_ratio",
        "max_eval_metrics",
        "max_task_metrics",
        "max_system_metrics",
        "lora_rank",
        "batch_size_start",
        "grad_accum_start",
        "grad_accum_min",
        "spectrum_top_percent",
        "lora_gpu_max_gib",
        "eval_every_epoch_fraction",
        "min_optimizer_steps",
    }
    assert set(TH) - used - by_code == set()


def test_the_guide_numbers_are_the_thresholds():
    # the data-availability test, the task-complexity ranges and the starting hyperparameters
    assert (TH["min_examples_peft"], TH["min_examples_finetune"], TH["max_examples_finetune"]) == (
        100,
        1000,
        100000,
    )
    assert (TH["min_examples_simple"], TH["min_examples_medium"], TH["min_examples_complex"]) == (
        200,
        1000,
        5000,
    )
    assert TH["lr_peft"] == 2e-4 and TH["validation_fraction"] == 0.2 and TH["large_model_params_b"] == 30
    assert 4 <= TH["batch_size_start"] <= 8 and 2 <= TH["grad_accum_start"] <= 4


def test_rule_ids_are_unique_and_match_file_names():
    assert len({r.id for r in RULES}) == len(RULES)
    for r in RULES:
        assert Path(r.path).stem == r.id
