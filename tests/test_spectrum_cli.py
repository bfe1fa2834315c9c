"""`tunewise spectrum scan` end to end: output formats, files written, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tunewise.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(2)
    cfg = LlamaConfig(
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=200,
    )
    d = tmp_path_factory.mktemp("cli-model")
    LlamaForCausalLM(cfg).save_pretrained(d)
    return d


def test_json_output_and_yaml_file(model_dir, tmp_path, capsys):
    out = tmp_path / "sel" / "spectrum.yaml"
    assert (
        main(
            [
                "spectrum",
                "scan",
                str(model_dir),
                "--top-percent",
                "50",
                "--device",
                "cpu",
                "--format",
                "json",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert len(data["scores"]) == 4 * 7 and data["yaml"] == str(out)
    assert len(data["unfrozen"]) == 7 * 2
    assert yaml.safe_load(out.read_text())["unfrozen_parameters"] == data["unfrozen"]
    assert 0 < data["trainable_params"] < data["total_params"]


def test_text_output_has_a_table_per_type_and_default_out(model_dir, capsys):
    assert main(["spectrum", "scan", str(model_dir), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    for t in ("self_attn.q_proj", "self_attn.k_proj", "mlp.down_proj", "mlp.gate_proj"):
        assert f"{t}: 1 of 4 layers" in text
    assert (model_dir / "spectrum_30.yaml").exists()
    assert "best left frozen" in text


def test_default_out_falls_back_to_cwd_when_model_dir_is_read_only(model_dir, tmp_path, monkeypatch, capsys):
    import advisor.spectrum.scanner as spectrum

    monkeypatch.setattr(spectrum.os, "access", lambda p, mode: False)
    monkeypatch.chdir(tmp_path)
    assert main(["spectrum", "scan", str(model_dir), "--top-percent", "75", "--device", "cpu"]) == 0
    assert (tmp_path / "spectrum_75.yaml").exists()


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["spectrum", "scan", "/no/such/dir"], "does not exist"),
        (["spectrum", "scan", "{model}", "--top-percent", "0"], "out of range"),
        (["spectrum", "scan", "{model}", "--device", "tpu"], "not known"),
        (["spectrum", "scan", "{model}", "--out", "{model}"], "is a directory"),
        (["spectrum"], "needs a subcommand"),
    ],
)
def test_bad_input_exits_2_with_a_fix(model_dir, capsys, argv, needle):
    argv = [a.format(model=model_dir) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "fix:" in err


def test_subprocess_plain_progress_on_stderr_and_clean_stdout(model_dir, tmp_path):
    """A real process with stderr not a TTY: plain progress lines, JSON alone on stdout."""
    cache = tmp_path / "cache"
    env = {"PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(cache), "HF_HUB_OFFLINE": "1"}
    args = [
        sys.executable,
        "-m",
        "tunewise",
        "spectrum",
        "scan",
        str(model_dir),
        "--device",
        "cpu",
        "--format",
        "json",
        "--no-cache",
        "--out",
        str(tmp_path / "s.yaml"),
    ]
    p = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["cache_hit"] is False
    assert "scoring layer weights: 28/28" in p.stderr and "\x1b[" not in p.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "tunewise", "spectrum", "scan", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 2 and "no safetensors weights" in bad.stderr
