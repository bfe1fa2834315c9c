"""Precision is a decision: the memory model counts what really runs, `tunewise estimate --precision` shows it,
and plans on GPUs without bf16 (T4, V100) are sized, accepted or refused in the precision the job runs there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.answers import parse_answers
from advisor.memory import MemoryConfig, estimate
from advisor.models import resolve_model
from advisor.recommend import recommend

ROOT = Path(__file__).resolve().parent.parent
BASE = {
    "task": "chat",
    "goals": ["tone-style"],
    "clear_task": True,
    "tried_prompting": True,
    "needs_citations": False,
    "knowledge_changes_often": False,
}


def tw(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tunewise", *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


@pytest.mark.parametrize(
    ("precision", "per_param"), [("bf16-mixed", 16), ("bf16-compensated", 10), ("fp32", 16)]
)
def test_full_fine_tuning_of_a_7b_costs_what_its_precision_holds(precision, per_param):
    m = resolve_model("llama-2-7b")
    e = estimate(m, MemoryConfig("full", seq_len=1024, batch_size=1, precision=precision))
    assert e.bytes_per_param["trainable_total"] == per_param
    # the whole step at batch 1: weights, gradients and AdamW dominate; activations add a little
    assert per_param <= e.peak_allocated_gib * 1024**3 / m.params_total < per_param + 0.5


def test_estimate_precision_flag_names_it_in_json_and_text():
    p = tw(
        "estimate",
        "--model",
        "llama-2-7b",
        "--method",
        "full",
        "--precision",
        "bf16-compensated",
        "--format",
        "json",
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["precision"] == "bf16-compensated" and out["config"]["precision"] == "bf16-compensated"
    assert out["bytes_per_param"] == {
        "weight": 2,
        "gradient": 2,
        "optimizer": 6,
        "trainable_total": 10,
        "frozen": 2,
    }
    text = tw("estimate", "--model", "llama-2-7b", "--method", "full").stdout
    assert "bf16-mixed" in text and "fp32 master weights" in text and "= 16" in text
    bad = tw("estimate", "--model", "llama-2-7b", "--method", "qlora", "--precision", "bf16-compensated")
    assert bad.returncode == 2 and "does not apply to qlora" in bad.stderr and "Traceback" not in bad.stderr


def test_spectrum_and_full_plans_keep_fp32_master_weights_where_they_fit():
    p = recommend(
        parse_answers(
            {
                **BASE,
                "examples": 20000,
                "model": "meta-llama/Llama-3.2-1B",
                "method": "full",
                "gpus": [{"name": "NVIDIA H100", "memory_gib": 80}],
            }
        ),
        detect_gpus=False,
    ).plan
    assert p.precision == "bf16-mixed" and "fp32" in p.reasons["precision"]


def test_compensated_optimizer_only_when_fp32_master_weights_do_not_fit():
    # Llama-3.1-8B full on one 80 GB GPU: 16 bytes/param does not fit, 10 does
    rec = recommend(
        parse_answers(
            {
                **BASE,
                "examples": 20000,
                "model": "meta-llama/Llama-3.1-8B",
                "method": "full",
                "gpus": [{"name": "NVIDIA H100", "memory_gib": 80}],
            }
        ),
        detect_gpus=False,
    )
    assert rec.plan.precision == "bf16-compensated" and rec.exit_code == 0
    assert "do not fit" in rec.plan.reasons["precision"] and "Kahan" in rec.plan.reasons["precision"]
    m = resolve_model("meta-llama/Llama-3.1-8B")
    mixed = estimate(m, MemoryConfig("full", seq_len=rec.plan.max_length, batch_size=1))
    assert mixed.device_gib > 80 * 0.95  # the default precision really does not fit


def test_no_bf16_gpu_sizes_spectrum_and_full_in_fp32_and_refuses_a_forced_misfit():
    # the case: a forced full fine-tune of a 1B model on a T4 was "11.5 GiB, fits"
    t4 = [{"name": "Tesla T4", "memory_gib": 16}]
    rec = recommend(
        parse_answers(
            {**BASE, "examples": 3000, "model": "meta-llama/Llama-3.2-1B", "method": "full", "gpus": t4}
        ),
        detect_gpus=False,
    )
    cand = rec.decision.candidates["full"]
    assert cand.precision == "fp32" and not cand.fits
    assert (
        rec.exit_code == 1 and "in fp32" in rec.problems[0] and f"{cand.device_gib:g} GiB" in rec.problems[0]
    )
    m = resolve_model("meta-llama/Llama-3.2-1B")
    assert cand.peak_gib >= 16 * m.params_total / 1024**3  # weights, gradients and AdamW in fp32
    # Spectrum across 4 x V100-32GB is sized in fp32 too
    v100 = [{"name": "Tesla V100-SXM2-32GB", "memory_gib": 32}] * 4
    rec = recommend(
        parse_answers(
            {
                **BASE,
                "examples": 20000,
                "model": "meta-llama/Llama-3.1-8B",
                "method": "spectrum",
                "gpus": v100,
            }
        ),
        detect_gpus=False,
    )
    assert rec.decision.candidates["spectrum"].precision == "fp32"
    if rec.plan is not None and rec.plan.method == "spectrum":
        assert rec.plan.precision == "fp32" and "fp32" in rec.plan.reasons["precision"]


def test_recommend_cli_exits_1_with_the_figures_for_a_forced_method_that_does_not_fit_its_precision(tmp_path):
    answers = tmp_path / "a.yaml"
    answers.write_text(
        "task: chat\ngoals: [tone-style]\nclear_task: true\ntried_prompting: true\nexamples: 3000\n"
        "model: meta-llama/Llama-3.2-1B\nmethod: full\ngpus: [{name: Tesla T4, memory_gib: 16}]\n"
    )
    p = tw("recommend", "--answers", str(answers), "--format", "json")
    assert p.returncode == 1, p.stderr
    out = json.loads(p.stdout)
    assert out["candidates"]["full"]["fits"] is False and out["candidates"]["full"]["device_gib"] > 16
