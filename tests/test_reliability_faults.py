"""Faults: a full disk or unwritable place leaves nothing half-written; a changed base model is refused on
resume; metrics.jsonl can be read while it grows."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from advisor.answers import Answers
from advisor.errors import UserError
from advisor.plan import LoraSpec, TrainingPlan
from launcher import fingerprint
from launcher.progress import MetricsFollower
from tunewise.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo" / "answers.yaml"


def _cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, err.getvalue()


def _full_disk_after(monkeypatch, n_ok: int) -> None:
    """os.fsync succeeds `n_ok` times, then the disk is full (every atomic writer fsyncs before renaming)."""
    calls = {"n": 0}
    real = os.fsync

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] > n_ok:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.fixture
def demo_answers(tmp_path) -> Path:
    data = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    data["dataset"] = str(DEMO.parent / data["dataset"])
    data["gpus"] = [{"name": "RTX 4090", "memory_gib": 24}]
    p = tmp_path / "answers.yaml"
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    return p


# Fails at 0: the data split; 3: launch.sh (plan.yaml already written); 6: report.json, the last file.
@pytest.mark.parametrize("n_ok", [0, 3, 6])
def test_recommend_out_on_a_full_disk_leaves_no_run_directory(tmp_path, monkeypatch, demo_answers, n_ok):
    earlier = tmp_path / "runs" / "keep"
    earlier.mkdir(parents=True)
    (earlier / "plan.yaml").write_text("mine\n")
    _full_disk_after(monkeypatch, n_ok)
    rc, err = _cli(
        [
            "recommend",
            "--answers",
            str(demo_answers),
            "--out",
            str(tmp_path / "runs" / "new"),
            "--format",
            "json",
        ]
    )
    assert rc == 2 and "No space left on device" in err and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "keep"
    ]  # nothing half-written, no temp files
    assert (earlier / "plan.yaml").read_text() == "mine\n"  # an existing run is never touched


def test_recommend_out_where_a_file_blocks_the_folder(tmp_path, demo_answers):
    (tmp_path / "blocker").write_text("x")
    rc, err = _cli(
        [
            "recommend",
            "--answers",
            str(demo_answers),
            "--out",
            str(tmp_path / "blocker" / "run"),
            "--format",
            "json",
        ]
    )
    assert rc == 2 and "cannot create" in err and "blocker" in err
    assert (tmp_path / "blocker").read_text() == "x"


def test_save_answers_on_a_full_disk_keeps_the_previous_file(tmp_path, monkeypatch):
    from tunewise.commands.wizard import save_answers

    target = tmp_path / "answers.yaml"
    target.write_text("task: chat\n")

    def full(fd):  # the answers reached the temporary file; the disk is full when they are flushed
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UserError, match="No space left"):
        save_answers(Answers(task="code"), str(target))
    monkeypatch.undo()
    assert target.read_text() == "task: chat\n" and [p.name for p in tmp_path.iterdir()] == ["answers.yaml"]
    with pytest.raises(UserError, match="is a directory"):
        save_answers(Answers(), str(tmp_path))
    with pytest.raises(UserError, match="does not exist"):
        save_answers(Answers(), str(tmp_path / "nope" / "a.yaml"))
    assert save_answers(Answers(task="code"), str(target)).read_text().endswith("task: code\n")


def test_spectrum_yaml_on_a_full_disk_keeps_the_previous_file(tmp_path, monkeypatch):
    from advisor.spectrum import write_unfrozen_yaml

    result = types.SimpleNamespace(
        model_dir="m",
        top_percent=30.0,
        total_params=10,
        trainable_params=3,
        unfrozen=["^model.layers.1.mlp.down_proj.weight$"],
        types={"model.layers.1.mlp.down_proj": "mlp.down_proj"},
        selected={"mlp.down_proj": [(1, 2.0)]},
        by_type={"mlp.down_proj": [(1, 2.0), (0, 1.0)]},
    )
    target = tmp_path / "spectrum_30.yaml"
    target.write_text("unfrozen_parameters: [old]\n")

    def full_at_flush(fd):  # the bytes went to the temporary file; the disk is full when they are flushed
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_at_flush)
    with pytest.raises(UserError, match="cannot write"):
        write_unfrozen_yaml(result, target)
    monkeypatch.undo()
    assert target.read_text() == "unfrozen_parameters: [old]\n" and [p.name for p in tmp_path.iterdir()] == [
        target.name
    ]
    write_unfrozen_yaml(result, target)
    assert yaml.safe_load(target.read_text())["unfrozen_parameters"] == result.unfrozen


def test_resume_refuses_a_changed_base_model(tmp_path):
    """test_resume.py covers plan and data changes with real training; the base model is checked the same way."""
    model = tmp_path / "base"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    plan = TrainingPlan(model=str(model), method="lora", stage="sft", lora=LoraSpec())
    fingerprint.save(tmp_path, plan)
    fingerprint.check(tmp_path, plan)  # unchanged: accepted
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 128}))
    with pytest.raises(UserError, match="the base model changed") as e:
        fingerprint.check(tmp_path, plan)
    assert "config:" in str(e.value)
    other = TrainingPlan(model="meta-llama/Llama-3.2-1B", method="lora", stage="sft", lora=LoraSpec())
    with pytest.raises(UserError, match="plan.yaml `model`"):
        fingerprint.check(tmp_path, other)
    (tmp_path / fingerprint.FILE).write_text("{not json")
    with pytest.raises(UserError, match="corrupt"):
        fingerprint.check(tmp_path, plan)


WRITER = r"""
import json, random, sys, time
path, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(0)
with open(path, "a", encoding="utf-8") as f:
    for i in range(n):
        line = json.dumps({"step": i, "loss": 1.0 / (i + 1), "note": "x" * rng.randrange(0, 300)}) + "\n"
        cut = rng.randrange(0, len(line))
        f.write(line[:cut]); f.flush()          # a reader may see half a line here
        time.sleep(rng.random() * 0.002)
        f.write(line[cut:]); f.flush()
"""


def test_metrics_jsonl_is_readable_while_it_grows(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": -1, "loss": 9.0}) + "\n")  # a previous launch's events are skipped
    follower = MetricsFollower(path)
    n = 400
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n)])
    rows, polls = [], 0
    while writer.poll() is None:
        rows += follower.poll()
        polls += 1
    rows += follower.poll()
    assert writer.returncode == 0
    assert [r["step"] for r in rows] == list(range(n)) and polls > 1
    assert len(path.read_text().splitlines()) == n + 1  # appended, never rewritten
