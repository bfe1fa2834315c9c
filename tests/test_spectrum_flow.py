"""Spectrum end to end: a local model -> `recommend --out` scans it -> the plan carries the chosen
layers (named in the report) and a memory estimate from the actual trainable count -> the smoke run
trains exactly those layers on a stand-in."""

import json
from pathlib import Path

import pytest
import yaml

from tunewise.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_model(tmp_path_factory) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("base") / "tiny-llama"
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=2048,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    LlamaForCausalLM(cfg).save_pretrained(path)
    AutoTokenizer.from_pretrained(ROOT / "examples/demo/tokenizer").save_pretrained(path)
    return path


def test_recommend_out_scans_and_the_smoke_run_trains_the_chosen_layers(tmp_path, local_model, capsys):
    answers = tmp_path / "answers.yaml"
    answers.write_text(
        yaml.safe_dump(
            {
                "task": "chat",
                "goals": ["tone-style"],
                "clear_task": True,
                "tried_prompting": True,
                "dataset": str(ROOT / "examples/demo/train.jsonl"),
                "model": str(local_model),
                "method": "spectrum",
                "gpus": [{"name": "NVIDIA A100-SXM4-80GB", "memory_gib": 80}],
            }
        )
    )
    out = tmp_path / "run"
    assert main(["recommend", "--answers", str(answers), "--out", str(out), "--no-detect"]) == 0
    plan = yaml.safe_load((out / "plan.yaml").read_text())
    patterns = plan["spectrum"]["unfrozen_parameters"]
    # 4 layers x 30% -> the top layer of each of the 7 projection types.
    assert len(patterns) == 7 and all(p.startswith("^model.layers.") for p in patterns)
    why = plan["reasons"]["spectrum.unfrozen_parameters"]
    assert "self_attn.q_proj: layers" in why and "mlp.down_proj: layers" in why
    assert "trainable weights" in plan["reasons"]["predicted_peak_gib"]
    assert "self_attn.q_proj: layers" in (out / "report.md").read_text()

    from launcher.launch import launch

    assert launch(out, smoke=True, max_steps=2) == 0
    summary = json.loads(next(out.glob("smoke*/summary.json")).read_text())
    assert summary["status"] == "completed" and summary["method"] == "spectrum"


def test_spectrum_on_a_hub_id_without_local_weights_is_a_clear_error(tmp_path, capsys):
    answers = tmp_path / "answers.yaml"
    answers.write_text(
        yaml.safe_dump(
            {
                "task": "chat",
                "goals": ["tone-style"],
                "clear_task": True,
                "tried_prompting": True,
                "examples": 5000,
                "model": "meta-llama/Llama-3.1-8B",
                "method": "spectrum",
                "gpus": [{"name": "NVIDIA H100", "memory_gib": 80}],
            }
        )
    )
    code = main(["recommend", "--answers", str(answers), "--out", str(tmp_path / "run"), "--no-detect"])
    err = capsys.readouterr().err
    assert code == 2 and "not a local directory" in err and "spectrum scan" in err
    assert not (tmp_path / "run").exists()
