"""The memory estimator: accuracy on the committed GPU measurements, the parts that can be checked
exactly, and the properties the planner relies on (monotone, fit search never un-fits)."""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advisor.errors import UserError
from advisor.memory import MemoryConfig, estimate, fit_search
from advisor.memory.parts import NF4_BYTES_PER_PARAM, trainable_params
from advisor.models import count_params, resolve_model

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import memory_accuracy  # noqa: E402

L8B = resolve_model("llama-3.1-8b")
POINTS = [
    json.loads(ln)
    for ln in (ROOT / "bench/calibration/h200-plain-stack-2026-11-28.jsonl").read_text().splitlines()
]


@pytest.mark.parametrize("stack", ["tunewise", "plain"])
def test_accuracy_goal_on_every_committed_measurement(stack):
    res = [r for r in memory_accuracy.compare(memory_accuracy.load_rows()) if r["stack"] == stack]
    assert len(res) >= 3
    peak = [abs(r["err_peak"]) for r in res]
    dev = [abs(r["err_dev"]) for r in res if r["err_dev"] is not None]
    assert statistics.median(peak) <= 0.07 and max(peak) <= 0.15
    assert max(dev, default=0.0) <= 0.20


def _gpu_train_cases() -> list[dict]:
    files = sorted((ROOT / "bench/results").glob("gpu-train-*.json"))
    return [c for f in files for c in json.loads(f.read_text())["cases"] if c.get("tunewise_peak_gib")]


@pytest.mark.parametrize("name", ["lora-8b", "spectrum-8b", "qlora-8b"])
def test_tunewise_stack_predicts_the_launched_job(name):
    # Measured on an H200 by bench/gpu_train.py: the job `python -m launcher.train` ran, with the plan's
    # settings (Liger on, LoRA dropout 0.1, Spectrum on 10 of 32 layers); numbers read from the result file.
    case = next(c for c in _gpu_train_cases() if c["name"] == name)
    st = case["settings"]
    cfg = MemoryConfig(
        st["method"],
        rank=st["rank"],
        seq_len=st["seq"],
        batch_size=st["bs"],
        liger=True,
        lora_dropout=0.1,
        spectrum_trainable_params=case["baseline"].get("params_trainable"),
        # measured before precision was a decision: the job trained Spectrum in pure bf16
        precision="bf16-pure" if st["method"] in ("spectrum", "full") else "bf16-mixed",
    )
    assert (
        cfg.stack == "tunewise"
    )  # the default: what bench/gpu_train.py's `tunewise estimate --liger` predicts
    predicted = estimate(resolve_model(memory_accuracy.ARCH[st["arch"]]), cfg).peak_allocated_gib
    assert predicted == pytest.approx(case["tunewise_peak_gib"], rel=0.07)


def test_the_two_stacks_differ_where_the_job_differs():
    q_plain = estimate(L8B, MemoryConfig("qlora", stack="plain"))
    q_tw = estimate(L8B, MemoryConfig("qlora"))
    # No kbit preparation: bf16 embeddings/lm_head; bf16 adapters; no fp32 logits.
    assert q_tw.breakdown["weights"] < q_plain.breakdown["weights"] - 1.5
    assert q_tw.breakdown["lora_adapters"] == pytest.approx(q_plain.breakdown["lora_adapters"] / 2, rel=0.01)
    assert q_tw.breakdown["optimizer_states"] == pytest.approx(
        q_plain.breakdown["optimizer_states"] / 2, rel=0.01
    )
    # TRL's fused head: the loss is never the peak for LoRA, with or without Liger.
    assert estimate(L8B, MemoryConfig("lora")).phase != "loss"
    assert estimate(L8B, MemoryConfig("lora", stack="plain")).phase == "loss"
    # Spectrum and full train bf16 weights in both stacks: same resident parts.
    for method in ("spectrum", "full"):
        a, b = estimate(L8B, MemoryConfig(method)), estimate(L8B, MemoryConfig(method, stack="plain"))
        assert a.breakdown["optimizer_states"] == b.breakdown["optimizer_states"]


def test_weights_match_the_measured_load():
    # weights_gib is what the GPU held right after loading (before QLoRA's fp32 upcast).
    c = count_params(L8B)
    for p in POINTS:
        if p["method"] == "qlora":
            predicted = c["linear"] * NF4_BYTES_PER_PARAM + 2 * (c["total"] - c["linear"])
        else:
            predicted = 2 * c["total"]
        assert predicted / 2**30 == pytest.approx(p["weights_gib"], rel=0.005)
        # The tunewise stack keeps the weights as loaded (no kbit preparation upcasts them).
        tw = estimate(L8B, MemoryConfig(p["method"])).breakdown["weights"]
        assert tw == pytest.approx(p["weights_gib"], rel=0.005)


def test_lora_trainable_count_matches_measurement_and_peft():
    assert trainable_params(L8B, MemoryConfig("lora")) == POINTS[0]["params_trainable"]


@pytest.mark.parametrize(
    "name", ["microsoft/Phi-3-mini-4k-instruct", "Qwen/Qwen2.5-0.5B", "google/gemma-2-2b"]
)
def test_lora_trainable_count_matches_peft_on_the_real_architecture(name):
    import torch
    from peft import LoraConfig, get_peft_model
    from test_models import config_json
    from transformers import AutoConfig, AutoModelForCausalLM

    f = resolve_model(name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config_json(f)))
    model = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable_params(f, MemoryConfig("lora", rank=8)) == n


def test_breakdown_adds_up_and_names_the_dominant_part():
    for method in ["lora", "qlora", "spectrum", "full"]:
        e = estimate(L8B, MemoryConfig(method))
        assert sum(e.breakdown.values()) == pytest.approx(e.peak_allocated_gib, abs=0.01)
        assert e.dominant == max(e.breakdown, key=e.breakdown.get)
        assert e.device_gib == pytest.approx(e.peak_allocated_gib + sum(e.overhead.values()), abs=0.01)


@pytest.mark.parametrize("stack", ["tunewise", "plain"])
def test_method_ordering_for_8b(stack):
    peaks = {
        m: estimate(L8B, MemoryConfig(m, stack=stack)).peak_allocated_gib
        for m in ["qlora", "lora", "spectrum", "full"]
    }
    assert peaks["qlora"] < peaks["lora"] < peaks["spectrum"] < peaks["full"]


@pytest.mark.parametrize(
    "stack, why", [("tunewise", "RMSNorm and SwiGLU"), ("plain", "fused linear cross-entropy")]
)
def test_liger_and_checkpointing_advice_state_the_saving(stack, why):
    e = estimate(L8B, MemoryConfig("lora", grad_ckpt=False, stack=stack))
    liger = estimate(L8B, MemoryConfig("lora", grad_ckpt=False, liger=True, stack=stack)).peak_allocated_gib
    assert any(
        a.startswith(f"--liger saves {e.peak_allocated_gib - liger:.1f} GiB") and why in a for a in e.advice
    )
    assert any("gradient checkpointing" in a for a in e.advice)


def test_gpu_advice_says_what_fits():
    e = estimate(L8B, MemoryConfig("qlora", batch_size=2), gpu_gib=24)
    assert any(a.startswith("batch 2 fits a 24 GiB GPU with") for a in e.advice)
    e = estimate(L8B, MemoryConfig("lora", batch_size=16), gpu_gib=24)
    assert any("does not fit 24 GiB at batch 16; batch" in a for a in e.advice)


def test_sharding_divides_weights_and_states_not_activations():
    one = estimate(L8B, MemoryConfig("full", liger=True))
    eight = estimate(L8B, MemoryConfig("full", liger=True, n_gpus=8, distributed="fsdp"))
    # accelerate upcasts FSDP's trainable shards to fp32 under bf16 mixed precision: m and v are fp32, as the
    # single GPU's with fp32 master weights, then divided by 8 (bench/memory_trace_fsdp.py)
    assert eight.breakdown["optimizer_states"] == pytest.approx(
        one.breakdown["optimizer_states"] / 8, rel=0.01
    )
    assert eight.peak_allocated_gib < one.peak_allocated_gib / 3
    ddp = estimate(L8B, MemoryConfig("full", liger=True, n_gpus=8, distributed="ddp"))
    assert ddp.peak_allocated_gib > one.peak_allocated_gib  # replicated, plus gradient buckets


def test_paged_optimizer_states_leave_the_allocator_count():
    plain = estimate(L8B, MemoryConfig("full", optimizer="adamw_8bit"))
    paged = estimate(L8B, MemoryConfig("full", optimizer="paged_adamw_8bit"))
    assert "optimizer_states" not in paged.breakdown
    assert paged.overhead["paged_optimizer_states"] == pytest.approx(
        plain.breakdown["optimizer_states"], rel=0.01
    )


def test_gemma2_runs_eager_attention():
    g = resolve_model("gemma-2-2b")
    assert (
        estimate(g, MemoryConfig("lora")).peak_allocated_gib
        == estimate(g, MemoryConfig("lora", attn="eager")).peak_allocated_gib
    )


def test_packed_eager_attention_spans_the_row_it_runs_in():
    # Eager attention's scores span the row: the job keeps packed rows as rows (4 × 1,024 costs what the
    # plain stack's 4 × 1,024 costs, plus the block-diagonal mask's saved copies); TRL's flattened
    # padding-free layout makes batch 4 × 1,024 one 4,096-token row.
    g = resolve_model("gemma-2-2b")
    rows = estimate(g, MemoryConfig("lora", batch_size=4)).breakdown["activations"]
    flat = estimate(g, MemoryConfig("lora", batch_size=4, padding_free=True)).breakdown["activations"]
    one_row = estimate(g, MemoryConfig("lora", batch_size=1, seq_len=4096)).breakdown["activations"]
    assert flat == pytest.approx(one_row, rel=0.01)
    assert rows < flat - 0.5  # the flattened row: 4,096² scores a head where rows keep 4 × 1,024²
    plain = estimate(g, MemoryConfig("lora", batch_size=4, stack="plain")).breakdown["activations"]
    assert plain < rows


@pytest.mark.parametrize(
    "change",
    [
        dict(method="dora"),
        dict(rank=0),
        dict(batch_size=0),
        dict(seq_len=-1),
        dict(spectrum_fraction=1.5),
        dict(optimizer="sgd"),
        dict(attn="xformers"),
        dict(distributed="tp"),
        dict(stack="deepspeed"),
    ],
)
def test_bad_configs_are_user_errors(change):
    with pytest.raises(UserError):
        estimate(L8B, replace(MemoryConfig("lora"), **change))


def test_fit_search_keeps_the_effective_batch():
    r = fit_search(L8B, MemoryConfig("qlora", seq_len=2048), gpu_gib=24)
    assert r.fits and r.seq_len == 2048 and r.micro_batch * r.grad_accum == 16
    assert r.device_gib <= 24 * 0.9
    big = fit_search(L8B, MemoryConfig("lora", seq_len=1024), gpu_gib=141)
    assert big.micro_batch == 8 and big.grad_accum == 2


def test_fit_search_reports_what_does_not_fit():
    r = fit_search(resolve_model("llama-3.1-70b"), MemoryConfig("lora"), gpu_gib=24)
    assert not r.fits and "does not fit" in r.note


METHODS = st.sampled_from(["lora", "qlora", "spectrum", "full"])
STACKS = st.sampled_from(["tunewise", "plain"])
MODELS = st.sampled_from(
    ["llama-3.2-1b", "llama-3.1-8b", "qwen2.5-7b", "phi-3-mini", "gemma-2-9b", "mistral-7b"]
)


@settings(max_examples=60, deadline=None)
@given(MODELS, METHODS, st.integers(1, 16), st.integers(64, 8192), st.booleans(), st.booleans(), STACKS)
def test_more_tokens_never_need_less_memory(name, method, bs, seq, ckpt, liger, stack):
    m = resolve_model(name)
    cfg = MemoryConfig(method, batch_size=bs, seq_len=seq, grad_ckpt=ckpt, liger=liger, stack=stack)
    base = estimate(m, cfg).peak_allocated_gib
    assert estimate(m, replace(cfg, batch_size=bs + 1)).peak_allocated_gib >= base
    assert estimate(m, replace(cfg, seq_len=seq + 64)).peak_allocated_gib >= base


@settings(max_examples=40, deadline=None)
@given(MODELS, METHODS, st.floats(4, 200), st.floats(0.5, 100), st.sampled_from([512, 1024, 4096]), STACKS)
def test_more_gpu_memory_never_makes_a_fitting_config_stop_fitting(name, method, gib, extra, seq, stack):
    m, cfg = resolve_model(name), MemoryConfig(method, seq_len=seq, stack=stack)
    small, large = fit_search(m, cfg, gib), fit_search(m, cfg, gib + extra)
    assert large.fits or not small.fits
    if small.fits:
        assert (large.seq_len, large.micro_batch) >= (small.seq_len, small.micro_batch)


def test_advice_names_only_levers_that_are_off():
    # Full fine-tuning: the adapter route is the big lever. Checkpointing already on: not offered again.
    full = estimate(L8B, MemoryConfig("full", batch_size=1, liger=True), gpu_gib=8)
    assert any(a.startswith("--method lora") for a in full.advice)
    last = full.advice[-1]
    assert "does not fit 8 GiB" in last and "checkpointing" not in last and "--no-grad-ckpt" not in last
    assert "--liger" not in last and "--method qlora" in last
    off = estimate(L8B, MemoryConfig("lora", batch_size=1, grad_ckpt=False), gpu_gib=8)
    assert "drop --no-grad-ckpt" in off.advice[-1] and "add --liger" in off.advice[-1]
