"""The launched job on a real GPU (skipped without one): bf16, fused AdamW, measured peak memory."""

import json
import subprocess
import sys

import pytest
from launchkit import ROOT, make_run, tiny_base


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["lora", "qlora", "spectrum"])
def test_job_trains_on_the_gpu_and_reports_measured_vs_predicted_memory(tmp_path, method):
    base = tiny_base(tmp_path / "base")
    run = make_run(tmp_path, base, method, bf16=True, predicted_peak_gib=0.1, predicted_device_gib=0.9)
    p = subprocess.run(
        [sys.executable, "-m", "launcher.train", str(run)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["peak_gib_measured"] > 0
    # The device figure holds the allocator's reserve and the CUDA context on top of what was allocated.
    assert summary["device_gib_measured"] >= summary["peak_reserved_gib"] >= summary["peak_gib_measured"]
    assert summary["device_gib_predicted"] == 0.9
    assert "peak GPU memory: measured" in p.stdout
