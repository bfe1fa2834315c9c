"""launcher/train.py trains for real (in-process, tiny Llama): every trainable parameter changes."""

import json

import pytest
import torch
from launchkit import make_run, preference_rows, tiny_base
from safetensors.torch import load_file

from launcher import train


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("base") / "tiny-llama")


def _summary(rd):
    return json.loads((rd / "summary.json").read_text())


def test_lora_sft_on_chat_rows_trains_every_adapter_tensor(base, tmp_path):
    rd = make_run(tmp_path, base, "lora")
    assert train.main([str(rd)]) == 0
    s = _summary(rd)
    assert s["status"] == "completed" and s["steps"] == 4 and s["method"] == "lora"
    assert s["loss_first"] > 0 and s["eval_loss"] is not None and s["peak_gib_measured"] is None
    assert s["device_gib_measured"] is None and s["peak_reserved_gib"] is None  # GPU figures: none on CPU
    weights = load_file(rd / "adapter" / "adapter_model.safetensors")
    assert any("lora_B" in k for k in weights)
    for k, w in weights.items():
        if "lora_B" in k:  # zero at init: non-zero means it was trained
            assert w.abs().sum() > 0, k
    rows = [json.loads(x) for x in (rd / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r][:4] == [1, 2, 3, 4]
    assert (rd / "output" / "sft" / "checkpoint-4" / "optimizer.pt").exists()
    assert list((rd / "output" / "sft").rglob("events.out.tfevents*"))  # TensorBoard logs
    assert "{% generation %}" in (rd / "adapter" / "chat_template.jinja").read_text()


def test_spectrum_trains_only_the_selected_tensors(base, tmp_path):
    rd = make_run(tmp_path, base, "spectrum")
    assert train.main([str(rd)]) == 0
    before, after = load_file(base / "model.safetensors"), load_file(rd / "model" / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"model.layers.1.mlp.down_proj.weight"}


def test_spectrum_pattern_for_another_model_fails_loudly(base, tmp_path):
    rd = make_run(tmp_path, base, "spectrum")
    plan = (rd / "plan.yaml").read_text().replace("model.layers.1.mlp", "model.layers.17.mlp")
    (rd / "plan.yaml").write_text(plan)
    assert train.main([str(rd)]) == 2
    assert _summary(rd)["status"] == "failed" and "match no parameter" in _summary(rd)["error"]
    assert not (rd / "model").exists()


def test_full_fine_tune_changes_every_parameter(base, tmp_path):
    rd = make_run(tmp_path, base, "full", learning_rate=5e-3)
    assert train.main([str(rd)]) == 0
    before, after = load_file(base / "model.safetensors"), load_file(rd / "model" / "model.safetensors")
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    assert unchanged == []


def test_qlora_on_prompt_completion_rows(base, tmp_path):
    rows = [
        json.dumps(
            {"prompt": f"Question {i}: how do I add a domain?", "completion": " Add it under Networking."}
        )
        for i in range(16)
    ]
    rd = make_run(tmp_path, base, "qlora", rows=rows)
    assert train.main([str(rd)]) == 0
    weights = load_file(rd / "adapter" / "adapter_model.safetensors")
    assert all(w.abs().sum() > 0 for k, w in weights.items() if "lora_B" in k)
    assert _summary(rd)["method"] == "qlora"


def test_sft_then_dpo_continues_from_the_sft_adapter(base, tmp_path):
    rd = make_run(tmp_path, base, "lora", stage="sft+dpo")
    (rd / "data" / "prefs.jsonl").write_text("\n".join(preference_rows(12)) + "\n")
    plan = (rd / "plan.yaml").read_text().replace("dataset: null", "dataset: data/prefs.jsonl")
    (rd / "plan.yaml").write_text(plan)
    from advisor.memory import config_for_plan, estimate
    from advisor.models import resolve_model
    from advisor.plan import TrainingPlan

    plan = TrainingPlan.load(rd / "plan.yaml")  # the DPO step's prediction, as the planner writes it
    dpo_est = estimate(resolve_model(str(base)), config_for_plan(plan, "dpo"))
    plan.dpo.predicted_peak_gib = round(dpo_est.peak_allocated_gib, 2)
    plan.dpo.predicted_device_gib = round(dpo_est.device_gib, 2)
    (rd / "plan.yaml").write_text(plan.to_yaml())
    assert train.main([str(rd)]) == 0
    sft = load_file(rd / "output" / "sft" / "final" / "adapter_model.safetensors")
    dpo = load_file(rd / "adapter" / "adapter_model.safetensors")
    assert set(sft) == set(dpo)
    assert all(not torch.equal(sft[k], dpo[k]) for k in sft)  # DPO moved every adapter tensor
    s = _summary(rd)
    assert s["status"] == "completed" and s["stage"] == "dpo"
    # The DPO stage is compared with the DPO step's estimate (twice the rows, the reference forward) that the
    # plan carries (`dpo.predicted_*`), not with the plan's own figure, the SFT step's.
    assert (
        s["peak_gib_predicted"] == round(dpo_est.peak_allocated_gib, 2)
        and s["device_gib_predicted"] is not None
    )
    sft = estimate(resolve_model(str(base)), config_for_plan(plan, "sft"))
    assert dpo_est.peak_allocated_gib > sft.peak_allocated_gib
    rows = [json.loads(x) for x in (rd / "metrics.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in rows} == {"sft", "dpo"}
    # DPO counts its tokens too (tokens/s in metrics.jsonl and the progress line; it was always 0)
    assert max(r.get("tokens_per_s") or 0 for r in rows if r["stage"] == "dpo") > 0


def test_precision_follows_the_plan_and_the_gpu():
    """A plan's precision decides the load dtype and autocast; a plan without one (written before the field)
    runs bf16 mixed precision with fp32 master weights where the GPU has bf16, fp16 autocast for adapters and
    fp32 for Spectrum/full without it, fp32 on CPU. (Checked as configuration: no GPU here.)"""
    import torch

    from advisor.plan import LoraSpec, SpectrumSpec, TrainingPlan
    from launcher.precision import autocast_flags, effective, load_dtype

    lora = TrainingPlan(model="m", method="lora", stage="sft", lora=LoraSpec())
    spectrum = TrainingPlan(model="m", method="spectrum", stage="sft", spectrum=SpectrumSpec(["^x$"]))
    full = TrainingPlan(model="m", method="full", stage="sft")
    assert (
        effective(lora, cuda=True) == ("bf16-mixed", "") and load_dtype(lora, "bf16-mixed") == torch.bfloat16
    )
    assert effective(lora, cuda=False) == ("fp32", "")
    assert effective(spectrum, cuda=True)[0] == "bf16-mixed"  # never the pure-bf16 AdamW of old
    assert load_dtype(spectrum, "bf16-mixed") == torch.bfloat16  # frozen bf16; the selection is upcast
    assert load_dtype(full, "bf16-mixed") == torch.float32
    assert autocast_flags("bf16-mixed") == {"bf16": True, "fp16": False}
    lora.bf16 = spectrum.bf16 = False
    assert effective(lora, cuda=True)[0] == "fp16-mixed" and load_dtype(lora, "fp16-mixed") == torch.float16
    assert autocast_flags("fp16-mixed") == {"bf16": False, "fp16": True}
    assert effective(spectrum, cuda=True)[0] == "fp32" and load_dtype(spectrum, "fp32") == torch.float32
    lora.precision = "fp16-mixed"
    precision, note = effective(lora, cuda=False)
    assert precision == "fp32" and "GPU" in note


@pytest.mark.slow
def test_plan_torch_compile_trains_the_same_first_step(base, tmp_path):
    # plan.yaml's torch_compile (off unless a user or the bench turns it on) reaches the Trainer and the
    # compiled job computes what the eager one does: same seed, no dropout, same losses over two steps.
    eager = make_run(tmp_path / "eager", base, "lora", max_steps=2, eval_steps=100, save_steps=100)
    compiled = make_run(
        tmp_path / "compiled", base, "lora", max_steps=2, eval_steps=100, save_steps=100, torch_compile=True
    )
    from torch._dynamo.utils import counters

    counters.clear()
    assert train.main([str(eager)]) == 0
    assert not counters["stats"]["unique_graphs"]  # eager: nothing compiled
    assert train.main([str(compiled)]) == 0
    assert counters["stats"]["unique_graphs"] > 0  # the model really went through torch.compile
    a, b = _summary(eager), _summary(compiled)
    assert b["status"] == "completed" and b["steps"] == 2
    assert b["loss_first"] == pytest.approx(a["loss_first"], rel=2e-3)
    # The second step's loss follows the first update: the compiled backward computed the same gradients.
    assert b["loss_last"] != b["loss_first"] and b["loss_last"] == pytest.approx(a["loss_last"], rel=2e-3)
    assert "torch_compile" in (compiled / "plan.yaml").read_text()


def test_eval_interval_follows_the_packed_epoch(base, tmp_path, capsys):
    # The plan asks for an evaluation every 50 steps, but the 16 short examples pack into a few rows: one
    # epoch is a few optimizer steps. The job evaluates (and checkpoints) twice an epoch instead of never.
    rd = make_run(tmp_path, base, "lora", max_steps=None, epochs=2, eval_steps=50, save_steps=50)
    assert train.main([str(rd)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "evaluating and checkpointing every" in x)
    want = int(line.split("every ")[1].split()[0])
    per_epoch = int(line.split("one epoch is ")[1].split()[0])
    assert want == max(1, per_epoch // 2) < 50
    rows = [json.loads(x) for x in (rd / "metrics.jsonl").read_text().splitlines()]
    evals = [r["step"] for r in rows if "eval_loss" in r]
    assert len(evals) >= 2 and all(s % want == 0 for s in evals)
    assert _summary(rd)["steps"] == 2 * per_epoch
