"""Model facts: catalog totals match the published numbers and transformers' own count; config.json
parsing for every supported family; every bad-input path is a UserError naming the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advisor.errors import UserError
from advisor.models import count_params, load_catalog, resolve_model

ENTRIES = sorted({f.name: f for f in load_catalog().values()}.values(), key=lambda f: f.name)
REQUIRED = [
    "meta-llama/Llama-3.1-8B",
    "meta-llama/Llama-3.1-70B",
    "meta-llama/Llama-3.2-1B",
    "meta-llama/Llama-3.2-3B",
    "meta-llama/Llama-2-7b-hf",
    "meta-llama/Llama-2-13b-hf",
    "mistralai/Mistral-7B-v0.3",
    "Qwen/Qwen2.5-0.5B",
    "Qwen/Qwen2.5-1.5B",
    "Qwen/Qwen2.5-3B",
    "Qwen/Qwen2.5-7B",
    "Qwen/Qwen2.5-14B",
    "Qwen/Qwen2.5-32B",
    "Qwen/Qwen2.5-72B",
    "microsoft/Phi-3-mini-4k-instruct",
    "google/gemma-2-2b",
    "google/gemma-2-9b",
    "google/gemma-2-27b",
]


def config_json(f) -> dict:
    """The config.json a hub checkpoint of this shape would carry (the keys transformers reads)."""
    d = {
        "model_type": f.family,
        "vocab_size": f.vocab_size,
        "hidden_size": f.hidden_size,
        "intermediate_size": f.intermediate_size,
        "num_hidden_layers": f.num_layers,
        "num_attention_heads": f.num_heads,
        "num_key_value_heads": f.num_kv_heads,
        "head_dim": f.head_dim,
        "tie_word_embeddings": f.tie_word_embeddings,
        "max_position_embeddings": f.max_position_embeddings or 4096,
    }
    if f.family == "phi3":
        d["pad_token_id"] = 0  # Phi3Config's default pad id must be inside the vocabulary
    if f.family == "gemma2":
        d["final_logit_softcapping"] = f.final_logit_softcapping
    return d


def test_catalog_covers_the_required_models():
    names = {f.name for f in ENTRIES}
    assert len(ENTRIES) >= 18
    assert set(REQUIRED) <= names


@pytest.mark.parametrize("facts", ENTRIES, ids=lambda f: f.name)
def test_params_match_published_total(facts):
    assert facts.published_params, "every catalog entry states its published total"
    assert facts.params_total == facts.published_params


@pytest.mark.parametrize("facts", ENTRIES, ids=lambda f: f.name)
def test_params_match_transformers_meta_build(facts):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(**config_json(facts))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    n = sum(p.numel() for p in model.parameters())  # tied embeddings are one Parameter, counted once
    assert n == facts.params_total == count_params(facts)["total"]


@pytest.mark.parametrize(
    "alias",
    [
        "llama-3.1-8b",
        "LLAMA-3.1-8B",
        "meta-llama/Llama-3.1-8B",
        "meta-llama/Meta-Llama-3.1-8B",
        "meta-llama/Llama-3.1-8B-Instruct",
    ],
)
def test_aliases_resolve_to_one_entry(alias):
    f = resolve_model(alias)
    assert f.name == "meta-llama/Llama-3.1-8B" and f.params_total == 8_030_261_248 and f.source == "catalog"


@pytest.mark.parametrize(
    "name",
    [
        "Qwen/Qwen2.5-7B",
        "microsoft/Phi-3-mini-4k-instruct",
        "google/gemma-2-9b",
        "google/gemma-7b",
        "mistralai/Mistral-7B-v0.3",
        "meta-llama/Llama-3.2-1B",
    ],
)
def test_local_config_json_gives_the_catalog_shapes(tmp_path: Path, name):
    cat = resolve_model(name)
    (tmp_path / "config.json").write_text(json.dumps(config_json(cat)))
    f = resolve_model(str(tmp_path))
    assert f.source == "local" and f.path == str(tmp_path)
    for key in [
        "family",
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_layers",
        "num_heads",
        "num_kv_heads",
        "head_dim",
        "tie_word_embeddings",
        "qkv_bias",
        "fused_qkv",
        "norms_per_layer",
        "params_total",
    ]:
        assert getattr(f, key) == getattr(cat, key), key


def test_family_defaults_when_keys_are_left_out(tmp_path: Path):
    # Qwen2: biases on q/k/v come from the family; head_dim and kv heads from the standard defaults.
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "model_type": "qwen2",
                "vocab_size": 1000,
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
            }
        )
    )
    f = resolve_model(str(tmp_path))
    assert f.qkv_bias and f.head_dim == 16 and f.num_kv_heads == 4 and not f.tie_word_embeddings


def test_unknown_family_best_effort_from_standard_keys(tmp_path: Path):
    cfg = {
        "model_type": "my-new-arch",
        "vocab_size": 500,
        "n_embd": 128,
        "n_inner": 512,
        "n_layer": 3,
        "n_head": 4,
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    f = resolve_model(str(tmp_path / "config.json"))
    assert (f.family, f.hidden_size, f.intermediate_size, f.num_layers, f.head_dim) == (
        "my-new-arch",
        128,
        512,
        3,
        32,
    )


def test_missing_keys_are_named(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "odd", "vocab_size": 10}))
    with pytest.raises(UserError) as e:
        resolve_model(str(tmp_path))
    for key in ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"]:
        assert key in e.value.message


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[1, 2]",
        '{"model_type": "llama", "vocab_size": -5, "hidden_size": 64, '
        '"intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}',
    ],
)
def test_malformed_config_is_a_user_error(tmp_path: Path, text):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(UserError):
        resolve_model(str(tmp_path))


def test_directory_without_config(tmp_path: Path):
    with pytest.raises(UserError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_hub_id_offline_says_how_to_point_at_a_directory():
    with pytest.raises(UserError) as e:
        resolve_model("someorg/some-model-7b")
    assert (
        "network is off" in e.value.message
        and "config.json" in e.value.hint
        and "--model DIR" in e.value.hint
    )


def test_unknown_plain_name_lists_the_catalog():
    with pytest.raises(UserError) as e:
        resolve_model("llama-9000")
    assert "meta-llama/Llama-3.1-8B" in e.value.hint


def test_hub_fetch_reads_only_config_json(tmp_path: Path, monkeypatch):
    import huggingface_hub

    asked = []
    cat = resolve_model("Qwen/Qwen2.5-0.5B")

    def fake_download(repo, filename, **kw):
        asked.append((repo, filename))
        p = tmp_path / "config.json"
        p.write_text(json.dumps(config_json(cat)))
        return str(p)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    f = resolve_model("someorg/qwen-clone", allow_network=True)
    assert asked == [("someorg/qwen-clone", "config.json")]
    assert f.source == "hub" and f.params_total == cat.params_total
