"""Time and cost before launch: the plan's forecast, the answers' gpu_hour_price, the report, estimate --gpu,
and Slurm's --time (real CLI subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from advisor.answers import parse_answers
from advisor.errors import UserError
from advisor.plan import LoraSpec, SpeedSpec, TrainingPlan
from launcher.jobfiles import SLURM_TIME_UNKNOWN, slurm_sbatch, slurm_time

ROOT = Path(__file__).resolve().parents[1]
PERSONA = yaml.safe_load((ROOT / "examples" / "answers" / "brand-voice-chatbot-24gb.yaml").read_text())
CLI = [sys.executable, "-m", "tunewise"]


def _cli(*args, check_rc: int | None = 0) -> subprocess.CompletedProcess:
    out = subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=ROOT)
    if check_rc is not None:
        assert out.returncode == check_rc, out.stderr
    return out


def _recommend(tmp_path, **changes) -> dict:
    p = tmp_path / "answers.yaml"
    p.write_text(yaml.safe_dump({**PERSONA, **changes}))
    return json.loads(_cli("recommend", "--answers", str(p), "--format", "json", "--no-detect").stdout)


def test_plan_carries_time_and_cost_at_the_users_price(tmp_path):
    j = _recommend(tmp_path, gpu_hour_price=0.5, gpus=[{"name": "NVIDIA H100 80GB HBM3", "memory_gib": 80}])
    sp = j["plan"]["speed"]
    predicted, shortest, longest = sp["run_s"]
    assert shortest < predicted < longest
    assert sp["gpu"] == "NVIDIA H100 80GB HBM3" and sp["tokens_per_s"]["sft"] > 1000
    assert sp["usd_per_gpu_hour"] == 0.5 and sp["price_source"] == "gpu_hour_price in the answers"
    assert sp["cost_usd"][0] == pytest.approx(predicted / 3600 * 0.5, rel=0.01)
    steps = sp["steps"]["sft"]
    assert sp["stage_s"]["sft"][0] >= steps * sp["step_s"]["sft"]  # training steps + evaluations
    assert "steps ×" in j["plan"]["reasons"]["speed"] and "spread" in j["plan"]["reasons"]["speed"]


def test_default_price_is_the_dated_table_and_said_to_be_no_quote(tmp_path):
    sp = _recommend(tmp_path, gpus=[{"name": "NVIDIA H200", "memory_gib": 141}])["plan"]["speed"]
    assert sp["usd_per_gpu_hour"] > 0 and "not a quote" in sp["price_source"] and "2026" in sp["price_source"]


def test_unknown_card_gives_unknown_time_with_the_reason(tmp_path):
    j = _recommend(tmp_path, gpus=[{"name": "Mystery Accelerator", "memory_gib": 24}])
    assert j["plan"]["speed"] is None
    assert j["plan"]["reasons"]["speed"].startswith(
        "time unknown: unknown throughput for GPU 'Mystery Accelerator'"
    )


def test_sft_then_dpo_times_both_stages(tmp_path):
    j = _recommend(
        tmp_path,
        preference_pairs=800,
        goals=["tone-style"],
        examples=2500,
        gpus=[{"name": "NVIDIA A100-SXM4-80GB", "memory_gib": 80}],
    )
    if j["stage"] != "sft+dpo":
        pytest.skip(f"the rules chose {j['stage']}")
    sp = j["plan"]["speed"]
    assert set(sp["stage_s"]) == {"sft", "dpo"}
    assert sp["run_s"][0] == pytest.approx(sp["stage_s"]["sft"][0] + sp["stage_s"]["dpo"][0], abs=0.2)


@pytest.mark.parametrize(
    "value, needle", [(True, "not true/false"), (-1, "greater than 0"), ("cheap", "number")]
)
def test_gpu_hour_price_is_validated(value, needle):
    with pytest.raises(UserError, match="gpu_hour_price") as e:
        parse_answers({"gpu_hour_price": value})
    assert needle in str(e.value)


def test_markdown_report_shows_time_and_cost_rows(tmp_path):
    p = tmp_path / "answers.yaml"
    p.write_text(yaml.safe_dump({**PERSONA, "gpu_hour_price": 0.8}))
    md = _cli("recommend", "--answers", str(p), "--format", "markdown", "--no-detect").stdout
    time_row = next(line for line in md.splitlines() if line.startswith("| Predicted time |"))
    cost_row = next(line for line in md.splitlines() if line.startswith("| Predicted cost |"))
    assert "RTX 4090" in time_row and " to " in time_row
    assert "$0.80 per GPU-hour" in cost_row


def test_brief_view_puts_time_beside_the_memory_verdict(tmp_path):
    p = tmp_path / "answers.yaml"
    p.write_text(yaml.safe_dump(PERSONA))
    out = _cli("recommend", "--answers", str(p), "--brief", "--no-detect").stdout
    block = out.split("Memory per GPU", 1)[1].split("Plan", 1)[0]
    assert "Time:" in block and "cost unknown (set gpu_hour_price)" in " ".join(block.split())


# --- tunewise estimate --gpu ----------------------------------------------------------------------------


def test_estimate_json_gives_tokens_per_s_and_step_s():
    j = json.loads(
        _cli(
            "estimate",
            "--model",
            "llama-3.1-8b",
            "--method",
            "lora",
            "--gpu",
            "A100-80GB",
            "--tokens",
            "10000000",
            "--format",
            "json",
        ).stdout
    )
    assert j["step_s"] == pytest.approx(4 * 1024 / j["tokens_per_s"], rel=1e-3)
    assert j["run_s"][0] == pytest.approx(1e7 / j["tokens_per_s"], rel=1e-3)
    assert j["throughput"]["gpu"] == "A100-80GB" and j["plain_tokens_per_s"] > 0
    plain = json.loads(
        _cli(
            "estimate",
            "--model",
            "llama-3.1-8b",
            "--method",
            "lora",
            "--gpu",
            "A100-80GB",
            "--stack",
            "plain",
            "--format",
            "json",
        ).stdout
    )
    assert plain["throughput"]["efficiency_key"] == "plain:adapters" and "plain_tokens_per_s" not in plain


def test_estimate_text_names_speed_and_time():
    out = _cli(
        "estimate",
        "--model",
        "llama-3.1-8b",
        "--method",
        "qlora",
        "--gpu",
        "NVIDIA GeForce RTX 4090",
        "--tokens",
        "2000000",
    ).stdout
    assert "tokens/s" in out and "s per step" in out and "2,000,000 tokens:" in out and "speed-up" in out


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--gpu", "NVIDIA A10G"], "unknown throughput"),
        (["--tokens", "100"], "--tokens needs --gpu"),
        (["--gpu", "T4", "--method", "full"], "fp32"),
    ],
)
def test_estimate_speed_errors_exit_2_with_a_fix(args, needle):
    base = ["estimate", "--model", "llama-3.2-1b"]
    if "--method" not in args:
        base += ["--method", "lora"]
    out = _cli(*base, *args, check_rc=2)
    assert needle in out.stderr and "fix:" in out.stderr and "Traceback" not in out.stderr


# --- Slurm's --time ---------------------------------------------------------------------------------------


def _plan(speed=None) -> TrainingPlan:
    return TrainingPlan(model="m", method="lora", stage="sft", lora=LoraSpec(), speed=speed)


def test_slurm_time_is_the_longest_forecast_with_a_margin():
    sp = SpeedSpec(gpu="H100", steps={"sft": 100}, step_s={"sft": 10.0}, run_s=[3600.0, 3100.0, 4200.0])
    text, why = slurm_time(_plan(sp))
    assert text == "02:15:00"  # 4,200 s x 1.5 + 30 min = 2 h 15 min
    script = slurm_sbatch(_plan(sp))
    assert "#SBATCH --time=02:15:00" in script and "× 1.5" in script and "24:00:00" not in script
    long = SpeedSpec(gpu="H100", run_s=[200000.0, 180000.0, 230000.0])
    assert slurm_time(_plan(long))[0] == "4-00:30:00"  # 345,000 s + 30 min, rounded up to 15 min


def test_slurm_time_without_a_forecast_says_so():
    text, why = slurm_time(_plan())
    assert text == SLURM_TIME_UNKNOWN and "no time forecast" in why
    assert f"#SBATCH --time={SLURM_TIME_UNKNOWN}" in slurm_sbatch(_plan())


def test_plan_yaml_round_trips_the_forecast(tmp_path):
    sp = SpeedSpec(
        gpu="H100",
        tokens_per_s={"sft": 5000.0},
        step_s={"sft": 3.2},
        steps={"sft": 10},
        stage_s={"sft": [40.0, 35.0, 47.0]},
        run_s=[40.0, 35.0, 47.0],
        cost_usd=[0.1, 0.09, 0.12],
    )
    p = tmp_path / "plan.yaml"
    p.write_text(_plan(sp).to_yaml())
    assert TrainingPlan.load(p).speed == sp


def test_the_oom_ladder_moves_the_forecast_with_the_plan():
    from launcher.oom import next_step

    sp = SpeedSpec(
        gpu="H100",
        tokens_per_s={"sft": 6000.0},
        step_s={"sft": 2.0},
        steps={"sft": 100},
        stage_s={"sft": [210.0, 180.0, 250.0]},
        run_s=[210.0, 180.0, 250.0],
        cost_usd=[1.0, 0.9, 1.2],
    )
    plan = TrainingPlan(
        model="llama-3.1-8b",
        method="lora",
        stage="sft",
        lora=LoraSpec(),
        micro_batch_size=1,
        grad_accum=16,
        gradient_checkpointing=False,
        speed=sp,
    )
    step = next_step(plan)
    assert step.change == "gradient checkpointing on"
    new = step.plan.speed
    ratio = new.step_s["sft"] / 2.0
    assert 1.3 < ratio < 1.5  # one more decoder forward: 6 passes' worth of FLOPs instead of 4, roughly
    assert new.tokens_per_s["sft"] == pytest.approx(6000.0 / ratio, rel=1e-3)
    assert new.run_s[0] == pytest.approx(210.0 * ratio, rel=1e-3) and new.cost_usd[0] == pytest.approx(
        ratio, rel=0.01
    )
    assert "step × " in step.plan.reasons["speed"]
    q = next_step(step.plan)  # LoRA -> QLoRA: the dequantisation traffic makes each step a little slower
    assert q.plan.method == "qlora" and q.plan.speed.step_s["sft"] > new.step_s["sft"]


def test_the_forecast_is_not_part_of_what_a_resume_checks(tmp_path):
    from launcher import fingerprint

    sp = SpeedSpec(gpu="H100", run_s=[1.0, 0.9, 1.2], usd_per_gpu_hour=2.0)
    before = fingerprint.compute(tmp_path, _plan(sp))
    assert fingerprint.compute(tmp_path, _plan(None)) == before  # a new price or forecast trains the same
