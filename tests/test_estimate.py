"""`tunewise estimate` as a user runs it: a real subprocess, JSON and text, exit codes 0/1/2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tw(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tunewise", "estimate", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_json_matches_the_library_and_the_contract():
    from advisor.memory import MemoryConfig, estimate
    from advisor.models import resolve_model

    p = tw(
        "--model",
        "llama-3.1-8b",
        "--method",
        "qlora",
        "--seq-len",
        "2048",
        "--batch-size",
        "2",
        "--liger",
        "--format",
        "json",
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert {"peak_allocated_gib", "device_gib", "breakdown", "dominant", "advice", "model"} <= set(out)
    lib = estimate(
        resolve_model("llama-3.1-8b"), MemoryConfig("qlora", seq_len=2048, batch_size=2, liger=True)
    )
    assert out["peak_allocated_gib"] == lib.peak_allocated_gib and out["breakdown"] == lib.breakdown


def test_stack_option_selects_the_plain_loop():
    from advisor.memory import MemoryConfig, estimate
    from advisor.models import resolve_model

    args = ("--model", "llama-3.1-8b", "--method", "qlora", "--format", "json")
    tw_out, plain_out = json.loads(tw(*args).stdout), json.loads(tw(*args, "--stack", "plain").stdout)
    assert tw_out["config"]["stack"] == "tunewise" and plain_out["config"]["stack"] == "plain"
    lib = estimate(resolve_model("llama-3.1-8b"), MemoryConfig("qlora", stack="plain"))
    assert plain_out["peak_allocated_gib"] == lib.peak_allocated_gib
    assert tw_out["peak_allocated_gib"] < plain_out["peak_allocated_gib"]  # no fp32 upcasts, no fp32 logits


def test_batch_layout_options():
    # The job keeps packed rows as rows: a row of several documents masks (seq x seq per row), a row that is
    # one document (--full-rows) has no mask; --padding-free flattens the micro-batch: ((batch x seq)^2).
    args = (
        "--model",
        "llama-3.1-8b",
        "--method",
        "lora",
        "--seq-len",
        "4096",
        "--batch-size",
        "4",
        "--format",
        "json",
    )
    rows, full, flat = (
        json.loads(tw(*args, *extra).stdout) for extra in ((), ("--full-rows",), ("--padding-free",))
    )
    assert rows["config"]["padding_free"] is False and rows["config"]["packed_docs"] is True
    assert full["config"]["packed_docs"] is False and flat["config"]["padding_free"] is True
    assert full["peak_allocated_gib"] < rows["peak_allocated_gib"] < flat["peak_allocated_gib"]
    # the flattened row's mask is batch-fold larger: bool (16,384)^2 instead of 4 x 4,096^2, and the additive
    # bf16 copy the recomputed layer keeps likewise (3 bytes a pair in all)
    assert flat["peak_allocated_gib"] - rows["peak_allocated_gib"] == pytest.approx(
        3 * ((4 * 4096) ** 2 - 4 * 4096**2) / 2**30, abs=0.002
    )
    flash = json.loads(tw(*args, "--attn", "flash").stdout)
    assert flash["config"]["padding_free"] is True  # FlashAttention takes the flattened row (varlen)


def test_text_shows_the_table_dominant_part_and_advice():
    p = tw("--model", "meta-llama/Llama-3.1-8B", "--method", "lora")
    assert p.returncode == 0, p.stderr
    for s in [
        "model weights",
        "peak allocated",
        "GPU shows in use",
        "Dominant:",
        "--liger saves",
        "tunewise stack",
    ]:
        assert s in p.stdout, s
    p = tw("--model", "meta-llama/Llama-3.1-8B", "--method", "lora", "--stack", "plain")
    assert p.returncode == 0 and "logits + loss" in p.stdout and "plain stack" in p.stdout


def test_does_not_fit_exits_1_and_says_what_fits():
    p = tw(
        "--model",
        "llama-3.1-8b",
        "--method",
        "lora",
        "--batch-size",
        "16",
        "--gpu-memory",
        "24",
        "--format",
        "json",
    )
    assert p.returncode == 1
    out = json.loads(p.stdout)
    assert out["fits"] is False and any("fits with" in a for a in out["advice"])
    assert tw("--model", "llama-3.1-8b", "--method", "qlora", "--gpu-memory", "24").returncode == 0
    # The plain loop's fp32 logits make the default batch miss 24 GiB; the launched job fits it.
    assert (
        tw("--model", "llama-3.1-8b", "--method", "lora", "--gpu-memory", "24", "--stack", "plain").returncode
        == 1
    )
    assert tw("--model", "llama-3.1-8b", "--method", "lora", "--gpu-memory", "24").returncode == 0


def test_local_directory_model(tmp_path: Path):
    cfg = {
        "model_type": "llama",
        "vocab_size": 32000,
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": 22,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    p = tw("--model", str(tmp_path), "--method", "full", "--format", "json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["params_total"] == 1_100_048_384  # TinyLlama-1.1B's published total


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--model", "llama-3.1-8b", "--method", "dora"], "invalid choice"),
        (["--model", "llama-3.1-8b", "--method", "lora", "--rank", "0"], "--rank"),
        (["--model", "llama-3.1-8b", "--method", "lora", "--seq-len", "abc"], "--seq-len"),
        (
            ["--model", "llama-3.1-8b", "--method", "spectrum", "--spectrum-fraction", "2"],
            "--spectrum-fraction",
        ),
        (["--model", "llama-3.1-8b", "--method", "lora", "--gpu-memory", "-3"], "--gpu-memory"),
        (["--model", "llama-3.1-8b", "--method", "lora", "--stack", "deepspeed"], "--stack"),
        (["--model", "nobody/unknown-model", "--method", "lora"], "not in the offline catalog"),
        (["--model", "/nonexistent/dir", "--method", "lora"], "unknown model"),
        (["--method", "lora"], "--model"),
        # silly values a walkthrough found estimated as if possible (4.5 million GiB; a rank above the width)
        (
            ["--model", "llama-3.1-8b", "--method", "lora", "--seq-len", "10000000"],
            "context window (131,072 tokens",
        ),
        (["--model", "llama-3.1-8b", "--method", "qlora", "--rank", "100000"], "hidden size (4,096)"),
        # sharding on one GPU was silently estimated unsharded while the JSON config said fsdp
        (
            ["--model", "llama-3.1-8b", "--method", "full", "--distributed", "fsdp"],
            "--distributed fsdp shards",
        ),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(args, needle):
    p = tw(*args)
    assert p.returncode == 2
    assert needle in p.stderr and "fix:" in p.stderr and "Traceback" not in p.stderr


def test_malformed_config_exits_2(tmp_path: Path):
    (tmp_path / "config.json").write_text("{ nope")
    p = tw("--model", str(tmp_path), "--method", "lora")
    assert p.returncode == 2 and "not valid JSON" in p.stderr and "Traceback" not in p.stderr


def test_longest_context_and_a_wide_rank_are_still_estimated():
    p = tw(
        "--model",
        "llama-3.1-8b",
        "--method",
        "lora",
        "--seq-len",
        "131072",
        "--rank",
        "4096",
        "--batch-size",
        "1",
        "--format",
        "json",
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["config"]["seq_len"] == 131072


def test_text_header_names_the_multi_gpu_mode():
    p = tw("--model", "llama-3.1-8b", "--method", "full", "--gpus", "4", "--distributed", "zero3")
    assert p.returncode == 0, p.stderr
    assert "4 GPUs, zero3" in " ".join(p.stdout.split())


def test_stage_dpo_estimates_the_dpo_step():
    from advisor.memory import MemoryConfig, estimate
    from advisor.models import resolve_model

    args = (
        "--model",
        "llama-3.1-8b",
        "--method",
        "lora",
        "--seq-len",
        "1024",
        "--batch-size",
        "8",
        "--format",
        "json",
    )
    sft, dpo = json.loads(tw(*args).stdout), json.loads(tw(*args, "--stage", "dpo").stdout)
    assert sft["config"]["stage"] == "sft" and dpo["config"]["stage"] == "dpo"
    lib = estimate(
        resolve_model("llama-3.1-8b"), MemoryConfig("lora", seq_len=1024, batch_size=8, stage="dpo")
    )
    assert dpo["peak_allocated_gib"] == lib.peak_allocated_gib and dpo["breakdown"] == lib.breakdown
    assert dpo["peak_allocated_gib"] > sft["peak_allocated_gib"]  # chosen + rejected rows, and the reference
    # the SFT micro-batch that fits 24 GiB does not fit the DPO step: exit 1, with the batch that does
    assert tw(*args, "--gpu-memory", "24").returncode == 0
    p = tw(*args, "--stage", "dpo", "--gpu-memory", "24")
    assert p.returncode == 1 and any("fits with" in a for a in json.loads(p.stdout)["advice"])
    text = tw("--model", "llama-3.1-8b", "--method", "full", "--stage", "dpo")
    flat = " ".join(text.stdout.split())  # rich wraps at the terminal width
    assert text.returncode == 0 and "DPO · 4 pairs = 8 rows" in flat and "DPO reference copy (frozen)" in flat
    after = json.loads(
        tw(*args, "--stage", "dpo", "--after-sft").stdout
    )  # + the frozen fp32 "ref" adapter copy
    assert after["config"]["dpo_ref_adapter"] is True
    assert after["breakdown"]["reference_weights"] == pytest.approx(
        4 * after["trainable_params"] / 2**30, abs=0.001
    )
    assert tw(*args, "--after-sft").returncode == 2  # it describes the DPO stage only
    bad = tw("--model", "llama-3.1-8b", "--method", "lora", "--stage", "dpo", "--stack", "plain")
    assert bad.returncode == 2 and "no DPO step" in bad.stderr and "Traceback" not in bad.stderr
