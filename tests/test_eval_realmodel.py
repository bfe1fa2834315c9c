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

pytestmark = pytest.mark.slow


def test_a_short_lora_run_beats_prompting_beyond_the_noise(tmp_path, smollm2_dir):
    rd = realmodel.date_run(tmp_path, smollm2_dir, steps=30)
    r = subprocess.run(
        [sys.executable, "-m", "tunewise", "launch", str(rd), "--cpu"],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ},
    )
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
        assert (
            m["system"]["tokens_per_s"] > 0
            and m["system"]["latency_p95_s"] >= m["system"]["latency_p50_s"] > 0
        )
    assert len(result["examples"]) == 5 and set(result["examples"][0]["outputs"]) == set(result["models"])
    summary = json.loads((rd / "summary.json").read_text())
    assert (
        summary["evaluation"]["tuned"] == em["tuned"]
        and summary["evaluation"]["outcome"] == "fine-tune-better"
    )
