"""Property tests over generated answers, through the real facts builder, catalog and memory estimator."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advisor.answers import parse_answers
from advisor.engine import FINE_TUNE_APPROACHES, evaluate
from advisor.facts import build_facts
from advisor.planning import build_plan
from advisor.rules import OPTIONS, load_rules

RULES = load_rules()
TASKS = [
    "classification",
    "extraction",
    "question-answering",
    "summarization",
    "chat",
    "code",
    "reasoning",
    "generation",
]
GOALS = [
    "tone-style",
    "privacy",
    "low-resource-language",
    "cheaper-inference",
    "new-capability",
    "output-format",
]
MODELS = ["meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.1-8B", "Qwen/Qwen2.5-7B", "meta-llama/Llama-3.1-70B"]
maybe_bool = st.sampled_from([True, False, None])


@st.composite
def answers(draw, with_gpus=True):
    data = {
        "task": draw(st.sampled_from([*TASKS, None])),
        "goals": draw(st.lists(st.sampled_from(GOALS), unique=True, max_size=3)),
        "needs_citations": draw(maybe_bool),
        "knowledge_changes_often": draw(maybe_bool),
        "clear_task": draw(maybe_bool),
        "tried_prompting": draw(maybe_bool),
        "zero_latency": draw(maybe_bool),
        "examples": draw(st.one_of(st.none(), st.integers(0, 300_000))),
        "preference_pairs": draw(st.one_of(st.none(), st.integers(0, 5_000))),
        "model": draw(st.sampled_from(MODELS)),
        "method": draw(st.sampled_from(["auto", "auto", "lora", "qlora", "spectrum", "full"])),
    }
    if with_gpus:
        n = draw(st.integers(0, 4))
        mem = draw(st.sampled_from([8, 16, 24, 40, 48, 80, 141]))
        data["gpus"] = [{"name": "G", "memory_gib": mem}] * n
    return parse_answers(data)


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(answers())
def test_exactly_one_approach_backed_by_a_fired_rule_and_training_fields_only_when_fine_tuning(a):
    facts = build_facts(a, detect_gpus=False)
    d = evaluate(RULES, facts)
    assert d.approach in OPTIONS["approach"]
    backers = [
        t
        for t in d.trace
        if t.status == "fired" and t.applied and t.then.get("recommend", {}).get("approach") == d.approach
    ]
    assert backers, d.approach
    assert d.approach not in d.excluded
    plan = build_plan(d, facts)
    if d.approach not in FINE_TUNE_APPROACHES:
        assert (d.method, d.stage, plan) == (None, None, None)
    elif d.method is not None:
        assert (
            plan is not None
            and plan.method == d.method
            and set(plan.reasons) >= {"method", "stage", "max_length"}
        )


@SETTINGS
@given(answers(), st.randoms(use_true_random=False))
def test_shuffled_rules_give_an_identical_decision(a, rnd: random.Random):
    facts = build_facts(a, detect_gpus=False)
    shuffled = list(RULES)
    rnd.shuffle(shuffled)
    assert evaluate(shuffled, facts).to_dict() == evaluate(RULES, facts).to_dict()


@SETTINGS
@given(answers(with_gpus=False), st.integers(1, 4), st.floats(4, 160), st.floats(0, 160))
def test_more_gpu_memory_never_makes_a_fitting_method_stop_fitting(a, n, small, extra):
    def facts_for(mem):
        return build_facts(
            a.model_copy(update={"gpus": parse_answers({"gpus": [{"memory_gib": mem}] * n}).gpus}),
            detect_gpus=False,
        )

    lo, hi = facts_for(small), facts_for(small + extra)
    for m, c in lo.candidates.items():
        if c.fits:
            assert hi.candidates[m].fits, (m, small, small + extra)
    d_lo, d_hi = evaluate(RULES, lo), evaluate(RULES, hi)
    fit_rules = {
        f"TW2{k}-{m}-does-not-fit"
        for k, m in (("07", "lora"), ("08", "qlora"), ("09", "spectrum"), ("10", "full"))
    }
    excluded_hi = {m for m, ids in d_hi.excluded.items() if set(ids) & fit_rules}
    excluded_lo = {m for m, ids in d_lo.excluded.items() if set(ids) & fit_rules}
    if d_lo.approach in FINE_TUNE_APPROACHES and d_hi.approach in FINE_TUNE_APPROACHES:
        assert excluded_hi <= excluded_lo
