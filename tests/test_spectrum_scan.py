"""`scan` on real checkpoints written by transformers (tiny Llama, sharded; tiny Phi-3, fused projections)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from advisor.errors import UserError
from advisor.spectrum import (
    count_unfrozen_params,
    load_unfrozen_yaml,
    scan,
    select_unfrozen,
    write_unfrozen_yaml,
)
from tests.test_spectrum_score import reference_score


def _save(model, d: Path, shard: str | None = None) -> Path:
    model.save_pretrained(d, max_shard_size=shard) if shard else model.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """A 6-layer Llama with bias-free projections, saved as several shards plus an index."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=300,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg)
    d = _save(model, tmp_path_factory.mktemp("llama"), shard="150KB")
    assert (d / "model.safetensors.index.json").exists()
    return model, d


@pytest.fixture(scope="module")
def phi3(tmp_path_factory):
    from transformers import Phi3Config, Phi3ForCausalLM

    torch.manual_seed(1)
    cfg = Phi3Config(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=300,
        pad_token_id=0,
    )
    model = Phi3ForCausalLM(cfg)
    return model, _save(model, tmp_path_factory.mktemp("phi3"))


def test_llama_scores_match_numpy_and_selection_follows_formula(llama):
    model, d = llama
    r = scan(d, top_percent=34, device="cpu", use_cache=False)
    params = dict(model.named_parameters())
    assert r.n_layers == 6 and len(r.scores) == 6 * 7
    for module, score in r.scores.items():
        w = params[f"{module}.weight"].detach().double().numpy()
        assert score == pytest.approx(reference_score(w), rel=1e-3), module
    k = int(6 * 34 / 100)  # 2 per type
    for t, ranked in r.by_type.items():
        by_score = sorted(((s, i) for i, s in ranked), reverse=True)
        assert [i for i, _ in r.selected[t]] == [i for _, i in by_score[:k]], t
    assert len(r.unfrozen) == 7 * k


def test_patterns_unfreeze_exactly_the_selected_parameters_of_the_loaded_model(llama):
    model, d = llama
    r = scan(d, top_percent=50, device="cpu")
    names = [n for n, _ in model.named_parameters()]
    chosen = select_unfrozen(names, r.unfrozen)
    expected = {f"model.layers.{i}.{t}.weight" for t, v in r.selected.items() for i, _ in v}
    assert set(chosen) == expected
    numel = sum(p.numel() for n, p in model.named_parameters() if n in expected)
    assert count_unfrozen_params(d, r.unfrozen) == numel == r.trainable_params


def test_phi3_fused_projections_are_their_own_types(phi3):
    model, d = phi3
    r = scan(d, top_percent=50, device="cpu", use_cache=False)
    assert set(r.by_type) == {"self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj"}
    assert all(len(v) == 2 for v in r.selected.values())
    names = [n for n, _ in model.named_parameters()]
    assert len(select_unfrozen(names, r.unfrozen)) == 8


def test_embeddings_are_opt_in(llama):
    model, d = llama
    plain = scan(d, top_percent=50, device="cpu")
    with_emb = scan(d, top_percent=50, device="cpu", include_embeddings=True)
    assert not any("embed_tokens" in p or "lm_head" in p for p in plain.unfrozen)
    assert with_emb.unfrozen[:2] == ["^model.embed_tokens.weight$", "^lm_head.weight$"]
    extra = model.model.embed_tokens.weight.numel() + model.lm_head.weight.numel()
    assert with_emb.trainable_params == plain.trainable_params + extra


def test_cache_hit_is_keyed_by_content_not_mtime(tmp_path, llama):
    model, _ = llama
    d = _save(model, tmp_path / "m")
    first = scan(d, device="cpu")
    again = scan(d, top_percent=50, device="cpu")  # another P reuses the same scores
    assert not first.cache_hit and again.cache_hit and again.scores == first.scores
    # Flip one weight byte in place; keep size and mtime: a stat-based key would miss this.
    f = d / "model.safetensors"
    st = f.stat()
    header = int.from_bytes(f.read_bytes()[:8], "little")
    meta = json.loads(f.read_bytes()[8 : 8 + header])["model.layers.2.mlp.down_proj.weight"]
    with open(f, "r+b") as fh:
        fh.seek(8 + header + meta["data_offsets"][0] + 10)
        b = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([b[0] ^ 0x40]))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = scan(d, device="cpu")
    assert not changed.cache_hit
    assert changed.scores["model.layers.2.mlp.down_proj"] != first.scores["model.layers.2.mlp.down_proj"]
    assert changed.scores["model.layers.1.mlp.down_proj"] == first.scores["model.layers.1.mlp.down_proj"]


def test_cache_falls_back_to_user_cache_when_model_dir_unusable(tmp_path, monkeypatch, llama):
    model, _ = llama
    d = _save(model, tmp_path / "m")
    (d / ".tunewise-spectrum").write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert not scan(d, device="cpu").cache_hit
    assert list((tmp_path / "xdg" / "tunewise" / "spectrum").glob("*.json"))
    assert scan(d, device="cpu").cache_hit


def test_reads_one_tensor_at_a_time(tmp_path, monkeypatch, llama):
    """The reader never runs more than `ahead` tensors ahead of the scorer, and never loads a file whole."""
    import safetensors

    import advisor.spectrum.score as score_mod

    model, d = llama
    real_open = safetensors.safe_open
    fetched, consumed, worst = [0], [0], [0]

    class Counting:
        def __init__(self, *a, **k):
            self.inner = real_open(*a, **k)

        def __enter__(self):
            self.inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

        def get_tensor(self, name):
            fetched[0] += 1
            worst[0] = max(worst[0], fetched[0] - consumed[0])
            return self.inner.get_tensor(name)

    real_score = score_mod.matrix_score

    def counting_score(w, device="cpu"):
        consumed[0] += 1
        return real_score(w, device)

    monkeypatch.setattr(safetensors, "safe_open", Counting)
    monkeypatch.setattr(score_mod, "matrix_score", counting_score)
    r = scan(d, device="cpu", use_cache=False)
    assert fetched[0] == consumed[0] == len(r.scores)
    assert worst[0] <= 4  # the one being scored, 2 queued, 1 in the reader's hand


def test_yaml_round_trip_and_axolotl_shape(tmp_path, llama):
    import yaml

    _, d = llama
    r = scan(d, top_percent=30, device="cpu")
    p = write_unfrozen_yaml(r, tmp_path / "out" / "spectrum.yaml")
    data = yaml.safe_load(p.read_text())
    assert list(data) == ["unfrozen_parameters"]
    assert data["unfrozen_parameters"] == r.unfrozen == load_unfrozen_yaml(p)
    assert all(x.startswith("^model.layers.") and x.endswith(".weight$") for x in r.unfrozen)


def test_select_unfrozen_semantics():
    names = [
        "model.layers.1.mlp.down_proj.weight",
        "model.layers.10.mlp.down_proj.weight",
        "model.layers.1.mlp.up_proj.weight",
        "modelXlayers.1.mlp.down_proj.weight",
    ]
    # dots are literal, matching is anchored at the start (Axolotl), so layer 1 never catches layer 10
    assert select_unfrozen(names, ["^model.layers.1.mlp.down_proj.weight$"]) == names[:1]
    assert select_unfrozen(names, ["model.layers.1.mlp"]) == [names[0], names[2]]
    assert select_unfrozen(names, ["layers.1.mlp"], strict=False) == []
    with pytest.raises(UserError, match="match no parameter"):
        select_unfrozen(names, ["^model.layers.7.mlp.down_proj.weight$"])
    with pytest.raises(UserError, match="empty"):
        select_unfrozen(names, [])
    with pytest.raises(UserError, match="range"):
        select_unfrozen(names, ["^model.embed_tokens.weight$[:32000]"])
    with pytest.raises(UserError, match="regex"):
        select_unfrozen(names, ["model.layers.(1"])
    assert count_unfrozen_params({n: (4, 8) for n in names}, ["^model.layers.1.mlp"]) == 64


def test_top_percent_that_selects_nothing_is_refused(llama):
    _, d = llama
    with pytest.raises(UserError, match="rounds down to no layer"):
        scan(d, top_percent=10, device="cpu")  # int(6 * 0.1) = 0
    for bad in (0, -5, 101):
        with pytest.raises(UserError, match="out of range"):
            scan(d, top_percent=bad, device="cpu")


def _write(path: Path, tensors: dict) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(path))


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "file",
        "empty",
        "bad-index",
        "missing-shard",
        "truncated",
        "two-files",
        "quantized",
        "nan",
        "no-layers",
        "bad-device",
    ],
)
def test_bad_inputs_are_user_errors(tmp_path, case):
    d = tmp_path / "m"
    d.mkdir()
    w = {"model.layers.0.mlp.down_proj.weight": torch.randn(8, 16)}
    kwargs = {"device": "cpu", "use_cache": False}
    if case == "missing":
        d = tmp_path / "nope"
    elif case == "file":
        d = tmp_path / "f.txt"
        d.write_text("x")
    elif case == "bad-index":
        (d / "model.safetensors.index.json").write_text("{not json")
    elif case == "missing-shard":
        (d / "model.safetensors.index.json").write_text(
            json.dumps({"weight_map": {"a": "model-1.safetensors"}})
        )
    elif case == "truncated":
        (d / "model.safetensors").write_bytes(b"\xff" * 20)
    elif case == "two-files":
        _write(d / "a.safetensors", w)
        _write(d / "b.safetensors", w)
    elif case == "quantized":
        _write(d / "model.safetensors", {**w, "model.layers.0.mlp.down_proj.weight_scale_inv": torch.ones(1)})
    elif case == "nan":
        _write(
            d / "model.safetensors",
            {"model.layers.0.mlp.down_proj.weight": torch.full((8, 16), float("nan"))},
        )
    elif case == "no-layers":
        _write(d / "model.safetensors", {"lm_head.weight": torch.randn(8, 16)})
    elif case == "bad-device":
        _write(d / "model.safetensors", w)
        kwargs["device"] = "tpu"
    with pytest.raises(UserError) as e:
        scan(d, **kwargs)
    assert e.value.hint


@pytest.mark.gpu
def test_cuda_scores_equal_cpu_scores(llama):
    _, d = llama
    cpu = scan(d, device="cpu", use_cache=False)
    gpu = scan(d, device="cuda", use_cache=False)
    assert gpu.device == "cuda"
    for k, v in cpu.scores.items():
        assert gpu.scores[k] == pytest.approx(v, rel=1e-9), k


def test_cuda_request_without_gpu_is_a_user_error(llama, monkeypatch):
    _, d = llama
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA GPU"):
        scan(d, device="cuda", use_cache=False)
    assert scan(d, device="auto", use_cache=False).device == "cpu"


def test_score_independent_of_storage_dtype_but_not_of_scale(tmp_path):
    """bf16 and float32 copies of the same weights score alike; the published score scales as 1/|W|."""
    w = (torch.randn(24, 40) * 0.02).to(torch.bfloat16)
    for dt, sub in ((torch.bfloat16, "a"), (torch.float32, "b")):
        (tmp_path / sub).mkdir()
        _write(
            tmp_path / sub / "model.safetensors",
            {f"model.layers.{i}.mlp.up_proj.weight": (w * (i + 1)).to(dt) for i in range(2)},
        )
    a = scan(tmp_path / "a", top_percent=50, device="cpu", use_cache=False)
    b = scan(tmp_path / "b", top_percent=50, device="cpu", use_cache=False)
    assert a.scores == pytest.approx(b.scores, rel=1e-12)
    # (signal / noise) is scale-free, the division by S[0] is not: doubling W halves the score.
    assert np.isclose(
        a.scores["model.layers.0.mlp.up_proj"], 2 * a.scores["model.layers.1.mlp.up_proj"], rtol=1e-9
    )


def test_threaded_scoring_and_overlapped_hashing_match_sequential(tmp_path, monkeypatch, llama):
    """The CUDA code path (several workers, hashing during the first scan), run on the CPU."""
    import advisor.spectrum.scanner as spectrum

    model, _ = llama
    d = _save(model, tmp_path / "m")
    base = scan(d, device="cpu", use_cache=False)
    monkeypatch.setattr(spectrum, "_overlap_hashing", lambda dev: True)
    first = scan(d, device="cpu", workers=3)
    assert not first.cache_hit and first.scores == base.scores and list(first.scores) == list(base.scores)
    assert first.key and first.hash_seconds > 0
    assert scan(d, device="cpu", workers=3).cache_hit


def test_plan_carries_the_selection_and_validates(llama, tmp_path):
    from advisor.plan import TrainingPlan
    from advisor.spectrum import scan_summary, to_plan_spec

    _, d = llama
    r = scan(d, top_percent=50, device="cpu")
    spec = to_plan_spec(r, tmp_path / "s.yaml")
    plan = TrainingPlan(model=str(d), method="spectrum", stage="sft", spectrum=spec)
    plan.validate()
    again = TrainingPlan.from_dict(plan.to_dict())
    assert again.spectrum.unfrozen_parameters == r.unfrozen
    summary = scan_summary(r)
    for info in summary.values():
        assert info["cutoff"] >= info["best_rejected"]
        assert len(info["selected"]) == 3
