"""Did it help, on a real model: SmolLM2-135M-Instruct learns the dates-in-words task with a short LoRA run on
CPU, and the end-of-job evaluation finds the tuned model above zero-shot and few-shot prompting by more than
the noise (paired bootstrap intervals that exclude zero)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import realmodel

from advisor.plan import DataSpec, EvalSpec, LoraSpec, TrainingPlan
from launcher.rundir import new_run_dir, write_run_files

pytestmark = pytest.mark.slow


def date_run(parent, base, *, steps: int, n_train: int = 200, n_val: int = 40):
    """A run directory on the date task: LoRA r=8, lr 1e-3, micro-batch 2, no packing (the issue's
    measured recipe: 25 CPU steps reach most of the held-out set)."""
    rd = new_run_dir(parent / "dates")
    rows = realmodel.date_task(n_train + n_val, seed=0, fmt="prompt-completion")
    realmodel.write_jsonl(rd / "data" / "train.jsonl", rows[:n_train])
    realmodel.write_jsonl(rd / "data" / "validation.jsonl", rows[n_train:])
    plan = TrainingPlan(
        model=str(base), method="lora", stage="sft",
        data=DataSpec(train="data/train.jsonl", validation="data/validation.jsonl", format="prompt-completion"),
        lora=LoraSpec(r=8, alpha=16, dropout=0.0), micro_batch_size=2, grad_accum=1, max_length=128,
        packing=False, gradient_checkpointing=False, max_steps=steps, eval_steps=steps, save_steps=steps,
        logging_steps=5, bf16=False, learning_rate=1e-3, warmup_ratio=0.0,
        evaluation=EvalSpec(task="extraction", max_examples=n_val, max_new_tokens=12, batch_size=20,
                            target_metric="exact_match", target=0.3))
    write_run_files(rd, plan, {"report.md": "# Recommendation\n"})
    return rd


def test_a_short_lora_run_beats_prompting_beyond_the_noise(tmp_path, smollm2_dir):
    rd = date_run(tmp_path, smollm2_dir, steps=30)
    r = subprocess.run([sys.executable, "-m", "tunewise", "launch", str(rd), "--cpu"], capture_output=True,
                       text=True, timeout=1200, env={**os.environ})
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads((rd / "eval.json").read_text())
    em = {k: m["metrics"]["exact_match"]["value"] for k, m in result["models"].items()}
    assert em["base_zero_shot"] <= 0.05, result["examples"]  # it cannot do the task zero-shot
    diffs = {(c["a"], c["b"]): c for c in result["comparisons"] if c["metric"] == "exact_match"}
    for baseline in ("base_zero_shot", "base_few_shot"):
        c = diffs[("tuned", baseline)]
        assert c["ci"][0] > 0, (baseline, c, em)  # above the baseline by more than the noise
    v = result["verdict"]
    assert v["outcome"] == "fine-tune-better" and v["target"]["tuned"]["meets"]
    assert "Verdict: fine-tuned beats" in r.stdout
    # system metrics for every model; the examples side by side
    for m in result["models"].values():
        assert m["system"]["tokens_per_s"] > 0 and m["system"]["latency_p95_s"] >= m["system"]["latency_p50_s"] > 0
    assert len(result["examples"]) == 5 and set(result["examples"][0]["outputs"]) == set(result["models"])
    summary = json.loads((rd / "summary.json").read_text())
    assert summary["evaluation"]["tuned"] == em["tuned"] and summary["evaluation"]["outcome"] == "fine-tune-better"
