"""`tunewise eval`: bad input is exit 2 with a fix and no traceback; every stage of a run is evaluated;
an interrupted evaluation leaves the previous files whole. Tiny random models (fast); the real-model
measurement is in tests/test_eval_realmodel.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from launchkit import DEMO_ROWS, make_run, tiny_base

from advisor.plan import EvalSpec, TrainingPlan
from launcher.rundir import write_run_files


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("base") / "tiny-llama")


def tunewise(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "tunewise", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _small_eval(rd, **changes):
    plan = TrainingPlan.load(rd / "plan.yaml")
    plan.evaluation = EvalSpec(
        **{
            "task": "question-answering",
            "max_examples": 4,
            "few_shot": 2,
            "max_new_tokens": 4,
            "batch_size": 4,
            **changes,
        }
    )
    write_run_files(rd, plan, {})
    return plan


def _fails(r, *words):
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "fix:" in r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def test_bad_input_is_exit_2_with_the_fix(base, tmp_path):
    _fails(tunewise("eval", tmp_path / "nothing"), "no plan at")
    rd = make_run(tmp_path / "a", base)
    _fails(tunewise("eval", rd, "--max-examples", "0"), "--max-examples must be at least 1")
    # no held-out split
    plan = _small_eval(rd)
    plan.data.validation = None
    write_run_files(rd, plan, {})
    _fails(tunewise("eval", rd), "has no held-out split", "recommend --out")
    # a held-out split of plain text: nothing to compare with
    rd = make_run(tmp_path / "b", base, rows=[json.dumps({"text": f"row {i}"}) for i in range(12)])
    _fails(tunewise("eval", rd), "has a reference answer")
    # the base model is not on disk
    rd = make_run(tmp_path / "c", base)
    plan = _small_eval(rd)
    plan.model = str(tmp_path / "no-such-model")
    write_run_files(rd, plan, {})
    _fails(tunewise("eval", rd), "is not on disk", "model: DIR")
    assert not (rd / "eval.json").exists()


def test_every_stage_of_an_sft_dpo_run_and_the_end_of_job_hook(base, tmp_path):
    from launchkit import preference_rows

    rd = make_run(tmp_path, base, stage="sft+dpo", rows=preference_rows(12), max_steps=2)
    _small_eval(rd)
    r = tunewise("launch", rd, "--cpu")
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads((rd / "eval.json").read_text())  # written by the end-of-job evaluation
    assert list(result["models"]) == ["base_zero_shot", "base_few_shot", "tuned_sft", "tuned"]
    assert [m["label"] for m in result["models"].values()][2:] == ["fine-tuned (SFT)", "fine-tuned (SFT+DPO)"]
    pairs = {(c["a"], c["b"]) for c in result["comparisons"]}
    assert {
        ("tuned_sft", "base_few_shot"),
        ("tuned", "base_few_shot"),
        ("tuned", "base_zero_shot"),
        ("base_few_shot", "base_zero_shot"),
    } <= pairs
    assert result["verdict"]["tuned"] == "tuned" and "Verdict:" in r.stdout
    summary = json.loads((rd / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["evaluation"]["metric"] == "exact_match"
    for png in ("eval_loss.png", "eval_metrics.png"):
        assert (rd / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (rd / "report.md").read_text()
    assert "## Evaluation" in report and "![loss curves](eval_loss.png)" in report
    # the command prints the same object as JSON
    r = tunewise("eval", rd, "--format", "json", "--max-examples", "2")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n_examples"] == 2 == json.loads((rd / "eval.json").read_text())["n_examples"]


def test_a_plan_can_turn_the_end_of_job_evaluation_off(base, tmp_path):
    rd = make_run(tmp_path, base, method="full", max_steps=1)
    _small_eval(rd, enabled=False)
    r = tunewise("launch", rd, "--cpu")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (rd / "eval.json").exists() and "evaluation" not in json.loads(
        (rd / "summary.json").read_text()
    )
    # but it can be asked for: a full fine-tune's model/ directory is the tuned model
    r = tunewise("eval", rd)
    assert r.returncode == 0, r.stderr
    assert list(json.loads((rd / "eval.json").read_text())["models"]) == [
        "base_zero_shot",
        "base_few_shot",
        "tuned",
    ]


def test_an_interrupted_evaluation_leaves_the_previous_files_whole(base, tmp_path, monkeypatch):
    from launcher.evaluation import generation
    from launcher.evaluation.run import evaluate_run

    rd = make_run(tmp_path, base, rows=DEMO_ROWS[:12])
    _small_eval(rd)
    (rd / "eval.json").write_text('{"old": true}\n')
    report = (rd / "report.md").read_text()
    real, calls = generation.generate, []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(generation, "generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate_run(rd)
    assert json.loads((rd / "eval.json").read_text()) == {"old": True}
    assert (rd / "report.md").read_text() == report
    assert not [p for p in rd.iterdir() if p.name.endswith(".tmp") or p.suffix == ".png"]


@pytest.mark.parametrize(
    "task, expected",
    [
        ("chat", ["rouge_l", "perplexity"]),
        ("generation", ["chrf", "perplexity"]),
        ("classification", ["accuracy", "macro_f1"]),
        ("summarization", ["rouge_l"]),
    ],
)
def test_each_task_gets_its_metrics_on_a_real_generation(base, tmp_path, task, expected):
    from launcher.evaluation.run import evaluate_run

    rows = [
        json.dumps({"prompt": f"Is {i} even?", "completion": "yes" if i % 2 == 0 else "no"})
        for i in range(16)
    ]
    rd = make_run(tmp_path, base, rows=rows)
    _small_eval(rd, task=task)
    result = evaluate_run(rd)
    assert result["task_metrics"] == expected and list(result["models"]) == [
        "base_zero_shot",
        "base_few_shot",
    ]
    for m in result["models"].values():
        for name in expected:
            v = m["metrics"][name]
            assert v["ci"][0] <= v["value"] <= v["ci"][1]
            assert v["value"] > 1 if name == "perplexity" else 0 <= v["value"] <= 1
    assert result["verdict"]["outcome"] == "baselines-only"  # nothing trained yet: the figure to beat


def test_a_missing_plotting_library_costs_the_plots_not_the_numbers(base, tmp_path, monkeypatch):
    from launcher.evaluation import plots
    from launcher.evaluation.run import evaluate_run

    rd = make_run(tmp_path, base, rows=DEMO_ROWS[:12])
    _small_eval(rd)

    def no_matplotlib(*a, **k):
        raise ModuleNotFoundError("No module named 'matplotlib'")

    monkeypatch.setattr(plots, "loss_curves", no_matplotlib)
    result = evaluate_run(rd)
    saved = json.loads((rd / "eval.json").read_text())
    assert saved["models"] == result["models"] and saved["plots"] == {}
    assert "matplotlib" in saved["plots_missing"]
