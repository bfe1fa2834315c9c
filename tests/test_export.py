"""`tunewise export --merge`: a merged model that loads and matches base+adapter; an inference snippet."""

import subprocess
import sys

import pytest
import torch
from launchkit import make_run, tiny_base

from launcher import train


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("base") / "tiny-llama")


def test_merge_matches_base_plus_adapter(base, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    rd = make_run(tmp_path, base, max_steps=2)
    assert train.main([str(rd)]) == 0
    r = subprocess.run(
        [sys.executable, "-m", "tunewise", "export", str(rd), "--merge"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    merged = AutoModelForCausalLM.from_pretrained(str(rd / "merged"), dtype=torch.float32)
    ref = (
        PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.bfloat16), str(rd / "adapter")
        )
        .merge_and_unload()
        .float()
    )
    ids = torch.tensor([[1, 5, 9, 42, 7]])
    assert torch.allclose(merged(ids).logits, ref(ids).logits, atol=1e-3)
    snippet = (rd / "inference.py").read_text()
    compile(snippet, "inference.py", "exec")
    assert str(rd / "merged") in snippet and "apply_chat_template" in snippet
    assert (rd / "merged" / "chat_template.jinja").exists()  # same template as training
    r2 = subprocess.run(
        [sys.executable, "-m", "tunewise", "export", str(rd), "--merge"], capture_output=True, text=True
    )
    assert r2.returncode == 0 and (rd / "merged-2").is_dir()  # an earlier export is never overwritten


def test_export_before_training_is_a_clear_error(base, tmp_path):
    rd = make_run(tmp_path, base)
    r = subprocess.run(
        [sys.executable, "-m", "tunewise", "export", str(rd), "--merge"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "tunewise launch" in r.stderr and "Traceback" not in r.stderr


def test_relative_out_is_written_into_inference_py_as_an_absolute_path(base, tmp_path, monkeypatch):
    # Walkthrough: `export RUN --merge --out rel/dir` wrote MODEL = 'rel/dir' into RUN/inference.py,
    # which then only ran from the folder export was started in.
    rd = make_run(tmp_path, base, max_steps=1)
    assert train.main([str(rd)]) == 0
    monkeypatch.chdir(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "tunewise", "export", str(rd), "--merge", "--out", "exports/m"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert f"MODEL = {str(tmp_path / 'exports' / 'm')!r}" in (rd / "inference.py").read_text()
    assert (tmp_path / "exports" / "m" / "config.json").is_file()
