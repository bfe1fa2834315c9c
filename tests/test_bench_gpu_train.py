"""The GPU benchmark script rehearsed on CPU with tiny shapes (issue 7: test it before device time)."""

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_train_bench_runs_the_launched_job_on_tiny_shapes(tmp_path):
    out = tmp_path / "gpu-train.json"
    p = subprocess.run(
        [
            sys.executable,
            "bench/gpu_train.py",
            "--tiny",
            "--only",
            "lora-8b",
            "--no-baseline",
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
            "--profile",
            str(tmp_path / "prof"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    result = json.loads(out.read_text())
    (case,) = result["cases"]
    assert case["name"] == "lora-8b" and case["tunewise"]["returncode"] == 0
    assert case["tunewise_tokens_per_s"] > 0  # measured from metrics.jsonl after the warm-up steps
    assert case["predicted_peak_gib"] > 0  # `tunewise estimate` for the same settings
    assert case["baseline"] == {"skipped": "--no-baseline"}
    # Five steps of random tokens at lr 2e-4 from LoRA's zero init need not lower the loss (that check was
    # flaky); a broken step shows as a missing or non-finite loss. Training itself is checked in
    # tests/test_train_methods.py (every adapter tensor moves).
    assert all(math.isfinite(case["tunewise"][k]) for k in ("loss_first", "loss_last"))
    # r16 on every linear of 4 layers (hidden 64, k/v 32 wide, MLP 128): q, k, v, o, gate, up, down.
    linears = [(64, 64), (64, 32), (64, 32), (64, 64), (64, 128), (64, 128), (128, 64)]
    assert case["tunewise"]["trainable_params"] == 4 * 16 * sum(a + b for a, b in linears)
    # --profile: the same job ran under bench/gpu_profile.py, and the result says so.
    assert result["profiled"] is True
    prof = json.loads((tmp_path / "prof" / "lora-8b-tunewise" / "profile.json").read_text())
    assert prof["categories_ms_per_step"]["matmul"] > 0 and "launcher.train" in prof["command"]


def test_only_runs_the_named_cases_in_the_order_given_and_rejects_unknown_names():
    sys.path.insert(0, str(ROOT / "bench"))
    import gpu_train

    specs = gpu_train.cases(tiny=True)
    assert [s["name"] for s in gpu_train.selected(specs, "lora-1b,lora-8b")] == ["lora-1b", "lora-8b"]
    assert gpu_train.selected(specs, "") == specs
    p = subprocess.run(
        [sys.executable, "bench/gpu_train.py", "--tiny", "--only", "lora-8b,no-such", "--out", "/dev/null"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 1 and "unknown case(s) no-such" in p.stderr and "Traceback" not in p.stderr
