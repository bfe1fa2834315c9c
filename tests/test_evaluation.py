"""The evaluation's parts that need no model: examples, metrics, bootstrap, verdict, report section, answers."""

from __future__ import annotations

import json
import typing

import numpy as np
import pytest

from advisor.answers import SuccessMetric, parse_answers
from advisor.errors import UserError
from advisor.task_metrics import METRICS, TASK_METRICS, meets, probe_facts, shortfall
from launcher.evaluation import bootstrap, heldout, metrics, section, verdict
from launcher.evaluation.metrics import metric_names

# --- held-out examples -------------------------------------------------------------------------


def test_rows_of_every_split_format_become_prompt_and_reference():
    user = {"role": "user", "content": "q"}
    asst = {"role": "assistant", "content": "a"}
    sys_ = {"role": "system", "content": "be brief"}
    assert heldout.to_example({"messages": [sys_, user, asst]}) == heldout.Example([sys_, user], "a")
    # multi-turn: everything before the last assistant turn is the prompt
    ex = heldout.to_example(
        {"messages": [user, asst, {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]}
    )
    assert ex.reference == "a2" and len(ex.prompt) == 3
    assert heldout.to_example({"prompt": "q", "completion": "a"}) == heldout.Example([user], "a")
    assert heldout.to_example({"prompt": [user], "completion": [asst]}) == heldout.Example([user], "a")
    assert heldout.to_example({"prompt": "q", "chosen": "a", "rejected": "b"}).reference == "a"
    assert heldout.to_example({"text": "plain"}) is None
    assert heldout.to_example({"messages": [user]}) is None


def test_a_split_without_references_is_a_user_error(tmp_path):
    p = tmp_path / "v.jsonl"
    p.write_text('{"text": "a"}\n{"text": "b"}\n', encoding="utf-8")
    with pytest.raises(UserError, match="no row .* has a reference answer"):
        heldout.read_examples(p, "held-out")
    with pytest.raises(UserError, match="no held-out split"):
        heldout.read_examples(tmp_path / "missing.jsonl", "held-out")


def _labelled(n_a: int, n_b: int, n_c: int) -> list[heldout.Example]:
    out = []
    for label, n in (("a", n_a), ("b", n_b), ("c", n_c)):
        out += [heldout.Example([{"role": "user", "content": f"{label}{i}"}], label) for i in range(n)]
    return out


def test_cap_is_deterministic_and_stratified_keeps_every_label():
    ex = _labelled(80, 18, 2)
    a, b = heldout.cap(ex, 20, seed=3, stratify=True), heldout.cap(ex, 20, seed=3, stratify=True)
    assert a == b and len(a) == 20
    counts = {lab: sum(e.reference == lab for e in a) for lab in "abc"}
    assert counts["c"] >= 1 and 14 <= counts["a"] <= 17 and 3 <= counts["b"] <= 5
    assert heldout.cap(ex, 20, seed=4, stratify=True) != a  # the seed matters
    assert len(heldout.cap(ex, 500, seed=3, stratify=True)) == 100  # fewer rows than the cap: all of them
    plain = heldout.cap(ex, 20, seed=3, stratify=False)
    assert len(plain) == 20 and plain == heldout.cap(ex, 20, seed=3, stratify=False)


def test_shots_cover_the_labels_first_and_come_before_the_question():
    shots = heldout.pick_shots(_labelled(30, 30, 30), 3, seed=0)
    assert sorted(s.reference for s in shots) == ["a", "b", "c"]
    q = heldout.Example([{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}], "r")
    msgs = heldout.few_shot_messages(q, shots)
    assert msgs[0] == {"role": "system", "content": "S"} and msgs[-1] == {"role": "user", "content": "Q"}
    assert [m["role"] for m in msgs[1:-1]] == ["user", "assistant"] * 3
    assert heldout.pick_shots([], 5, seed=0) == [] and heldout.pick_shots(shots, 0, seed=0) == []


# --- metrics -----------------------------------------------------------------------------------


def test_exact_match_and_token_f1():
    assert list(metrics.exact_match([" 2024-01-02 ", '"x"', "x"], ["2024-01-02", "x", "y"])) == [1, 1, 0]
    f1 = metrics.token_f1(["the cat sat", "a dog", ""], ["cat sat down", "cat", ""])
    assert f1[0] == pytest.approx(0.8) and f1[1] == 0 and f1[2] == 1


def test_macro_f1_matches_scikit_learn_and_counts_unknown_labels_as_wrong():
    from sklearn.metrics import f1_score

    refs = ["pos", "neg", "neu", "pos", "neg", "pos"]
    preds = ["pos", "pos", "neu", "banana", "neg", "pos"]
    m = metrics.build("macro_f1", preds, refs, labels=["neg", "neu", "pos"])
    expected = f1_score(refs, preds, labels=["neg", "neu", "pos"], average="macro", zero_division=0)
    assert m() == pytest.approx(expected) and 0 < m() < 1


def test_json_validity_and_field_f1():
    refs = ['{"name": "Ann", "age": 3}', '{"name": "Bo", "tags": ["x", "y"]}']
    preds = ['```json\n{"name": "Ann", "age": 4}\n```', "not json"]
    assert list(metrics.json_valid(preds, refs)) == [1, 0]
    f = metrics.field_f1(preds, refs)
    assert f[0] == pytest.approx(0.5) and f[1] == 0
    assert metric_names("extraction", refs) == ["exact_match", "json_valid", "field_f1"]
    # references that are not JSON: no JSON metrics, token F1 instead
    assert metric_names("extraction", ["1999-01-02", "2000-01-01"]) == ["exact_match", "token_f1"]


def test_rouge_l_and_chrf_from_their_libraries():
    same = ["the quick brown fox"]
    assert metrics.rouge_l(same, same)[0] == pytest.approx(1.0) and metrics.chrf(same, same)[
        0
    ] == pytest.approx(1.0)
    assert 0 < metrics.rouge_l(["the quick fox"], same)[0] < 1
    assert 0 < metrics.chrf(["the quick fox"], same)[0] < 1


def test_perplexity_pools_tokens_and_is_lower_for_likelier_answers():
    good = metrics.perplexity_metric(np.array([[1.0, 10], [2.0, 10]]))
    bad = metrics.perplexity_metric(np.array([[10.0, 10], [20.0, 10]]))
    assert good() == pytest.approx(np.exp(3 / 20)) and bad() > good()
    assert metrics.build("perplexity", ["a"], ["a"], nll=None) is None


# --- bootstrap and verdict ---------------------------------------------------------------------


def _metric(values) -> metrics.Metric:
    return metrics.Metric(np.array(values, dtype=float))


def test_bootstrap_is_deterministic_and_paired():
    idx = bootstrap.resamples(50, seed=1)
    assert (idx == bootstrap.resamples(50, seed=1)).all() and not (
        idx == bootstrap.resamples(50, seed=2)
    ).all()
    rng = np.random.default_rng(0)
    base = rng.random(50)
    a, b = _metric(base + 0.05), _metric(base)
    d = bootstrap.paired_difference(a, b, idx)
    # the same examples, always 0.05 better: the paired interval is exactly that, however noisy the examples
    assert d["diff"] == pytest.approx(0.05) and d["ci"] == pytest.approx([0.05, 0.05])
    separate = [bootstrap.interval(m, idx)["ci"] for m in (a, b)]
    assert separate[0][0] < separate[1][1]  # unpaired intervals overlap: they could not tell the two apart
    ci = bootstrap.interval(_metric([0, 1] * 25), idx)
    assert ci["value"] == 0.5 and ci["ci"][0] < 0.5 < ci["ci"][1]


def _models(values: dict[str, list[float]], metric: str = "exact_match"):
    idx = bootstrap.resamples(len(next(iter(values.values()))), seed=0)
    scored = {k: _metric(v) for k, v in values.items()}
    labels = {"base_zero_shot": "base, zero-shot", "base_few_shot": "base, 5-shot", "tuned": "fine-tuned"}
    models = {
        k: {"label": labels[k], "metrics": {metric: bootstrap.interval(s, idx)}} for k, s in scored.items()
    }
    comps = [
        {"a": a, "b": b, "metric": metric, **bootstrap.paired_difference(scored[a], scored[b], idx)}
        for a in scored
        for b in scored
        if a != b
    ]
    return models, comps


@pytest.mark.parametrize(
    "tuned, outcome, words",
    [
        (
            [1] * 30 + [0] * 10,
            "fine-tune-better",
            "fine-tuned beats base, 5-shot by +0.50 exact match, 95% CI +",
        ),
        ([0] * 5 + [1] * 5 + [1] * 7 + [0] * 23, "no-gain", "no gain beyond the noise over base, 5-shot"),
        ([0] * 40, "prompting-better", "is worse than base, 5-shot"),
    ],
)
def test_verdict_reads_the_paired_interval(tuned, outcome, words):
    few = [1] * 10 + [0] * 30
    models, comps = _models({"base_zero_shot": [0] * 40, "base_few_shot": few, "tuned": tuned})
    v = verdict.decide("exact_match", models, comps, ["tuned"], target=None, confidence=0.95)
    assert v["outcome"] == outcome and v["baseline"] == "base_few_shot" and words in v["text"]
    if outcome == "no-gain":
        assert v["ci"][0] < 0 < v["ci"][1] and "prompting is enough" in v["text"]


def test_verdict_against_a_target_and_for_a_lower_is_better_metric():
    models, comps = _models(
        {"base_zero_shot": [0] * 20, "base_few_shot": [0] * 15 + [1] * 5, "tuned": [1] * 18 + [0] * 2}
    )
    v = verdict.decide("exact_match", models, comps, ["tuned"], target=0.8, confidence=0.95)
    assert v["target"]["tuned"]["meets"] and not v["target"]["base_few_shot"]["meets"]
    assert (
        "target exact match ≥ 0.8: fine-tuned 0.90 meets it, base, 5-shot 0.25 misses it by 0.55" in v["text"]
    )
    # perplexity: the smaller value wins, the baseline is the lower of the two prompts
    models, comps = _models(
        {"base_zero_shot": [9.0] * 20, "base_few_shot": [8.0] * 20, "tuned": [3.0] * 20}, metric="perplexity"
    )
    v = verdict.decide("perplexity", models, comps, ["tuned"], target=4.0, confidence=0.95)
    assert v["outcome"] == "fine-tune-better" and v["baseline"] == "base_few_shot" and "≤ 4" in v["text"]
    assert meets("perplexity", 3.0, 4.0) and shortfall("perplexity", 5.0, 4.0) == 1.0


def test_verdict_before_training_names_the_figure_to_beat():
    models, comps = _models({"base_zero_shot": [0] * 20, "base_few_shot": [1] * 5 + [0] * 15})
    v = verdict.decide("exact_match", models, comps, [], target=None, confidence=0.95)
    assert v["outcome"] == "baselines-only" and "base, 5-shot scores 0.25" in v["text"]


# --- report section ----------------------------------------------------------------------------


def _result() -> dict:
    models, comps = _models(
        {"base_zero_shot": [0] * 20, "base_few_shot": [1] * 5 + [0] * 15, "tuned": [1] * 20}
    )
    for m in models.values():
        m["system"] = {
            "latency_p50_s": 0.5,
            "latency_p95_s": 0.9,
            "tokens_per_s": 40.0,
            "peak_memory_gib": 1.2,
            "output_tokens_mean": 9.0,
        }
    return {
        "task_metrics": ["exact_match"],
        "models": models,
        "comparisons": comps,
        "n_examples": 20,
        "n_available": 60,
        "few_shot": 5,
        "confidence": 0.95,
        "resamples": 1000,
        "seed": 0,
        "wall_s": 12.0,
        "verdict": verdict.decide("exact_match", models, comps, ["tuned"], target=None, confidence=0.95),
        "examples": [{"prompt": "a | b", "reference": "r", "outputs": {"base_zero_shot": "x", "tuned": "r"}}],
        "plots": {"metric comparison": "eval_metrics.png"},
    }


def test_the_report_section_is_added_once_and_replaced_on_a_second_run(tmp_path):
    (tmp_path / "report.md").write_text("# Recommendation\n\nbody\n", encoding="utf-8")
    r = _result()
    section.update_report(tmp_path, r)
    r["wall_s"] = 99.0
    section.update_report(tmp_path, r)
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert text.startswith("# Recommendation\n\nbody\n") and text.count("## Evaluation") == 1
    assert "took 99 s" in text and "took 12 s" not in text
    assert "| fine-tuned | 1.00 (1.00…1.00) |" in text and "![metric comparison](eval_metrics.png)" in text
    assert "a \\| b" in text  # a pipe in a prompt does not break the table


# --- answers and facts -------------------------------------------------------------------------


def test_success_metrics_are_the_metrics_the_evaluation_knows():
    assert set(typing.get_args(SuccessMetric)) == set(METRICS)
    assert {m for ms in TASK_METRICS.values() for m in ms} <= set(METRICS)


def test_success_answer_is_validated():
    assert parse_answers({"success": {"metric": "accuracy", "target": 0.9}}).success.target == 0.9
    assert parse_answers({"success": {"metric": "perplexity", "target": 12}}).success.target == 12
    for bad, words in [
        ({"metric": "accuracy", "target": 90}, "between 0 and 1"),
        ({"metric": "bleu", "target": 0.5}, "success.metric"),
        ({"metric": "accuracy"}, "success.target"),
        ({"metric": "accuracy", "target": True}, "true/false"),
        ({"metric": "accuracy", "target": 0.5, "goal": 1}, "known keys: metric, target"),
    ]:
        with pytest.raises(UserError, match=words):
            parse_answers({"success": bad})


def test_probe_facts():
    probe = {"metric": "accuracy", "value": 0.86, "ci": [0.8, 0.9], "n": 50, "k": 5}
    f = probe_facts(probe, "accuracy", 0.8)
    assert f["probe_meets_target"] is True and f["probe_shortfall"] == pytest.approx(-0.06)
    f = probe_facts(probe, "accuracy", 0.9)
    assert f["probe_meets_target"] is False and f["probe_shortfall"] == pytest.approx(0.04)
    assert "probe_meets_target" not in probe_facts(probe, None, None)  # no target: nothing to meet
    assert probe_facts(None, "accuracy", 0.9) == {}
    json.dumps(f)


def test_the_terminal_view_has_every_model_the_examples_and_the_verdict():
    import io

    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=100).print(section.terminal(_result()))
    text = out.getvalue()
    assert "base, zero-shot" in text and "fine-tuned" in text and "1.00 (1.00…1.00)" in text
    assert "Held-out examples side by side" in text and "a | b" in text
    assert "Verdict: fine-tuned beats base, 5-shot" in text


def test_a_hand_edited_evaluation_section_is_checked_like_the_rest_of_the_plan():
    from advisor.plan import TrainingPlan

    base = {"model": "m", "method": "full", "stage": "sft"}
    plan = TrainingPlan.from_dict({**base, "evaluation": {"task": "chat", "few_shot": 0}})
    assert plan.evaluation.task == "chat" and plan.evaluation.few_shot == 0
    bad = {"max_examples": 0, "task": "poetry", "target_metric": "bleu", "enabled": "yes", "target": "high"}
    with pytest.raises(UserError) as e:
        TrainingPlan.from_dict({**base, "evaluation": bad})
    for words in (
        "evaluation.max_examples",
        "evaluation.task 'poetry'",
        "evaluation.target_metric 'bleu'",
        "evaluation.enabled",
        "evaluation.target must be a number",
    ):
        assert words in e.value.message
    with pytest.raises(UserError, match="unexpected keyword|evaluation"):
        TrainingPlan.from_dict({**base, "evaluation": {"shots": 5}})
    # Code tasks: running the data's tests on the model's code can be turned off, but not under its own target.
    assert TrainingPlan.from_dict({**base, "evaluation": {"run_tests": False}}).evaluation.run_tests is False
    with pytest.raises(UserError, match="evaluation.run_tests must be true or false"):
        TrainingPlan.from_dict({**base, "evaluation": {"run_tests": "no"}})
    with pytest.raises(UserError, match="tests_pass needs evaluation.run_tests: true"):
        TrainingPlan.from_dict(
            {**base, "evaluation": {"run_tests": False, "target_metric": "tests_pass", "target": 0.5}}
        )


def test_the_generation_budget_follows_the_longest_reference_within_the_plans_cap():
    from pathlib import Path

    from transformers import AutoTokenizer

    from launcher.evaluation.generation import new_token_budget

    tok = AutoTokenizer.from_pretrained(Path(__file__).parents[1] / "examples" / "demo" / "tokenizer")
    iso = ["2005-01-14", "1999-12-31"]
    n = max(len(tok(r, add_special_tokens=False)["input_ids"]) for r in iso)
    assert new_token_budget(tok, iso, 64) == 2 * n + 8 < 64
    assert new_token_budget(tok, ["word " * 200], 64) == 64  # never above the plan's cap
    assert new_token_budget(tok, [], 64) == 64


def test_long_answer_tasks_get_a_longer_generation_cap():
    from advisor.answers import parse_answers
    from advisor.recommend import recommend

    def cap(task):
        a = {"task": task, "clear_task": True, "tried_prompting": True, "examples": 5000}
        a |= {"model": "meta-llama/Llama-3.1-8B", "gpus": [{"memory_gib": 80}]}
        return recommend(parse_answers(a), detect_gpus=False).plan.evaluation.max_new_tokens

    assert cap("code") == 512 and cap("summarization") == 256 and cap("extraction") == 64
