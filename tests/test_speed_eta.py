"""The run refines the forecast: the job times its steps after warm-up (a real TRL run on CPU, the
mechanism; GPU figures are not claimed here), writes the measured ETA and summary.json's predicted vs
measured speed, and the launcher's view and final line follow it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from launchkit import make_run, tiny_base

from advisor.plan import SpeedSpec
from launcher import train
from launcher.callbacks import SPEED_WARMUP_STEPS, SPEED_WINDOW_STEPS, SpeedProbe, speed_line
from launcher.launch import speed_comparison
from launcher.progress import ProgressView


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("base") / "tiny-llama")


def test_job_measures_its_speed_after_warm_up_and_records_it(base, tmp_path, capsys):
    steps = SPEED_WARMUP_STEPS + SPEED_WINDOW_STEPS + 1
    speed = SpeedSpec(
        gpu="H200",
        tokens_per_s={"sft": 50000.0},
        step_s={"sft": 0.005},
        steps={"sft": 2 * steps},
        stage_s={"sft": [12.0, 10.4, 14.1]},
        run_s=[12.0, 10.4, 14.1],
    )
    rd = make_run(
        tmp_path, base, "lora", n_rows=40, max_steps=steps, eval_steps=100, save_steps=100, speed=speed
    )
    assert train.main([str(rd)]) == 0
    s = json.loads((rd / "summary.json").read_text())
    assert s["tokens_per_s_predicted"] == 50000.0 and s["step_s_predicted"] == 0.005
    assert s["step_s_measured"] > 0 and s["tokens_per_s_measured"] > 0 and s["wall_s_measured"] > 0
    assert s["wall_s_predicted"] == pytest.approx(
        12.0 * steps / (2 * steps)
    )  # the plan's stage time, pro rata
    rows = [json.loads(x) for x in (rd / "metrics.jsonl").read_text().splitlines()]
    probe = [r for r in rows if r.get("event") == "speed"]
    assert len(probe) == 1
    assert probe[0]["step"] == SPEED_WARMUP_STEPS + SPEED_WINDOW_STEPS  # measured once, after the warm-up
    assert probe[0]["eta_s"] > 0 and probe[0]["step_s_predicted"] == 0.005
    out = capsys.readouterr().out
    assert "after warm-up" in out and "the forecast is for the plan's GPU, not this device" in out  # CPU run


def test_a_plan_without_a_forecast_still_measures(base, tmp_path):
    rd = make_run(
        tmp_path, base, "lora", n_rows=40, max_steps=SPEED_WARMUP_STEPS + 2, eval_steps=100, save_steps=100
    )
    assert train.main([str(rd)]) == 0
    s = json.loads((rd / "summary.json").read_text())
    assert s["tokens_per_s_predicted"] is None and s["wall_s_predicted"] is None
    assert s["step_s_measured"] > 0  # the stage ended before the window filled: measured over what ran


def _state(step, max_steps=100, tokens=0):
    return SimpleNamespace(
        global_step=step, max_steps=max_steps, num_input_tokens_seen=tokens, is_world_process_zero=True
    )


def test_probe_skips_warm_up_and_compares_with_the_forecast(tmp_path, capsys, monkeypatch):
    clock = iter(range(1000))
    monkeypatch.setattr("launcher.callbacks.time.monotonic", lambda: float(next(clock)))
    probe = SpeedProbe(
        tmp_path / "m.jsonl", "sft", predicted_step_s=0.5, predicted_tokens_per_s=2000.0, warmup=2, window=3
    )
    args = SimpleNamespace(world_size=2)
    probe.on_train_begin(args, _state(0), None)
    tokens = 0
    for step in range(6):  # steps 1-2 are warm-up; 3-5 are timed, one clock tick each
        probe.on_step_begin(args, _state(step, tokens=tokens), None)
        tokens += 500
        probe.on_step_end(args, _state(step + 1, tokens=tokens), None)
    assert probe.measured["step_s_measured"] == 1.0
    assert probe.measured["tokens_per_s_measured"] == 1000.0  # 500 tokens per step per process x 2 processes
    assert probe.measured["eta_s"] == pytest.approx(
        95 * 5 / 3, abs=0.1
    )  # wall clock per timed step, evaluation included
    out = capsys.readouterr().out
    assert "+100%" in out and "a large difference" in out


def test_speed_line_is_quiet_when_close():
    line = speed_line({"step_s_measured": 0.52, "tokens_per_s_measured": 7900.0}, 0.5, 8200.0)
    assert "+4%" in line and "large" not in line


def test_progress_eta_is_the_forecast_until_measured():
    view = ProgressView("t", forecast_step_s={"sft": 2.0})
    view.update({"stage": "sft", "step": 10, "max_steps": 110, "loss": 1.0})
    assert view.eta_s() == 200.0 and view.eta_kind == "forecast"
    view.update({"event": "speed", "stage": "sft", "step": 10, "max_steps": 110, "eta_s": 50.0})
    view.update({"stage": "sft", "step": 60, "max_steps": 110, "loss": 0.9})
    assert view.eta_s() == pytest.approx(25.0) and view.eta_kind == "measured"
    assert "(measured)" in view.line()
    view.update({"stage": "dpo", "step": 0, "max_steps": 20, "loss": 0.7})  # a new stage: no forecast for it
    view.eta_s()
    assert view.eta_kind == ""


def test_launch_flags_a_large_difference_only():
    close = {
        "tokens_per_s_measured": 6200.0,
        "tokens_per_s_predicted": 6400.0,
        "wall_s_measured": 600.0,
        "wall_s_predicted": 580.0,
    }
    far = dict(close, tokens_per_s_measured=3000.0)
    assert "-3%" in speed_comparison(close) and "large" not in speed_comparison(close)
    assert "-53%" in speed_comparison(far) and "large difference" in speed_comparison(far)
    assert speed_comparison({"tokens_per_s_measured": 10.0}) is None
