"""`tunewise launch` through real subprocesses: several processes, no-GPU message, smoke, OOM ladder."""

import json
import os
import subprocess
import sys

import pytest
from launchkit import make_run, tiny_base

from advisor.plan import TrainingPlan


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("base") / "tiny-llama")


def tunewise(*args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "tunewise", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_gpu_plan_without_gpu_points_to_smoke(base, tmp_path):
    rd = make_run(tmp_path, base)
    r = tunewise("launch", rd, env={"CUDA_VISIBLE_DEVICES": ""})
    assert r.returncode == 2 and "--smoke" in r.stderr and "Traceback" not in r.stderr
    assert not (rd / "summary.json").exists()


def test_not_a_run_dir_and_bad_flags(tmp_path):
    r = tunewise("launch", tmp_path)
    assert r.returncode == 2 and "no plan.yaml" in r.stderr
    r = tunewise("launch", tmp_path, "--max-steps", "0")
    assert r.returncode == 2 and "positive integer" in r.stderr


def test_two_processes_through_the_launcher(base, tmp_path):
    rd = make_run(tmp_path, base, n_gpus=2, max_steps=2)
    r = tunewise("launch", rd, "--cpu")
    assert r.returncode == 0, r.stdout + r.stderr + (rd / "train.log").read_text()[-3000:]
    assert "torch.distributed.run" in r.stdout and "--nproc_per_node=2" in r.stdout
    log = (rd / "train.log").read_text()
    assert "world_size" in log or "nproc" in log or (rd / "adapter" / "adapter_model.safetensors").exists()
    s = json.loads((rd / "summary.json").read_text())
    assert s["status"] == "completed" and s["steps"] == 2
    # One metrics writer (rank 0): one line per logged step, not two.
    steps = [
        json.loads(x)["step"]
        for x in (rd / "metrics.jsonl").read_text().splitlines()
        if "loss" in json.loads(x)
    ]
    assert steps == [1, 2]


def test_oom_ladder_steps_down_and_records_each_step(base, tmp_path):
    rd = make_run(tmp_path, base, max_steps=2, gradient_checkpointing=False)
    r = tunewise("launch", rd, "--cpu", env={"TUNEWISE_TEST_OOM_ATTEMPTS": "2"})
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads((rd / "summary.json").read_text())
    assert s["status"] == "completed"
    assert s["oom_steps"] == [
        "micro-batch 2 -> 1, gradient accumulation 1 -> 2 (effective batch unchanged)",
        "gradient checkpointing on",
    ]
    plan = TrainingPlan.load(rd / "plan.yaml")
    assert (plan.micro_batch_size, plan.grad_accum, plan.gradient_checkpointing) == (1, 2, True)
    assert "## Out-of-memory fallback" in (rd / "report.md").read_text()
    assert r.stdout.count("stepping down") == 2


def test_oom_ladder_predicts_the_stepped_down_plan_again():
    # summary.json compares measured memory with the plan's prediction: after a step down the
    # prediction must be for what runs now, moved by exactly what the estimator says the change saves.
    from advisor.memory import config_for_plan, estimate
    from advisor.models import resolve_model
    from advisor.plan import LoraSpec
    from launcher import oom

    plan = TrainingPlan(
        model="llama-3.1-8b",
        method="lora",
        stage="sft",
        lora=LoraSpec(r=4, alpha=8, dropout=0.0),
        micro_batch_size=4,
        max_length=512,
        gradient_checkpointing=False,
        predicted_peak_gib=10.0,
        predicted_device_gib=12.0,
    )
    facts = resolve_model("llama-3.1-8b")
    seen = []
    while (step := oom.next_step(plan)) is not None:
        new = step.plan
        saved = (
            estimate(facts, config_for_plan(plan)).peak_allocated_gib
            - estimate(facts, config_for_plan(new)).peak_allocated_gib
        )
        assert saved > 0, step.change  # every rung predicts less memory
        assert new.predicted_peak_gib == pytest.approx(plan.predicted_peak_gib - saved, abs=2e-3)
        assert new.predicted_device_gib < plan.predicted_device_gib
        seen.append(step.change)
        plan = new
    assert len(seen) == 4 and plan.method == "qlora"
    unknown = TrainingPlan(
        model="/nonexistent/model", method="lora", stage="sft", micro_batch_size=2, predicted_peak_gib=10.0
    )
    assert oom.next_step(unknown).plan.predicted_peak_gib is None  # no config here: unknown, never stale


def test_oom_ladder_exhausted_stops_with_a_clear_message(base, tmp_path):
    rd = make_run(tmp_path, base, method="qlora", micro_batch_size=1, max_steps=2)
    r = tunewise("launch", rd, "--cpu", env={"TUNEWISE_TEST_OOM_ATTEMPTS": "99"})
    assert r.returncode == 1 and "out of memory" in r.stderr and "Traceback" not in r.stderr
    s = json.loads((rd / "summary.json").read_text())
    assert s["status"] == "failed" and "out of memory" in s["error"]


def test_smoke_runs_a_qlora_plan_on_a_stand_in(tmp_path):
    # The real model is not available offline: the smoke run builds a Llama stand-in and uses the
    # bundled tokenizer, trains a few steps with 4-bit weights on CPU, and never touches the run itself.
    from launchkit import DEMO_ROWS

    from launcher.rundir import write_run_files

    rd = tmp_path / "run"
    (rd / "data").mkdir(parents=True)
    (rd / "data" / "train.jsonl").write_text("\n".join(DEMO_ROWS[:16]) + "\n")
    plan = TrainingPlan.from_dict(
        {
            "model": "meta-llama/Llama-3.1-8B",
            "method": "qlora",
            "stage": "sft",
            "lora": {},
            "quantization": {},
            "data": {"train": "data/train.jsonl"},
        }
    )
    write_run_files(rd, plan, {})
    before = sorted(p.name for p in rd.iterdir())
    r = tunewise("launch", rd, "--smoke", "--max-steps", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    out = " ".join(r.stdout.split())
    assert "smoke run passed" in out and "bundled tokenizer" in out and "llama stand-in" in out
    s = json.loads((rd / "smoke" / "summary.json").read_text())
    assert s["status"] == "completed" and s["steps"] == 3 and s["method"] == "qlora"
    assert sorted(p.name for p in rd.iterdir()) == sorted([*before, "smoke"])
