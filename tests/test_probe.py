"""`recommend --probe`: a measured few-shot figure changes the decision when it meets the target (TW121),
and the report says by how much it misses otherwise (TW707)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
import realmodel
import yaml

from advisor.answers import parse_answers
from advisor.recommend import recommend

WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "tiger",
    "maple",
    "ocean",
    "pencil",
    "garden",
    "silver",
    "candle",
    "window",
    "forest",
    "rocket",
    "button",
    "ladder",
    "mirror",
    "planet",
    "violin",
    "harbor",
]


def _answers(**extra) -> dict:
    return {
        "task": "extraction",
        "clear_task": True,
        "tried_prompting": True,
        "examples": 2000,
        "gpus": [],
        "success": {"metric": "exact_match", "target": 0.8},
        **extra,
    }


def test_a_probe_that_meets_the_target_makes_it_prompting_and_cites_the_figure():
    answers = parse_answers(_answers())
    assert recommend(answers, detect_gpus=False).decision.approach == "fine-tune"
    probe = {"metric": "exact_match", "value": 0.86, "ci": [0.76, 0.94], "n": 50, "k": 5}
    d = recommend(answers, detect_gpus=False, probe=probe).decision
    assert d.approach == "prompting" and "TW121-probe-prompting-meets-target" in d.fired
    msg = next(r.message for r in d.trace if r.id == "TW121-probe-prompting-meets-target")
    assert "5-shot prompting of the base model scores 0.86 exact match" in msg and "target of 0.8" in msg


def test_a_probe_that_misses_keeps_fine_tuning_and_says_by_how_much():
    probe = {"metric": "exact_match", "value": 0.1, "ci": [0.02, 0.2], "n": 50, "k": 5}
    d = recommend(parse_answers(_answers()), detect_gpus=False, probe=probe).decision
    assert d.approach == "fine-tune" and "TW707-probe-misses-target" in d.fired
    note = next(r.message for r in d.trace if r.id == "TW707-probe-misses-target")
    assert "scores 0.1 exact match: 0.7 short of your target of 0.8" in note


def _run(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run(
        [sys.executable, "-m", "tunewise", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.mark.slow
def test_probe_on_a_real_model_flips_an_easy_task_to_prompting(tmp_path, smollm2_dir):
    rng = random.Random(0)
    rows = []
    for i in range(1000):
        w = f"{rng.choice(WORDS)}{i}"
        rows.append({"prompt": f"Repeat this word exactly: {w}", "completion": w})
    realmodel.write_jsonl(tmp_path / "copy.jsonl", rows)
    (tmp_path / "answers.yaml").write_text(
        yaml.safe_dump(_answers(dataset="copy.jsonl", model=str(smollm2_dir), examples=None)),
        encoding="utf-8",
    )
    plain = _run(["recommend", "--answers", "answers.yaml", "--format", "json", "--no-detect"], tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["approach"] == "fine-tune"
    probed = _run(
        ["recommend", "--answers", "answers.yaml", "--probe", "--format", "markdown", "--no-detect"], tmp_path
    )
    assert probed.returncode == 0, probed.stderr
    assert "TW121" in probed.stdout and "5-shot prompting of the base model scores" in probed.stdout
    assert "meets your target of 0.8" in probed.stdout


@pytest.mark.slow
def test_probe_errors_are_exit_2_without_a_traceback(tmp_path):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(_answers(model="/no/such/model")), encoding="utf-8")
    r = _run(["recommend", "--answers", "a.yaml", "--probe", "--no-detect"], tmp_path)
    assert r.returncode == 2 and "--probe needs a dataset" in r.stderr and "Traceback" not in r.stderr
    realmodel.write_jsonl(
        tmp_path / "d.jsonl", [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(200)]
    )
    (tmp_path / "b.yaml").write_text(
        yaml.safe_dump(_answers(dataset="d.jsonl", examples=None)), encoding="utf-8"
    )
    r = _run(["recommend", "--answers", "b.yaml", "--probe", "--no-detect"], tmp_path)
    assert r.returncode == 2 and "--probe needs the model" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump(_answers(dataset="d.jsonl", examples=None, model=str(tmp_path / "nope"))),
        encoding="utf-8",
    )
    r = _run(["recommend", "--answers", "c.yaml", "--probe", "--no-detect"], tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
