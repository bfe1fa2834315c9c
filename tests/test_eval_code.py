"""`tunewise eval` on a code task whose held-out rows carry tests: `tests_pass` (pass@1) beside exact match,
through the paired bootstrap and the verdict. A tiny random model fails every test; generation replaced by
fixed answers checks a score of 1 and the comparison with a fine-tuned model. Fast (seconds)."""

from __future__ import annotations

import json

import pytest
from launchkit import make_run, tiny_base
from test_eval_cli import _fails, _small_eval, tunewise

from advisor.errors import UserError
from launcher.evaluation import codetests, generation, run
from launcher.rundir import final_dir

N = 12
SOLUTIONS = [f"def f{i}(x):\n    return x * {i}\n" for i in range(N)]
ROWS = [
    json.dumps(
        {
            "prompt": f"Write a Python function f{i}(x) that returns x times {i}.",
            "completion": f"```python\n{SOLUTIONS[i]}```",
            "tests": [f"assert f{i}(2) == {2 * i}", f"assert f{i}(-1) == {-i}"],
        }
    )
    for i in range(N)
]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("base") / "tiny-llama")


def test_a_random_model_fails_the_tests_and_the_report_says_code_was_run(base, tmp_path):
    rd = make_run(tmp_path, base, rows=ROWS)
    _small_eval(rd, task="code")
    result = run.evaluate_run(rd)
    assert result["task_metrics"] == ["tests_pass", "exact_match"]  # the headline: the data's own tests
    for m in result["models"].values():
        assert m["metrics"]["tests_pass"]["value"] == 0.0
    assert result["verdict"]["metric"] == "tests_pass" and result["verdict"]["outcome"] == "baselines-only"
    note = result["code_tests"]
    assert (
        note["run"] is True and note["examples_with_tests"] == 4 and note["timeout_s"] == codetests.TIMEOUT_S
    )
    assert "executed on this machine" in note["note"] and "evaluation.run_tests: false" in note["note"]
    assert "executed on this machine" in (rd / "report.md").read_text()
    assert json.loads((rd / "summary.json").read_text())["evaluation"]["metric"] == "tests_pass"


def _fake_models(monkeypatch, tuned_answers):
    """Base models answer with wrong code; the fine-tuned one with `tuned_answers` (by prompt)."""

    def load(plan, directory=None):
        return directory, None  # the "model" says which one is asked

    def generate(model, tok, prompts, **kwargs):
        texts = [
            tuned_answers(p[-1]["content"]) if model is not None else "def f(x):\n    return None\n"
            for p in prompts
        ]
        return generation.Outputs(texts, system={"latency_p50_s": 0.0})

    monkeypatch.setattr(run, "_load", load)
    monkeypatch.setattr(generation, "generate", generate)
    monkeypatch.setattr(generation, "new_token_budget", lambda *a, **k: 8)


def _tuned_run(tmp_path, **changes):
    rd = make_run(tmp_path, tmp_path / "no-model-needed", rows=ROWS)
    plan = _small_eval(rd, task="code", **changes)
    tuned = final_dir(rd, plan, "sft", last=True)
    tuned.mkdir()
    (tuned / "adapter_config.json").write_text("{}")
    return rd


def _solution(prompt: str) -> str:
    i = int(prompt.split("function f")[1].split("(")[0])
    return f"Here you are:\n```python\n{SOLUTIONS[i]}```"


def test_correct_code_scores_1_and_the_verdict_carries_it(tmp_path, monkeypatch):
    _fake_models(monkeypatch, _solution)
    rd = _tuned_run(tmp_path, target_metric="tests_pass", target=0.9)
    result = run.evaluate_run(rd)
    tuned = result["models"]["tuned"]["metrics"]
    assert tuned["tests_pass"] == {"value": 1.0, "ci": [1.0, 1.0]}
    assert tuned["exact_match"]["value"] == 0.0  # same code, other words around it: only the tests see it
    assert result["models"]["base_zero_shot"]["metrics"]["tests_pass"]["value"] == 0.0
    diff = next(
        c
        for c in result["comparisons"]
        if (c["a"], c["b"], c["metric"]) == ("tuned", "base_few_shot", "tests_pass")
    )
    assert diff["diff"] == 1.0 and diff["ci"] == [1.0, 1.0]
    v = result["verdict"]
    assert v["outcome"] == "fine-tune-better" and v["metric"] == "tests_pass" and "tests passed" in v["text"]
    assert "meets it" in v["text"]


def test_a_hanging_answer_fails_on_the_timeout_and_the_evaluation_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(codetests, "TIMEOUT_S", 1.0)
    _fake_models(monkeypatch, lambda p: "while True:\n    pass\n" if "f10(" in p else _solution(p))
    result = run.evaluate_run(_tuned_run(tmp_path))
    assert result["models"]["tuned"]["metrics"]["tests_pass"]["value"] == 0.75  # 3 of the 4 held-out rows


def test_run_tests_false_measures_exact_match_only_and_says_so(tmp_path, monkeypatch):
    _fake_models(monkeypatch, _solution)
    result = run.evaluate_run(_tuned_run(tmp_path, run_tests=False))
    assert result["task_metrics"] == ["exact_match"] and result["verdict"]["metric"] == "exact_match"
    assert result["code_tests"]["run"] is False and "run_tests is false" in result["code_tests"]["note"]


def test_tests_passed_as_the_target_needs_tests_on_every_row(tmp_path, monkeypatch):
    _fake_models(monkeypatch, _solution)
    rd = _tuned_run(tmp_path, target_metric="tests_pass", target=0.5)
    val = rd / "data" / "validation.jsonl"
    lines = val.read_text().splitlines()
    lines[0] = json.dumps({k: v for k, v in json.loads(lines[0]).items() if k != "tests"})
    val.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match="1 of the 4 held-out examples carry no tests"):
        run.evaluate_run(rd)
    _small_eval(rd, task="code")  # no target: exact match leads, and the note says why no tests ran
    result = run.evaluate_run(rd)
    assert result["task_metrics"] == ["exact_match"] and "only 3 of 4" in result["code_tests"]["note"]


def test_tests_that_are_not_strings_are_exit_2_naming_the_row(base, tmp_path):
    rd = make_run(tmp_path, base, rows=ROWS)
    _small_eval(rd, task="code")
    val = rd / "data" / "validation.jsonl"
    lines = val.read_text().splitlines()
    lines[1] = json.dumps({**json.loads(lines[1]), "tests": {"f": "assert f(1)"}})
    val.write_text("\n".join(lines) + "\n")
    _fails(tunewise("eval", rd), f"{val}, line 2: `tests`", "list of strings")


def test_the_probe_measures_tests_passed_for_code_with_tests(base, tmp_path, monkeypatch):
    from advisor.answers import Answers
    from launcher.evaluation.probe import probe_few_shot

    data = tmp_path / "code.jsonl"
    data.write_text("\n".join(ROWS) + "\n", encoding="utf-8")
    monkeypatch.setattr(
        generation,
        "generate",
        lambda m, t, prompts, **k: generation.Outputs([_solution(p[-1]["content"]) for p in prompts]),
    )
    got = probe_few_shot(Answers(task="code", dataset=str(data), model=str(base)), shots=1, max_new_tokens=4)
    assert got["metric"] == "tests_pass" and got["value"] == 1.0  # no success metric: the task's headline
    plain = tmp_path / "plain.jsonl"
    plain.write_text(
        "".join(json.dumps({k: v for k, v in json.loads(r).items() if k != "tests"}) + "\n" for r in ROWS)
    )
    got = probe_few_shot(Answers(task="code", dataset=str(plain), model=str(base)), shots=1, max_new_tokens=4)
    assert got["metric"] == "exact_match"  # no tests in the data: exact match leads, as in `tunewise eval`
    with pytest.raises(UserError, match="the success metric is tests passed"):
        probe_few_shot(
            Answers(
                task="code",
                dataset=str(plain),
                model=str(base),
                success={"metric": "tests_pass", "target": 0.5},
            )
        )
