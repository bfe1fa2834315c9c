"""Faults a training job really meets: a save cut short, a full disk, a killed launcher, signals in a burst,
files planted in the run directory (code, symlinks), a base model swapped under the same config.
Each test trains the tiny stand-in for real on CPU."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from launchkit import make_run, tiny_base

from advisor.errors import UserError
from advisor.plan import TrainingPlan
from launcher import checkpoints, fingerprint, jobfiles
from launcher.launch import job_env

CLI = "tunewise"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("base") / "tiny-llama")


def _run(args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def _start(args, env=None):
    return subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


def _wait_for(pred, proc, timeout=180):
    t0 = time.time()
    while not pred():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.1)


def _steps(rd):
    p = rd / "metrics.jsonl"
    return [json.loads(x)["step"] for x in p.read_text().splitlines() if '"loss"' in x] if p.exists() else []


@pytest.fixture(scope="module")
def trained(base, tmp_path_factory):
    """A finished 4-step run with checkpoint-2 and checkpoint-4 (each test damages a copy)."""
    rd = make_run(tmp_path_factory.mktemp("trained"), base, max_steps=4, save_steps=2, eval_steps=2)
    r = _run(["-m", "launcher.train", str(rd)])
    assert r.returncode == 0, r.stdout + r.stderr
    return rd


def _unfinished_copy(trained, tmp_path) -> Path:
    """The trained run as if it had stopped after its last save: no final adapter yet."""
    rd = tmp_path / "run"
    shutil.copytree(trained, rd, symlinks=True)
    shutil.rmtree(rd / "adapter")
    (rd / ".launch.lock").unlink(missing_ok=True)
    summary = json.loads((rd / "summary.json").read_text())
    (rd / "summary.json").write_text(json.dumps({**summary, "status": "stopped"}))
    return rd


def _truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


DAMAGE = {
    "no-trainer-state": lambda c: (c / "trainer_state.json").unlink(),
    "truncated-optimizer": lambda c: _truncate(c / "optimizer.pt"),
    "truncated-adapter": lambda c: _truncate(c / "adapter_model.safetensors"),
    "no-rng-state": lambda c: [p.unlink() for p in c.glob("rng_state*.pth")],
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_half_written_checkpoint_is_set_aside(trained, tmp_path, damage):
    """Each way a save is cut short: the newest complete checkpoint is picked, the broken one is named
    and kept under another name (was: resume always took the highest number and failed for good)."""
    rd = _unfinished_copy(trained, tmp_path)
    out = rd / "output" / "sft"
    assert (
        checkpoints.problem(out / "checkpoint-4") is None
        and (out / "checkpoint-4" / checkpoints.RECORD).is_file()
    )
    DAMAGE[damage](out / "checkpoint-4")
    ckpt, notes = checkpoints.newest_complete(out)
    assert ckpt == out / "checkpoint-2"
    assert len(notes) == 1 and notes[0].startswith("skipped checkpoint-4: ")
    assert (out / "incomplete-checkpoint-4").is_dir() and not (out / "checkpoint-4").exists()


def test_resume_skips_a_truncated_checkpoint_end_to_end(trained, tmp_path):
    rd = _unfinished_copy(trained, tmp_path)
    _truncate(rd / "output" / "sft" / "checkpoint-4" / "optimizer.pt")
    r = _run(["-m", CLI, "launch", str(rd), "--cpu"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "skipped checkpoint-4: optimizer.pt is truncated" in (rd / "train.log").read_text()
    s = json.loads((rd / "summary.json").read_text())
    assert s["status"] == "completed" and s["resumed_from"].endswith("checkpoint-2") and s["steps"] == 4
    assert (rd / "output" / "sft" / "incomplete-checkpoint-4" / "optimizer.pt").exists()  # kept, not deleted


def test_a_full_disk_during_training_ends_failed_without_a_traceback(base, tmp_path):
    """Was: the job's error handler raised a second traceback (writing summary.json on the full disk) and
    summary.json stayed at `running`."""
    rd = make_run(tmp_path, base, max_steps=6, save_steps=2)
    r = _run(["-m", CLI, "launch", str(rd), "--cpu"], {"TUNEWISE_TEST_DISK_FULL_AT_STEP": "3"})
    log = (rd / "train.log").read_text()
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in log and "During handling" not in log, log
    assert "the disk is full" in log and "fix: free space" in log
    s = json.loads((rd / "summary.json").read_text())
    assert s["status"] == "failed"
    # The checkpoint saved before the disk filled is still a valid resume point.
    assert checkpoints.newest_complete(rd / "output" / "sft", set_aside=False)[0].name == "checkpoint-2"


def test_python_files_in_the_run_directory_never_run(base, tmp_path):
    """A `yaml.py` (or `torch.py`) in the run directory, the job's working directory, was imported first."""
    parent = tmp_path / "runs [/x] [bold]"  # rich markup in the path was a MarkupError traceback
    parent.mkdir(parents=True)
    rd = make_run(parent, base, max_steps=1, save_steps=1)
    marker = tmp_path / "ran"
    for name in ("yaml.py", "torch.py", "transformers.py", "sitecustomize.py", "usercustomize.py"):
        (rd / name).write_text(f"open({str(marker)!r}, 'a').write({name!r} + '\\n')\nraise SystemExit(3)\n")
    (rd / "launcher").mkdir()
    (rd / "launcher" / "__init__.py").write_text(f"open({str(marker)!r}, 'a').write('launcher\\n')\n")
    r = _run(["-m", CLI, "launch", str(rd), "--cpu"], {"PYTHONPATH": os.pathsep.join([".", ""])})
    assert r.returncode == 0, r.stdout + r.stderr
    assert not marker.exists(), marker.read_text()
    assert "Traceback" not in r.stdout + r.stderr and "[/x] [bold]" in r.stdout


def test_every_launch_path_keeps_the_run_directory_off_sys_path(base, tmp_path):
    rd = make_run(tmp_path, base)
    plan = TrainingPlan.load(rd / "plan.yaml")
    plain = jobfiles.train_command(rd, plan)
    torchrun = jobfiles.train_command(rd, plan, cpu_processes=2)
    plan.n_gpus = 2
    accelerate = jobfiles.train_command(rd, plan)
    for cmd in (plain, torchrun, accelerate):
        assert cmd[1] == "-P", cmd
    env = job_env(False)
    assert env["PYTHONSAFEPATH"] == "1"  # the processes torchrun/accelerate start
    assert all(os.path.isabs(p) for p in env["PYTHONPATH"].split(os.pathsep))
    for n in (1, 2):
        plan.n_gpus = n
        text = jobfiles.slurm_sbatch(plan)
        assert "export PYTHONSAFEPATH=1" in text
        assert ("python -P -m launcher.train" in text) == (n == 1)


def test_slurm_job_gets_no_token_and_no_run_dir_on_sys_path(base, tmp_path):
    """slurm.sbatch run with stub srun/scontrol: the job's environment has no token (it is offline) and
    PYTHONSAFEPATH=1; was: HF_TOKEN passed into the job, whose output reached slurm-*.out unredacted."""
    rd = make_run(tmp_path, base)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(
        f'#!/bin/sh\nenv > {tmp_path / "job.env"}\necho "$@" > {tmp_path / "job.args"}\n'
    )
    (bin_dir / "scontrol").write_text("#!/bin/sh\necho node1\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_SUBMIT_DIR": str(rd),
        "SLURM_JOB_NODELIST": "node1",
        "HF_TOKEN": "hf_plantedsecret123",
        "WANDB_API_KEY": "wandbsecret123",
    }
    r = subprocess.run(
        ["bash", str(rd / "slurm.sbatch")], env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    job_env_text = (tmp_path / "job.env").read_text()
    assert "plantedsecret" not in job_env_text and "wandbsecret" not in job_env_text
    assert "PYTHONSAFEPATH=1" in job_env_text
    assert "-P -m launcher.train" in (tmp_path / "job.args").read_text()


def test_the_job_holds_the_run_lock_after_its_launcher_is_killed(base, tmp_path):
    """Was: the lock ended with the launcher; after a kill -9 of the launcher its job kept training and a
    second launch was not refused (both wrote checkpoint-2)."""
    from launcher import jobcontrol

    rd = make_run(tmp_path, base, max_steps=40, save_steps=100)
    launcher = _start(["-m", CLI, "launch", str(rd), "--cpu"], {"TUNEWISE_TEST_STEP_DELAY": "0.5"})
    try:
        _wait_for(lambda: len(_steps(rd)) >= 1, launcher)
        job_pids = [p for p in jobcontrol.group_members(_job_pgid(launcher.pid)) if p != launcher.pid]
        assert job_pids
        launcher.kill()  # kill -9: no chance to pass anything on
        launcher.wait()
        with pytest.raises(UserError, match="already being trained"):
            jobcontrol.acquire(rd)  # what a second `tunewise launch` does first
        t0 = time.time()
        while any(jobcontrol._alive(p) for p in job_pids):  # it saves a checkpoint, then ends
            assert time.time() - t0 < 120
            time.sleep(0.2)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    s = json.loads((rd / "summary.json").read_text())
    assert s["status"] == "stopped"
    assert checkpoints.newest_complete(rd / "output" / "sft", set_aside=False)[0] is not None
    _acquire_when_free(rd)


def _holders(rd):
    """Processes holding the run's lock file open (what keeps it locked), for the failure message."""
    out = []
    for pid in os.listdir("/proc"):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == str(rd / ".launch.lock"):
                    out.append((pid, Path(f"/proc/{pid}/cmdline").read_bytes()[:200]))
        except OSError:
            continue
    return out


def test_workers_of_a_multi_process_job_stop_when_the_launcher_is_killed(base, tmp_path):
    """Two processes (torchrun, each worker in a session of its own): after kill -9 of the launcher, every
    worker saves and ends, and the run stays locked until the last one has. Was: the workers outlived
    the launcher and nothing held the lock."""
    from launcher import jobcontrol

    rd = make_run(tmp_path, base, n_gpus=2, max_steps=40, save_steps=100)
    launcher = _start(["-m", CLI, "launch", str(rd), "--cpu"], {"TUNEWISE_TEST_STEP_DELAY": "0.5"})
    try:
        _wait_for(lambda: len(_steps(rd)) >= 1, launcher, timeout=240)
        members = jobcontrol.job_members(launcher.pid)
        assert len(members) >= 3, members  # torchrun and its two workers
        launcher.kill()
        launcher.wait()
        with pytest.raises(UserError, match="already being trained"):
            jobcontrol.acquire(rd)
        t0 = time.time()
        while jobcontrol.job_members(launcher.pid):
            assert time.time() - t0 < 150, jobcontrol.job_members(launcher.pid)
            time.sleep(0.5)
    finally:
        for pid in jobcontrol.job_members(launcher.pid):
            os.kill(pid, signal.SIGKILL)
    assert json.loads((rd / "summary.json").read_text())["status"] == "stopped"
    assert checkpoints.newest_complete(rd / "output" / "sft", set_aside=False)[0] is not None
    _acquire_when_free(rd)


def _acquire_when_free(rd):
    """The run's lock is free once every process of the job has ended (an exiting one may take a moment)."""
    from launcher import jobcontrol

    t0 = time.time()
    while True:
        try:
            os.close(jobcontrol.acquire(rd))
            return
        except UserError:
            assert time.time() - t0 < 30, _holders(rd)
            time.sleep(0.2)


def _job_pgid(launcher_pid: int) -> int:
    """The job's process group: the launcher's child started its own session."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == launcher_pid:
                return int(fields[2])
    raise AssertionError("the launcher has no child")


def test_a_live_job_refuses_a_second_launch(base, tmp_path):
    rd = make_run(tmp_path, base, max_steps=40, save_steps=100)
    job = _start(["-m", "launcher.train", str(rd)], {"TUNEWISE_TEST_STEP_DELAY": "0.3"})
    try:
        _wait_for(lambda: len(_steps(rd)) >= 1, job)
        r = _run(["-m", CLI, "launch", str(rd), "--cpu"])
        assert r.returncode == 2 and "already being trained" in r.stderr and "Traceback" not in r.stderr, (
            r.stderr
        )
        os.killpg(job.pid, signal.SIGTERM)
        out, _ = job.communicate(timeout=120)
        assert job.returncode == 130, out
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)


def test_two_quick_sigterms_still_save(base, tmp_path):
    """Was: the launcher turned a second signal into SIGKILL, so two quick SIGTERMs lost the checkpoint."""
    rd = make_run(tmp_path, base, max_steps=50, save_steps=100)
    proc = _start(["-m", CLI, "launch", str(rd), "--cpu"], {"TUNEWISE_TEST_STEP_DELAY": "0.5"})
    _wait_for(lambda: len(_steps(rd)) >= 1, proc)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    s = json.loads((rd / "summary.json").read_text())
    assert s["status"] == "stopped"
    assert (rd / "output" / "sft" / f"checkpoint-{s['steps']}" / "optimizer.pt").exists()


def test_ctrl_c_in_the_jobs_first_seconds_is_a_stop(base, tmp_path):
    """Was: a Ctrl-C while the job was still importing torch was reported as `training failed (exit code -15)`."""
    rd = make_run(tmp_path, base, max_steps=4)
    proc = _start(["-m", CLI, "launch", str(rd), "--cpu"])
    _wait_for(lambda: (rd / "train.log").exists(), proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "stopped" in out and "failed" not in out
    assert json.loads((rd / "summary.json").read_text())["status"] == "stopped"


@pytest.mark.parametrize("name", [".launch.lock", "train.log", "metrics.jsonl", "summary.json", "output"])
def test_symlinks_planted_in_the_run_directory_are_never_written_through(base, tmp_path, name):
    """Was: .launch.lock was truncated and overwritten with a PID, train.log and metrics.jsonl appended to
    whatever they pointed at."""
    rd = make_run(tmp_path, base, max_steps=1)
    outside = tmp_path / "outside"
    if name == "output":
        outside.mkdir()
    else:
        outside.write_text("precious\n")
    (rd / name).symlink_to(outside)
    r = _run(["-m", CLI, "launch", str(rd), "--cpu"])
    assert r.returncode == 2 and "is a symlink" in r.stderr and "Traceback" not in r.stderr, (
        r.stdout + r.stderr
    )
    assert "fix:" in r.stderr
    if name == "output":
        assert list(outside.iterdir()) == []
    else:
        assert outside.read_text() == "precious\n"


def test_resume_notices_swapped_weights_tokenizer_and_chat_template(base, tmp_path):
    """Was: the fingerprint hashed config.json only; other weights under the same config resumed silently."""
    import torch
    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(base, model)
    plan = TrainingPlan(model=str(model), method="lora", stage="sft")
    fingerprint.save(tmp_path, plan)
    fingerprint.check(tmp_path, plan)
    weights = model / "model.safetensors"
    original = weights.read_bytes()
    tensors = load_file(str(weights))
    torch.manual_seed(1)
    save_file({k: torch.randn_like(v) for k, v in tensors.items()}, str(weights), metadata={"format": "pt"})
    assert weights.stat().st_size == len(original)
    with pytest.raises(UserError, match="weights changed"):
        fingerprint.check(tmp_path, plan)
    weights.write_bytes(original)
    fingerprint.check(tmp_path, plan)

    cfg_path = model / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = "{{ messages[0]['content'] }}"
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="chat template changed") as e:
        fingerprint.check(tmp_path, plan)
    assert "tokenizer files changed" not in str(e.value)
    cfg_path.unlink()
    with pytest.raises(UserError, match="tokenizer files changed"):
        fingerprint.check(tmp_path, plan)


def test_summary_and_fingerprint_holding_a_json_list(base, tmp_path):
    from launcher.summary import read_summary

    rd = make_run(tmp_path, base)
    (rd / "summary.json").write_text("[1, 2]")
    assert read_summary(rd) == {}
    (rd / "fingerprint.json").write_text("[]")
    with pytest.raises(UserError, match="corrupt"):
        fingerprint.check(rd, TrainingPlan.load(rd / "plan.yaml"))
    (rd / "fingerprint.json").write_text('{"plan": [1], "data": {}}')
    with pytest.raises(UserError, match="corrupt"):
        fingerprint.check(rd, TrainingPlan.load(rd / "plan.yaml"))


def test_export_merge_stays_offline_without_allow_network(trained, tmp_path):
    """Was: `export --merge` contacted the hub (sending HF_TOKEN) for a base model not on disk, even
    without --allow-network. A local listener stands in for the hub and counts connections."""
    import socket
    import threading

    rd = tmp_path / "run"
    shutil.copytree(trained, rd, symlinks=True)
    plan = TrainingPlan.load(rd / "plan.yaml")
    plan.model = "someone/not-on-this-machine"
    (rd / "plan.yaml").write_text(jobfiles.plan_yaml(plan))
    (rd / "summary.json").write_text(json.dumps({"status": "completed", "adapter_dir": str(rd / "adapter")}))
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    hits = []

    def accept():
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            hits.append(conn.recv(4096))
            conn.close()

    done = threading.Event()
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))
    }
    env.update(
        HF_ENDPOINT=f"http://127.0.0.1:{server.getsockname()[1]}",
        HF_TOKEN="hf_plantedtoken12345",
        HF_HOME=str(tmp_path / "hf-home"),
    )
    try:
        r = subprocess.run(
            [sys.executable, "-m", CLI, "export", str(rd), "--merge"],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
    finally:
        done.set()
        t.join(timeout=5)
        server.close()
    assert r.returncode == 2 and "not available locally" in r.stderr and "--allow-network" in r.stderr, (
        r.stderr
    )
    assert hits == []
