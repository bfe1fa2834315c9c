"""Facts: GPUs from answers vs detection, data facts from a real inspection, candidates, normalisation."""

from __future__ import annotations

from pathlib import Path

from advisor.answers import load_answers, parse_answers
from advisor.facts import DECISION_DOCS, FACT_DOCS, Fit, build_facts, normalise

ROOT = Path(__file__).resolve().parents[1]


def test_no_gpu_is_a_normal_fact_and_fit_facts_are_left_out():
    f = build_facts(parse_answers({"model": "meta-llama/Llama-3.2-1B", "examples": 3000}), detect_gpus=False)
    assert f.values["gpu_count"] == 0.0 and f.gpus == [] and "--no-detect" in f.gpu_note
    assert "lora_fits" not in f.values and "any_method_fits" not in f.values
    assert f.candidates["lora"].device_gib > 0 and f.candidates["lora"].fits is False


def test_gpus_in_the_answers_override_detection(monkeypatch):
    import advisor.hardware as hw

    monkeypatch.setattr(hw, "detect_gpus", lambda: (_ for _ in ()).throw(AssertionError("NVML probed")))
    f = build_facts(
        parse_answers(
            {
                "model": "meta-llama/Llama-3.1-8B",
                "gpus": [{"name": "A", "memory_gib": 24}, {"name": "B", "memory_gib": 16}],
            }
        )
    )
    v = f.values
    # gpu_memory_gib is the largest card: a layout may use it alone (advisor.strategy)
    assert (v["gpu_count"], v["gpu_memory_gib"], v["gpu_total_memory_gib"]) == (2.0, 24.0, 40.0)
    assert v["gpu_usable_gib"] == round(24 * (1 - f.thresholds["fit_margin"]), 2)
    assert {c.distributed for c in f.candidates.values()} <= {None, "ddp", "fsdp"}
    for c in f.candidates.values():  # one GPU alone is the 24 GiB card (index 0), never the 16 GiB one
        assert (c.distributed is None) == (c.gpu_indices == [0])


def test_fits_means_the_estimate_is_within_the_usable_memory():
    f = build_facts(parse_answers({"model": "meta-llama/Llama-3.1-8B", "gpus": [{"memory_gib": 24}]}))
    usable = f.values["gpu_usable_gib"]
    for m, c in f.candidates.items():
        assert c.fits == (c.device_gib <= usable + 0.01), m
        assert f.values[f"{m}_fits"] is c.fits
    assert (
        f.candidates["qlora"].device_gib
        < f.candidates["lora"].device_gib
        < f.candidates["spectrum"].device_gib
    )


def test_no_model_given_takes_the_guides_pick_that_fits():
    f = build_facts(parse_answers({"gpus": [{"memory_gib": 24}]}))
    assert f.values["model_given"] is False and f.values["model_name"].startswith("meta-llama/Llama-3.1-8B")
    tiny = build_facts(
        parse_answers({"gpus": [{"memory_gib": 4}]}),
        fitter=lambda model, m, n, mode, seq, gpu, th, **kw: Fit(1, 16, seq, 1, 1, model.params_total < 5e9),
    )
    assert "Phi-3" in tiny.model.name and tiny.values["any_method_fits"] is True


def test_data_facts_come_from_inspecting_the_demo_dataset():
    a = load_answers(ROOT / "examples" / "demo" / "answers.yaml")
    f = build_facts(a.model_copy(update={"gpus": parse_answers({"gpus": [{"memory_gib": 24}]}).gpus}))
    v = f.values
    assert v["has_dataset"] is True and v["data_format"] == f.data.format
    assert (
        v["sft_examples"] == f.data.usable_rows and v["examples"] == v["sft_examples"] + v["preference_pairs"]
    )
    assert v["data_rows"] >= v["data_valid"] > 0


def test_values_are_cel_ready_and_documented():
    f = build_facts(
        parse_answers(
            {
                "task": "chat",
                "examples": 2500,
                "preference_pairs": 3,
                "model": "meta-llama/Llama-3.2-1B",
                "gpus": [{"memory_gib": 24}],
            }
        )
    )
    for k, v in f.values.items():
        assert k in FACT_DOCS, k
        assert v is not None and not (isinstance(v, int) and not isinstance(v, bool)), (k, v)
    assert f.values["examples"] == 2503.0 and f.values["task_complexity"] == "medium"
    assert not set(FACT_DOCS) & set(DECISION_DOCS)
    assert normalise({"a": [1, True, "x"]}) == {"a": [1.0, True, "x"]}
