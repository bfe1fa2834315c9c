"""Inputs that crashed or hung tunewise, or read what the user did not mean: each is now a message naming the
problem and the fix (exit 2), or is read correctly. One test per defect found by attacking the inputs."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from launchkit import make_run, tiny_base

from advisor.errors import UserError
from advisor.plan import TrainingPlan
from tunewise.cli import main

CLI = "tunewise"
ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo" / "train.jsonl"
BIG_INT = "1" * 5000  # Python refuses to convert more than 4,300 digits


def _main(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _refused(argv, *needles):
    rc, out, err = _main(argv)
    assert rc == 2, out + err
    assert "fix:" in err and "Traceback" not in out + err
    for n in needles:
        assert n in err, err
    return err


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("base") / "tiny-llama")


# ---- YAML the user writes: answers file and plan.yaml -------------------------------------------------


def test_duplicate_keys_in_the_answers_file_are_an_error(tmp_path):
    """Was: silently accepted, the last one winning."""
    f = tmp_path / "answers.yaml"
    f.write_text("task: chat\nexamples: 100\nmethod: lora\nmethod: full\n")
    _refused(["recommend", "--answers", str(f)], "'method' is given twice (lines 3 and 4)")
    f.write_text("gpus:\n  - {name: A, memory_gib: 24, memory_gib: 80}\n")
    _refused(["recommend", "--answers", str(f)], "'memory_gib' is given twice")


def test_plan_yaml_duplicate_keys_alias_bomb_and_huge_numbers(base, tmp_path):
    rd = make_run(tmp_path, base)
    text = (rd / "plan.yaml").read_text()
    plan = rd / "plan.yaml"
    plan.write_text(text + "learning_rate: 0.5\n")
    with pytest.raises(UserError, match="'learning_rate' is given twice"):
        TrainingPlan.load(plan)
    # Was: minutes and gigabytes before a MemoryError.
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    plan.write_text(bomb + text)
    t0 = time.time()
    with pytest.raises(UserError, match="YAML aliases"):
        TrainingPlan.load(plan)
    assert time.time() - t0 < 5
    plan.write_text(text.replace("max_steps: 4", f"max_steps: {BIG_INT}"))
    with pytest.raises(UserError, match="cannot be read"):
        TrainingPlan.load(plan)
    _refused(["launch", str(rd), "--cpu"], "cannot be read")


def test_a_huge_integer_in_the_answers_file(tmp_path):
    f = tmp_path / "answers.yaml"
    f.write_text(f"examples: {BIG_INT}\n")
    _refused(["recommend", "--answers", str(f)], "cannot be read")


def test_home_and_environment_variables_in_answers_paths(tmp_path, monkeypatch):
    """Was: `dataset: ~/file` was never found (looked up as a folder named `~`)."""
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "data" / "train.jsonl").write_bytes(DEMO.read_bytes())
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TW_DATA", str(home / "data"))
    from advisor.answers import load_answers

    for value in ("~/data/train.jsonl", "$TW_DATA/train.jsonl", "${TW_DATA}/train.jsonl"):
        f = tmp_path / "answers.yaml"
        f.write_text(f"task: chat\ndataset: {value}\n")
        assert load_answers(f).dataset == str(home / "data" / "train.jsonl")
    f.write_text("task: chat\ndataset: $TW_NOT_SET_ANYWHERE/train.jsonl\n")
    _refused(["recommend", "--answers", str(f)], "TW_NOT_SET_ANYWHERE", "is not set")


# ---- data files --------------------------------------------------------------------------------------


def test_a_huge_integer_in_a_dataset_row(tmp_path):
    """Was: a traceback (json raises ValueError past 4,300 digits); now the row is reported as unreadable."""
    rows = DEMO.read_text().splitlines()[:20]
    for name, text in (
        ("data.jsonl", "\n".join([*rows, f'{{"text": {BIG_INT}}}']) + "\n"),
        ("data.json", "[" + ",".join([*rows, f'{{"text": {BIG_INT}}}']) + "]"),
    ):
        f = tmp_path / name
        f.write_text(text)
        rc, out, err = _main(["inspect", str(f), "--format", "json"])
        assert rc in (0, 1) and "Traceback" not in out + err, err
        report = json.loads(out)
        assert any("unreadable JSON" in i["reason"] and "4300" in i["reason"] for i in report["invalid"])


def test_process_substitution_and_stdin_are_read_whole(tmp_path):
    """Was: `inspect <(cat train.jsonl)` dropped the first 64 KiB (289 of 400 rows counted, exit 0)."""
    rows = [
        json.dumps({"prompt": f"question {i} " + "x" * 200, "completion": f"answer {i}"}) for i in range(400)
    ]
    f = tmp_path / "train.jsonl"
    f.write_text("\n".join(rows) + "\n")
    assert f.stat().st_size > 65536
    for shell in (
        f"{sys.executable} -m {CLI} inspect <(cat {f}) --format json",
        f"cat {f} | {sys.executable} -m {CLI} inspect - --format json",
    ):
        r = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["rows"] == 400


def test_devices_and_named_pipes_are_refused(tmp_path):
    """Was: a `.csv` name pointing at /dev/zero grew memory without bound; a FIFO hung forever."""
    zero = tmp_path / "data.csv"
    zero.symlink_to("/dev/zero")
    _refused(["inspect", str(zero)], "is a device")
    fifo = tmp_path / "data.jsonl"
    os.mkfifo(fifo)
    t0 = time.time()
    _refused(["inspect", str(fifo)], "is a named pipe")
    assert time.time() - t0 < 5
    answers = tmp_path / "answers.yaml"
    answers.write_text(f"task: chat\ndataset: {zero}\n")
    _refused(["recommend", "--answers", str(answers)], "is a device")


def test_a_broken_dataset_dict_json(tmp_path):
    d = tmp_path / "saved"
    d.mkdir()
    for text in ("{not json", "[1, 2]", '{"splits": 5}', '{"splits": [' + BIG_INT + "]}"):
        (d / "dataset_dict.json").write_text(text)
        _refused(["inspect", str(d)], "dataset_dict.json")


def test_a_path_component_over_255_characters(tmp_path):
    long = "a" * 300
    for argv in (
        ["inspect", f"{long}.jsonl"],
        ["launch", str(tmp_path / long)],
        ["recommend", "--answers", f"{long}.yaml"],
        ["spectrum", "scan", long],
    ):
        _refused(argv, "too long")


# ---- model folders -----------------------------------------------------------------------------------


def test_a_huge_integer_in_config_json(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(f'{{"model_type": "llama", "hidden_size": {BIG_INT}}}')
    _refused(["estimate", "--model", str(model), "--method", "lora"], "config.json")


@pytest.mark.parametrize(
    "template",
    [
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}{{ messages[0]['content'] }}",
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    ],
    ids=["nested-loops", "growing-string"],
)
def test_a_runaway_chat_template_is_refused(base, tmp_path, monkeypatch, template):
    """Was: `inspect` and `recommend` hung for hours on a model folder's chat template."""
    from advisor.data import template_guard

    monkeypatch.setattr(template_guard, "PROBE_SECONDS", 3.0)
    model = tmp_path / "model"
    model.mkdir()
    for f in base.iterdir():
        if f.name != "chat_template.jinja":
            (model / f.name).symlink_to(f)
    (model / "tokenizer_config.json").unlink()
    cfg = json.loads((base / "tokenizer_config.json").read_text())
    cfg["chat_template"] = template
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(DEMO.read_text().splitlines()[:10]) + "\n")
    t0 = time.time()
    _refused(["inspect", str(data), "--tokenizer", str(model)], "chat template")
    assert time.time() - t0 < 60


def test_a_malformed_spectrum_cache_record_is_a_cache_miss(tmp_path):
    from advisor.spectrum import cache as spectrum_cache

    sig = [["model.safetensors", 10]]
    good = {
        "modules": {"model.layers.0.mlp.down_proj": {"type": "mlp.down_proj", "layer": 0, "score": 1.5}},
        "device": "cpu",
        "key": "k" * 40,
    }
    assert spectrum_cache.cache_store(tmp_path, sig, "k" * 40, good) is not None
    assert spectrum_cache.cache_load(tmp_path, sig, "k" * 40) is not None
    for bad in (
        {"modules": {"m": {"type": "t", "layer": "0", "score": 1.0}}},
        {"modules": {"m": {"type": "t", "layer": 0, "score": None}}},
        {"modules": {"m": [1, 2]}},
        {"device": 5},
        {"modules": {}},
    ):
        spectrum_cache.cache_store(tmp_path, sig, "k" * 40, {**good, **bad})
        assert spectrum_cache.cache_load(tmp_path, sig, "k" * 40) is None, bad
