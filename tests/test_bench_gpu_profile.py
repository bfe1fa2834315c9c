"""bench/gpu_profile.py rehearsed on CPU: it profiles an unchanged training script by its optimizer steps."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLAIN_LORA = {
    "arch": "tiny",
    "method": "lora",
    "rank": 16,
    "seq": 128,
    "bs": 4,
    "ckpt": True,
    "steps": 2,
    "fraction": 0.3,
}


def _profile(out: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "bench/gpu_profile.py",
            "--out",
            str(out),
            *flags,
            "--",
            "bench/calibration/measure_plain_stack.py",
            "--one",
            json.dumps(PLAIN_LORA),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_profiles_the_calibration_loop_by_its_optimizer_steps(tmp_path):
    # The loop makes 4 optimizer steps (2 warm-up + 2 timed): skip 1, warm the profiler up on 1, record 2.
    p = _profile(tmp_path, "--skip", "1")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "RESULT " in p.stdout  # the script itself ran to its end, unchanged
    res = json.loads((tmp_path / "profile.json").read_text())
    assert res["steps_profiled"] == 2 and res["wall_ms_per_step"] > 0
    cats = res["categories_ms_per_step"]
    assert cats["matmul"] > 0 and cats["dropout"] > 0  # the plain stack's LoRA dropout is 0.05
    # 4 x 128 tokens through a rank-16 adapter on a 64-wide layer: LoRA's skinny matmul, named with its shapes.
    assert any(o["op"] == "aten::mm" and "[512, 64], [64, 16]" in o["shapes"] for o in res["top_ops"])
    assert "by category" in (tmp_path / "profile.txt").read_text()


def test_too_few_optimizer_steps_is_a_clear_failure(tmp_path):
    p = _profile(tmp_path, "--skip", "3")  # needs 3 + 1 + 2 = 6 steps; the loop makes 4
    assert p.returncode == 1 and "optimizer steps" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "profile.json").exists()
