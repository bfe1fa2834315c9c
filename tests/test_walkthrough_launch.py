"""Launcher cases found by walking through tunewise: the command printed to resume a stopped CPU or
smoke run, and resuming a run made before a plan field existed."""

from __future__ import annotations

import io
import json
import os

from launchkit import make_run, tiny_base
from rich.console import Console

from advisor.plan import TrainingPlan
from launcher import fingerprint, launch
from launcher.summary import write_summary


def _stopped_job(monkeypatch):
    """The job stops as after Ctrl-C: summary says stopped, exit 130 (the real job is in test_resume)."""

    def fake_run_once(run_dir, plan, **kw):
        write_summary(run_dir, status="stopped", steps=3)
        return launch.EXIT_STOPPED

    monkeypatch.setattr(launch, "_run_once", fake_run_once)


def test_stopped_cpu_and_smoke_runs_print_a_resume_command_that_runs_on_cpu(tmp_path, monkeypatch):
    base = tiny_base(tmp_path / "base")
    rd = make_run(tmp_path, base)
    _stopped_job(monkeypatch)
    out = io.StringIO()
    assert launch.launch(rd, cpu=True, console=Console(file=out, width=300)) == launch.EXIT_STOPPED
    assert f"run `tunewise launch {rd} --cpu` to resume" in out.getvalue()  # was without --cpu: needs a GPU

    out = io.StringIO()
    assert launch.launch(rd, smoke=True, console=Console(file=out, width=300)) == launch.EXIT_STOPPED
    assert f"run `tunewise launch {rd / 'smoke'} --cpu` to resume" in out.getvalue()


def test_a_plan_field_added_after_the_checkpoint_at_its_default_does_not_block_resume(tmp_path):
    plan = TrainingPlan(model="meta-llama/Llama-3.2-1B", method="lora", stage="sft")
    fingerprint.save(tmp_path, plan)
    stored = json.loads((tmp_path / fingerprint.FILE).read_text())
    del stored["plan"]["liger"]  # as written by a tunewise that had no such field
    (tmp_path / fingerprint.FILE).write_text(json.dumps(stored))
    fingerprint.check(tmp_path, plan)  # the default (off) is what the old job did: accepted
    plan.liger = True
    try:
        fingerprint.check(tmp_path, plan)
    except Exception as e:  # noqa: BLE001 - the type is checked below
        assert "plan.yaml `liger`: None -> True" in e.message
    else:
        raise AssertionError("a changed new field must still refuse the resume")


def test_launching_a_prompting_recommendation_says_there_is_no_job(tmp_path, capsys):
    # `recommend --out` for a prompting answer writes only the report; launch said "not a run directory,
    # create one with recommend --out", which is what the user had just done.
    import yaml

    from tunewise.cli import main

    answers = tmp_path / "a.yaml"
    answers.write_text(yaml.safe_dump({"task": "chat", "examples": 40}), encoding="utf-8")
    assert (
        main(
            [
                "recommend",
                "--answers",
                str(answers),
                "--out",
                str(tmp_path / "run"),
                "--no-detect",
                "--format",
                "json",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["launch", str(tmp_path / "run"), "--smoke"]) == 2
    err = capsys.readouterr().err
    assert "recommendation of prompting, not fine-tuning" in err and "report.md" in err


def test_a_second_launch_of_the_same_run_directory_is_refused(tmp_path, monkeypatch):
    # Two `tunewise launch RUN_DIR` at once both trained into the same checkpoints and metrics.jsonl.
    import pytest

    from advisor.errors import UserError

    rd = make_run(tmp_path, tiny_base(tmp_path / "base"))
    _stopped_job(monkeypatch)
    from launcher import jobcontrol

    lock = jobcontrol.acquire(rd)  # a launch in progress (or its job) holds the run directory's lock
    try:
        with pytest.raises(UserError, match="already being trained by another `tunewise launch`"):
            launch.launch(rd, cpu=True, console=Console(file=io.StringIO()))
    finally:
        os.close(lock)
    # released when that launch ends (any exit, kill -9 included: the lock is the process's)
    assert launch.launch(rd, cpu=True, console=Console(file=io.StringIO())) == launch.EXIT_STOPPED


def test_a_base_model_not_on_disk_is_named_with_the_fix_and_no_traceback(tmp_path):
    # Offline, a hub id that was never downloaded: the job's tokenizer load failed with a traceback that
    # the launcher then printed as "the training job failed" (with its markup shown literally). Now:
    # exit 2, the job's own message and fix, and nothing from an earlier launch's log.
    import subprocess
    import sys

    from launchkit import ROOT

    rd = make_run(tmp_path, tiny_base(tmp_path / "base"), model="nobody/no-such-model")
    (rd / "train.log").write_text("Traceback (most recent call last):\n  an earlier launch's crash\n")
    p = subprocess.run(
        [sys.executable, "-m", "tunewise", "launch", str(rd), "--cpu"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    out = p.stdout + p.stderr
    assert p.returncode == 2, out
    assert (
        "'nobody/no-such-model' is not available locally" in out and "hf download nobody/no-such-model" in out
    )
    assert "Traceback" not in out and "[red]" not in out
