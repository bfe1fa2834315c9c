"""The record is true: summary.json's first and last loss are the first and last steps' even when the run is
shorter than the logging interval, and a job that fails before training records `failed` and why."""

from __future__ import annotations

import json
import shutil

import pytest
from launchkit import make_run, tiny_base

from launcher import train


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("base") / "tiny-llama")


def test_a_run_shorter_than_the_logging_interval_records_its_last_step(base, tmp_path):
    rd = make_run(tmp_path, base, "lora", max_steps=3, logging_steps=5, eval_steps=3, save_steps=3)
    assert train.main([str(rd)]) == 0
    rows = [json.loads(x) for x in (rd / "metrics.jsonl").read_text().splitlines()]
    losses = {r["step"]: r["loss"] for r in rows if "loss" in r and r.get("stage") == "sft"}
    assert sorted(losses) == [1, 3]  # the first step (logging_first_step) and the last, not only the first
    s = json.loads((rd / "summary.json").read_text())
    assert s["loss_first"] == losses[1] and s["loss_last"] == losses[3]


def test_a_job_that_fails_before_training_records_failed_and_why(base, tmp_path):
    model = tmp_path / "broken"
    shutil.copytree(base, model)
    cfg = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**cfg, "model_type": "no-such-architecture"}))
    rd = make_run(tmp_path, model, "lora")
    with pytest.raises(
        ValueError, match="no-such-architecture"
    ):  # a crash, not bad input: the job shows the traceback
        train.main([str(rd)])
    s = json.loads((rd / "summary.json").read_text())
    assert s["status"] == "failed" and s["stage"] == "sft" and s["method"] == "lora"
    assert "no-such-architecture" in s["error"]


@pytest.mark.parametrize(("warmup", "scheduler"), [(0.03, "cosine"), (0.3, "linear")])
def test_no_optimizer_step_runs_at_learning_rate_0(base, tmp_path, warmup, scheduler):
    # 12 steps with a 3% warm-up used to round up to one whole step at lr 0 (the 12-step plan)
    rd = make_run(
        tmp_path,
        base,
        "lora",
        max_steps=12,
        logging_steps=1,
        eval_steps=12,
        save_steps=12,
        warmup_ratio=warmup,
        lr_scheduler=scheduler,
        learning_rate=1e-3,
    )
    assert train.main([str(rd)]) == 0
    rows = [json.loads(x) for x in (rd / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["learning_rate"] for r in rows if "learning_rate" in r and "loss" in r]
    assert len(lrs) == 12 and min(lrs) > 0, lrs
    if warmup == 0.03:  # a warm-up that rounds to one step is no warm-up: the first step at the full rate
        assert lrs[0] == pytest.approx(1e-3)
    else:  # ceil(0.3 x 13) = 4 warm-up steps: 1/4, 2/4, 3/4 of the rate, then the full rate
        assert lrs[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
