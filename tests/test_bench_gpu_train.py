"""The GPU benchmark script rehearsed on CPU with tiny shapes (issue 7: test it before device time)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_train_bench_runs_the_launched_job_on_tiny_shapes(tmp_path):
    out = tmp_path / "gpu-train.json"
    p = subprocess.run([sys.executable, "bench/gpu_train.py", "--tiny", "--only", "lora-8b", "--no-baseline",
                        "--out", str(out), "--work", str(tmp_path / "work")], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    result = json.loads(out.read_text())
    (case,) = result["cases"]
    assert case["name"] == "lora-8b" and case["tunewise"]["returncode"] == 0
    assert case["tunewise_tokens_per_s"] > 0  # measured from metrics.jsonl after the warm-up steps
    assert case["predicted_peak_gib"] > 0  # `tunewise estimate` for the same settings
    assert case["baseline"] == {"skipped": "--no-baseline"}
    assert case["tunewise"]["loss_last"] < case["tunewise"]["loss_first"]
