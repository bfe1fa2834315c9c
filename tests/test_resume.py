"""Faults during training: SIGTERM saves and stops; kill -9 then launch resumes; a changed job is refused."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from launchkit import make_run, tiny_base


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("base") / "tiny-llama")


def _start(args, env):
    return subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env},
        start_new_session=True,
    )


def _wait_for(pred, proc, timeout=180):
    t0 = time.time()
    while not pred():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.2)


def _logged_steps(rd):
    path = rd / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(x)["step"] for x in path.read_text().splitlines() if '"loss"' in x]


def test_sigterm_saves_a_checkpoint_and_stops(base, tmp_path):
    rd = make_run(tmp_path, base, max_steps=50, save_steps=100)
    proc = _start(["-m", "tunewise", "launch", str(rd), "--cpu"], {"TUNEWISE_TEST_STEP_DELAY": "0.5"})
    _wait_for(lambda: len(_logged_steps(rd)) >= 2, proc)
    proc.send_signal(signal.SIGTERM)  # to the launcher; it passes one SIGTERM on to the job
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    s = json.loads((rd / "summary.json").read_text())
    assert s["status"] == "stopped" and 2 <= s["steps"] < 50
    assert (rd / "output" / "sft" / f"checkpoint-{s['steps']}" / "optimizer.pt").exists()
    assert "resume" in out


def test_kill_9_then_launch_resumes_and_a_changed_plan_is_refused(base, tmp_path):
    rd = make_run(tmp_path, base, max_steps=6, save_steps=2, eval_steps=2)
    proc = _start(["-m", "launcher.train", str(rd)], {"TUNEWISE_TEST_STEP_DELAY": "0.5"})
    ckpt = rd / "output" / "sft" / "checkpoint-2"
    _wait_for(lambda: (ckpt / "trainer_state.json").exists() and (ckpt / "rng_state.pth").exists(), proc)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = max(_logged_steps(rd))
    assert killed_at < 6

    # A changed plan is refused, naming the change; the checkpoints stay.
    plan_text = (rd / "plan.yaml").read_text()
    (rd / "plan.yaml").write_text(plan_text.replace("learning_rate: 0.001", "learning_rate: 0.002"))
    r = subprocess.run(
        [sys.executable, "-m", "tunewise", "launch", str(rd), "--cpu"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "learning_rate" in r.stderr and "Traceback" not in r.stderr
    (rd / "plan.yaml").write_text(plan_text)

    r = subprocess.run(
        [sys.executable, "-m", "tunewise", "launch", str(rd), "--cpu"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads((rd / "summary.json").read_text())
    assert s["status"] == "completed" and s["steps"] == 6
    resumed = s["resumed_from"]
    assert resumed and "/output/sft/checkpoint-" in resumed
    # The resumed run logged from the checkpoint's next step on (optimizer/scheduler state restored).
    steps = _logged_steps(rd)
    resumed_step = int(resumed.rsplit("-", 1)[1])
    assert 2 <= resumed_step <= killed_at
    assert steps[-(6 - resumed_step) :] == list(range(resumed_step + 1, 7))

    # Changed data is refused too.
    with open(rd / "data" / "train.jsonl", "a") as f:
        f.write(
            '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
        )
    r = subprocess.run(
        [sys.executable, "-m", "tunewise", "launch", str(rd), "--cpu"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "train data file changed" in r.stderr
