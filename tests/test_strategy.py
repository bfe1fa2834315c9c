"""Layouts of the box (DDP, FSDP, FSDP + CPU offload, the larger cards alone), the smaller-model fallback,
the global batch and the evaluation cadence as data and GPU counts grow."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from advisor.answers import parse_answers
from advisor.memory import MemoryConfig, estimate
from advisor.models import resolve_model
from advisor.recommend import recommend
from advisor.strategy import fallback_models, layouts, series

BASE = {
    "task": "chat",
    "goals": ["tone-style"],
    "clear_task": True,
    "tried_prompting": True,
    "needs_citations": False,
    "knowledge_changes_often": False,
}


def _rec(**kw):
    return recommend(parse_answers({**BASE, **kw}), detect_gpus=False)


def _gpus(*sizes, name="NVIDIA GeForce RTX 4090"):
    return [{"name": name, "memory_gib": s} for s in sizes]


def test_layouts_try_every_mode_and_the_larger_cards_alone():
    same = layouts([24, 24])
    assert [(lay.n, lay.mode) for lay in same] == [(2, "ddp"), (2, "fsdp"), (2, "fsdp_offload")]
    mixed = layouts([12, 24])
    assert [(lay.indices, lay.mode, lay.gpu_gib) for lay in mixed][-1] == ((1,), None, 24)
    assert layouts([80]) == [layouts([80])[0]] and layouts([80])[0].mode is None


def test_offload_moves_shards_gradients_and_optimizer_to_host_memory():
    m = resolve_model("meta-llama/Llama-3.1-70B")
    on_gpu = estimate(m, MemoryConfig(method="qlora", batch_size=1, n_gpus=2, distributed="fsdp"))
    off = estimate(
        m, MemoryConfig(method="qlora", batch_size=1, n_gpus=2, distributed="fsdp", cpu_offload=True)
    )
    # the 4-bit shards (~18 GiB each) leave the GPU; the gathered root and layers and the activations stay
    assert off.device_gib < on_gpu.device_gib - 15 and off.host_offload_gib > 15
    assert on_gpu.host_offload_gib == 0 and "optimizer_states" not in off.breakdown
    from advisor.errors import UserError

    with pytest.raises(UserError, match="FSDP only"):
        estimate(m, MemoryConfig(method="qlora", n_gpus=2, distributed="ddp", cpu_offload=True))


def test_70b_with_enough_data_on_two_24gb_cards_gets_qlora_fsdp_with_offload_never_prompting():
    rec = _rec(examples=5000, model="meta-llama/Llama-3.1-70B", gpus=_gpus(24, 24))
    d, p = rec.decision, rec.plan
    assert (d.approach, d.method, p.model) == ("fine-tune", "qlora", "meta-llama/Llama-3.1-70B")
    assert (p.distributed, p.cpu_offload, p.n_gpus) == ("fsdp", True, 2) and rec.facts.candidates[
        "qlora"
    ].fits
    assert p.predicted_device_gib <= 24 * 0.95 and "PCIe" in p.reasons["cpu_offload"]
    assert "host RAM" in p.reasons["cpu_offload"] and rec.facts.candidates["qlora"].host_gib > 30
    assert not any("1,000" in s for s in d.suggestions)
    from launcher.jobfiles import accelerate_yaml

    cfg = yaml.safe_load(accelerate_yaml(p))
    assert cfg["fsdp_config"]["fsdp_offload_params"] is True and cfg["num_processes"] == 2


def test_full_8b_on_two_80gb_takes_fsdp_at_the_larger_batch_not_ddp_at_one():
    rec = _rec(examples=5000, model="meta-llama/Llama-3.1-8B", method="full", gpus=_gpus(80, 80, name="H100"))
    p = rec.plan
    assert (p.distributed, p.cpu_offload, p.micro_batch_size, p.max_length) == ("fsdp", False, 8, 1024)
    assert p.effective_batch == 16 and p.predicted_device_gib < 70
    assert "DDP on 2 × 80 GiB" in p.reasons["distributed"]  # the route tried is stated


def test_a_24gb_plus_12gb_box_trains_on_the_24gb_card_alone():
    rec = _rec(examples=5000, model="meta-llama/Llama-3.1-8B", gpus=_gpus(24, 12))
    p = rec.plan
    assert (rec.decision.method, p.n_gpus, p.gpu_indices, p.distributed) == ("lora", 1, [0], None)
    assert p.micro_batch_size == 8 and "indices 0" in p.reasons["gpu_indices"]


def test_gpu_indices_reach_the_job_environment(tmp_path, monkeypatch):
    import launcher.launch as launch

    rec = _rec(examples=5000, model="meta-llama/Llama-3.1-8B", gpus=_gpus(12, 24))
    assert rec.plan.gpu_indices == [1]
    seen = {}

    class Stop(Exception):
        pass

    def fake_popen(cmd, **kw):
        seen.update(kw["env"])
        raise Stop

    monkeypatch.setattr(launch.subprocess, "Popen", fake_popen)
    lock = launch.jobcontrol.acquire(tmp_path)  # as `launch` holds it
    try:
        with pytest.raises(Stop):
            launch._run_once(
                tmp_path,
                rec.plan,
                attempt=1,
                max_steps=None,
                save_steps=None,
                console=__import__("rich.console").console.Console(file=open("/dev/null", "w")),
                allow_network=False,
                cpu=False,
                lock=lock,
            )
    finally:
        os.close(lock)
    assert seen["CUDA_VISIBLE_DEVICES"] == "1"


def test_the_fallback_is_the_largest_catalog_model_that_fits_same_series_first():
    assert series("meta-llama/Llama-3.1-70B") == series("meta-llama/Llama-3.1-8B") == "meta-llama/llama-3.1"
    order = [m.name for m in fallback_models(resolve_model("meta-llama/Llama-3.1-70B"))]
    assert order[0] == "meta-llama/Llama-3.1-8B" and order.index("meta-llama/Llama-2-13b-hf") > 0
    rec = _rec(examples=5000, model="meta-llama/Llama-3.1-70B", gpus=_gpus(24))
    assert rec.plan.model == "meta-llama/Llama-3.1-8B" and "TW807-smaller-model-fits" in rec.decision.fired
    assert any("Llama-3.1-70B" in w and "Llama-3.1-8B" in w for w in rec.decision.warnings)


def test_a_forced_method_is_never_swapped_for_a_smaller_model():
    rec = _rec(examples=5000, model="meta-llama/Llama-3.1-70B", method="lora", gpus=_gpus(24))
    assert rec.facts.values["model_name"] == "meta-llama/Llama-3.1-70B" and rec.exit_code == 1


def test_a_million_examples_get_a_capped_validation_set_and_an_evaluation_every_few_percent():
    rec = _rec(examples=1_000_000, model="meta-llama/Llama-3.1-8B", gpus=_gpus(80, name="H100"))
    p = rec.plan
    assert p.data.validation_max_rows == 5000 and p.train_examples(1_000_000) == 995_000
    steps = -(-995_000 // p.effective_batch)
    assert p.eval_steps >= 0.05 * steps and p.save_steps == p.eval_steps
    small = _rec(examples=2000, model="meta-llama/Llama-3.1-8B", gpus=_gpus(80, name="H100")).plan
    assert (
        small.eval_steps <= 50
        and small.data.validation_max_rows == 5000
        and small.train_examples(2000) == 1600
    )


def test_many_gpus_keep_the_global_batch_and_say_when_they_cannot():
    two = _rec(examples=20000, model="meta-llama/Llama-3.1-8B", gpus=_gpus(80, 80, name="H100")).plan
    assert two.effective_batch == 16
    rec = _rec(examples=20000, model="meta-llama/Llama-3.1-8B", gpus=_gpus(*[80] * 64, name="H100"))
    p = rec.plan
    assert p.effective_batch == 64 * p.micro_batch_size and p.micro_batch_size == 1 and p.grad_accum == 1
    assert any("Effective batch 64" in w for w in rec.decision.warnings)
    assert p.eval_steps > 1


def test_the_validation_split_honours_the_cap(tmp_path):
    from advisor.data import write_split

    rows = [{"prompt": f"Question {i}?", "completion": f"Answer {i * 3}."} for i in range(200)]
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    r = write_split(str(src), tmp_path / "out", val_max_rows=15)
    assert (r.train_rows, r.validation_rows) == (185, 15)


def _estimate(*args):
    out = subprocess.run(
        [sys.executable, "-m", "tunewise", "estimate", *args, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout)


def test_estimate_gpus_defaults_to_the_planners_layout_and_its_advice_fits_it():
    full = _estimate(
        "--model",
        "meta-llama/Llama-3.1-8B",
        "--method",
        "full",
        "--gpus",
        "2",
        "--gpu-memory",
        "80",
        "--batch-size",
        "8",
    )
    assert full["config"]["distributed"] == "fsdp" and full["device_gib"] < 70
    ddp = _estimate(
        "--model",
        "meta-llama/Llama-3.1-70B",
        "--method",
        "lora",
        "--gpus",
        "2",
        "--distributed",
        "ddp",
        "--gpu-memory",
        "24",
    )
    advice = " ".join(ddp["advice"])
    assert "--distributed fsdp" in advice and "more GPUs" not in advice
    big = _estimate(
        "--model", "meta-llama/Llama-3.1-70B", "--method", "qlora", "--gpus", "2", "--gpu-memory", "24"
    )
    assert big["config"]["cpu_offload"] is True and big["device_gib"] <= 24
