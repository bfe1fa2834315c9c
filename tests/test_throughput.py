"""The throughput model: GPU catalog, FLOPs of a step per method, the fit against the committed GPU points."""

import importlib.util
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from advisor.errors import UserError
from advisor.memory import MemoryConfig
from advisor.models import resolve_model
from advisor.throughput import (
    UnknownThroughput,
    catalog,
    default_price,
    find_gpu,
    require_gpu,
    step_work,
    tokens_per_s,
)
from advisor.throughput.model import fit

ROOT = Path(__file__).resolve().parents[1]
M8 = resolve_model("llama-3.1-8b")
BASE = MemoryConfig(method="lora", seq_len=1024, batch_size=4, packed_docs=False)


def _bench():
    spec = importlib.util.spec_from_file_location(
        "throughput_accuracy", ROOT / "bench" / "throughput_accuracy.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --- catalog -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H100 NVL", "H100 NVL"),
        ("NVIDIA H200", "H200"),
        ("h200", "H200"),
        ("NVIDIA A100-SXM4-80GB", "A100-80GB"),
        ("A100-80GB", "A100-80GB"),
        ("NVIDIA A100 80GB PCIe", "A100-80GB PCIe"),
        ("NVIDIA A100-SXM4-40GB", "A100-40GB"),
        ("NVIDIA A100 40GB", "A100-40GB"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
        ("RTX 4090", "RTX 4090"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA L40", "L40"),
        ("NVIDIA L4", "L4"),
        ("Tesla T4", "T4"),
        ("NVIDIA T4 (Colab)", "T4"),
        ("Tesla V100-SXM2-32GB", "V100"),
        ("NVIDIA RTX 6000 Ada Generation", "RTX 6000 Ada"),
        ("NVIDIA RTX A6000", "RTX A6000"),
        ("NVIDIA GeForce RTX 3090", "RTX 3090"),
    ],
)
def test_gpu_names_resolve_to_their_row(name, expected):
    assert find_gpu(name).name == expected


@pytest.mark.parametrize("name", ["NVIDIA A10G", "GPU", "AMD Instinct MI300X", "NVIDIA B200", ""])
def test_unknown_cards_are_unknown_not_guessed(name):
    assert find_gpu(name) is None
    with pytest.raises(UserError, match="unknown throughput.*not in the GPU catalog"):
        require_gpu(name)


def test_every_wizard_preset_is_a_catalog_card():
    from advisor.wizard import GPU_PRESETS

    names = [find_gpu(name) for name, _ in GPU_PRESETS]
    assert all(names), GPU_PRESETS
    assert len({n.name for n in names}) == len(GPU_PRESETS)  # no two presets stand for the same card


def test_every_catalog_row_is_sourced_and_plausible():
    rows = catalog()
    assert len(rows) >= 15
    assert len({r.name for r in rows}) == len(rows)
    for r in rows:
        assert "datasheet" in r.source.lower() or "whitepaper" in r.source.lower(), r.name
        assert 10 < r.fp16_tflops < 3000 and 100 < r.bandwidth_gbs < 10000 and r.memory_gb >= 16, r.name
        assert r.bf16_tflops is None or r.bf16_tflops == r.fp16_tflops
        assert find_gpu(r.name) is r  # every row reachable by its own name


def test_price_table_is_dated_and_only_for_rows_it_names():
    usd, source = default_price(find_gpu("H100"))
    assert usd > 0 and "2026" in source and "not a quote" in source
    assert default_price(find_gpu("RTX 4090")) is None


# --- FLOPs of a step -------------------------------------------------------------------------------------


def test_checkpointing_adds_one_decoder_forward():
    on, off = step_work(M8, BASE), step_work(M8, replace(BASE, grad_ckpt=False))
    assert on.flops - off.flops == pytest.approx(on.parts["recompute"])
    assert "recompute" not in off.parts
    # a frozen 8B model: forward 2N, backward to activations 2N, recompute 2N (N ~ 7.5e9 matmul weights)
    assert 44e9 < on.flops_per_token < 48e9


def test_weight_gradients_only_where_weights_train():
    lora = step_work(M8, BASE).parts["weight_gradients"]
    spectrum = step_work(M8, replace(BASE, method="spectrum", spectrum_fraction=0.3)).parts[
        "weight_gradients"
    ]
    full = step_work(M8, replace(BASE, method="full")).parts["weight_gradients"]
    assert lora < 0.05 * spectrum < spectrum < full
    assert spectrum / full == pytest.approx(0.3 * 0.93, rel=0.05)  # 30% of the linears, the head untrained


def test_qlora_pays_dequantisation_traffic_and_lora_does_not():
    q, lo = step_work(M8, replace(BASE, method="qlora")), step_work(M8, BASE)
    assert lo.dequant_bytes == 0 and q.dequant_bytes > 3 * 6.9e9 * 2.5  # 3 passes over 7e9 4-bit weights
    assert q.flops == pytest.approx(lo.flops)


def test_dpo_runs_both_rows_and_a_reference_forward():
    sft, dpo = step_work(M8, BASE), step_work(M8, replace(BASE, stage="dpo"))
    assert dpo.tokens == 2 * sft.tokens
    assert dpo.parts["reference_forward"] > 0 and "reference_forward" not in sft.parts


def test_attention_follows_the_row_layout():
    full_rows = step_work(M8, replace(BASE, seq_len=4096)).flops
    packed = step_work(M8, replace(BASE, seq_len=4096, packed_docs=True)).flops  # masked: no causal skip
    flat = step_work(
        M8, replace(BASE, seq_len=4096, packed_docs=True, padding_free=True)
    ).flops  # span 4 rows
    varlen = step_work(
        M8, replace(BASE, seq_len=4096, attn="flash", padding_free=True), mean_doc_tokens=256
    ).flops
    assert varlen < full_rows < packed < flat


# --- speed -----------------------------------------------------------------------------------------------


def test_tokens_per_s_scales_with_the_card_and_keeps_its_assumptions():
    measured = replace(BASE, liger=True)  # as the job's points ran
    h200 = tokens_per_s(M8, measured, "H200")
    a100 = tokens_per_s(M8, measured, "NVIDIA A100-SXM4-80GB")
    assert h200.assumptions == []
    assert a100.tokens_per_s / h200.tokens_per_s == pytest.approx(312 / 989.5, rel=0.02)
    assert any("fitted on an H200" in a for a in a100.assumptions)
    # an unmeasured card: the fast end widens towards what a published figure for a slower card showed; the
    # slow end stays the fit's
    assert 1.9 < a100.tokens_per_s_high / a100.tokens_per_s < fit()["other_gpus"]["faster_by_up_to"]
    assert a100.tokens_per_s_low == pytest.approx(0.85 * a100.tokens_per_s)
    rtx = tokens_per_s(M8, measured, "RTX 4090")
    assert rtx.tokens_per_s_high == pytest.approx(fit()["other_gpus"]["faster_by_up_to"] * rtx.tokens_per_s)
    h100 = tokens_per_s(M8, measured, "H100")  # the H200's peak: only the fit's spread
    assert h100.tokens_per_s_high == pytest.approx(1.15 * h100.tokens_per_s)
    assert h200.step_s == pytest.approx(4 * 1024 / h200.tokens_per_s)
    lo, hi = h200.tokens_per_s_low, h200.tokens_per_s_high
    assert lo < h200.tokens_per_s < hi and hi / lo == pytest.approx(1.15 / 0.85)
    d = h200.to_dict()
    assert {"tokens_per_s", "step_s", "tokens_per_s_range", "assumptions", "gpu"} <= set(d)


def test_the_job_without_liger_widens_the_slow_end():
    on, off = tokens_per_s(M8, replace(BASE, liger=True), "H200"), tokens_per_s(M8, BASE, "H200")
    assert off.tokens_per_s == pytest.approx(on.tokens_per_s)  # same FLOPs, same fitted efficiency
    assert off.tokens_per_s_low == pytest.approx(on.tokens_per_s_low / 1.14)
    assert any("Liger" in a for a in off.assumptions) and not any("Liger" in a for a in on.assumptions)
    plain = tokens_per_s(M8, replace(BASE, stack="plain"), "H200")  # the plain stack was measured without it
    assert plain.tokens_per_s_low == pytest.approx(0.85 * plain.tokens_per_s)


def test_several_gpus_state_their_scaling_as_an_assumption():
    one = tokens_per_s(M8, BASE, "H100")
    four = tokens_per_s(M8, replace(BASE, n_gpus=4, distributed="ddp"), "H100", grad_accum=2)
    assert four.tokens_per_s == pytest.approx(4 * 0.9 * one.tokens_per_s, rel=0.01)
    assert four.tokens_per_step == 4 * 2 * 4 * 1024
    assert any("not measured" in a for a in four.assumptions)


def test_unknown_card_and_fp32_training_are_unknown_throughput():
    with pytest.raises(UnknownThroughput, match="unknown throughput"):
        tokens_per_s(M8, BASE, "NVIDIA A10G")
    with pytest.raises(UnknownThroughput, match="fp32"):
        tokens_per_s(M8, replace(BASE, method="full"), "Tesla T4")
    t4 = tokens_per_s(M8, BASE, "Tesla T4")  # adapters train in fp16 there
    assert any("fp16" in a for a in t4.assumptions)


def test_bigger_batches_amortise_the_optimizer_step():
    spec = replace(BASE, method="spectrum")
    assert (
        tokens_per_s(M8, spec, "H200", grad_accum=8).tokens_per_s
        > tokens_per_s(M8, spec, "H200").tokens_per_s
    )


# --- the fit against the committed GPU measurements -----------------------------------------------------


def test_rules_file_holds_what_the_benchmark_fits():
    res = _bench().run()
    data = fit()
    for key, value in res["efficiency"].items():
        assert data["efficiency"][key]["value"] == pytest.approx(value, abs=5e-4), key
    assert data["spread"]["value"] == res["spread"]
    for row in res["rows"]:
        if row["role"] == "fit":
            assert abs(row["error"]) < 0.005, row
    blind = [r for r in res["rows"] if r["role"] == "blind"]
    assert len(blind) >= 3
    assert all(abs(r["error"]) <= 0.20 for r in blind), blind


def test_benchmark_writes_its_table_with_the_command(tmp_path):
    out = tmp_path / "t.txt"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "throughput_accuracy.py"), "--out", str(out)],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    text = out.read_text()
    assert text.startswith("# python bench/throughput_accuracy.py --out") and "blind" in text
    committed = (ROOT / "bench" / "results" / "throughput-accuracy-2026-12-06.txt").read_text()
    assert text.split("\n", 1)[1] == committed.split("\n", 1)[1]  # the committed table is current


def test_the_gpu_benchmark_records_the_speed_forecast_before_it_measures():
    spec = importlib.util.spec_from_file_location("gpu_train", ROOT / "bench" / "gpu_train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    case = {"method": "lora", "seq": 1024, "bs": 4, "lengths": "fixed"}
    got = mod.predicted_speed(case, Path("llama-3.2-1b"), "NVIDIA H200")
    assert got["predicted_tokens_per_s"] > got["predicted_baseline_tokens_per_s"] > 0
    assert mod.predicted_speed(case, Path("llama-3.2-1b"), "cpu") == {}
