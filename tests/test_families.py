"""Every family launches: the real chain (answers -> plan.yaml -> launcher.train) on a tiny stand-in of
each catalog family, and of each family a local model folder may be, built from that family's config class."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from launchkit import ROOT

from advisor.answers import parse_answers
from advisor.attention import choose_attention
from advisor.models import load_catalog
from advisor.recommend import recommend
from launcher import train
from launcher.rundir import write_recommendation
from launcher.smoke import build_stand_in

CATALOG_FAMILIES = sorted({m.family for m in load_catalog().values()})
# Families a local folder may be beyond the catalog's (advisor.models accepts any dense gated decoder).
LOCAL_FAMILIES = ["qwen3", "gemma3_text"]


def test_the_catalog_families_are_the_ones_this_file_covers():
    assert {"llama", "mistral", "qwen2", "phi3", "gemma", "gemma2"} <= set(CATALOG_FAMILIES)


def test_gemma2_plans_eager_attention_and_says_why():
    rec = recommend(
        parse_answers(
            {
                "task": "chat",
                "goals": ["tone-style"],
                "clear_task": True,
                "tried_prompting": True,
                "examples": 3000,
                "model": "google/gemma-2-9b",
                "gpus": [{"memory_gib": 80}],
            }
        ),
        detect_gpus=False,
    )
    p = rec.plan
    assert p.attn_implementation == "eager"
    assert "soft-caps" in p.reasons["attn_implementation"] and "SDPA" in p.reasons["attn_implementation"]
    llama = recommend(
        parse_answers(
            {
                "task": "chat",
                "goals": ["tone-style"],
                "clear_task": True,
                "tried_prompting": True,
                "examples": 3000,
                "model": "meta-llama/Llama-3.1-8B",
                "gpus": [{"memory_gib": 80}],
            }
        ),
        detect_gpus=False,
    ).plan
    assert llama.attn_implementation == "sdpa"


@pytest.mark.parametrize("family", CATALOG_FAMILIES + LOCAL_FAMILIES)
def test_family_stand_in_trains_through_the_real_job(family, tmp_path):
    from transformers import AutoConfig

    name = next((k for k, m in load_catalog().items() if m.family == family), None) or family
    model_dir = tmp_path / "model"
    if family in CATALOG_FAMILIES:
        info = build_stand_in(
            name, model_dir, max_length=256
        )  # the catalog name -> its family's config class
    else:  # a local folder of that family: its config.json written by the family's own config class
        AutoConfig.for_model(family).save_pretrained(str(tmp_path / "real"))
        info = build_stand_in(str(tmp_path / "real"), model_dir, max_length=256)
    assert info["family"] == family
    answers = parse_answers(
        {
            "task": "chat",
            "goals": ["tone-style"],
            "clear_task": True,
            "tried_prompting": True,
            "dataset": str(ROOT / "examples" / "demo" / "train.jsonl"),
            "model": str(model_dir),
            "gpus": [{"memory_gib": 24}],
            "method": "lora",
        }
    )
    rec = recommend(answers, detect_gpus=False)
    plan = rec.plan
    assert plan is not None and plan.model_family == family
    softcap = json.loads((model_dir / "config.json").read_text()).get("attn_logit_softcapping")
    assert plan.attn_implementation == choose_attention(family, softcap).implementation
    run = write_recommendation(rec, tmp_path / "run")
    # The plan as written, shortened to a few CPU steps; everything else as the planner decided.
    d = yaml.safe_load((run / "plan.yaml").read_text())
    d.update(
        max_steps=3,
        micro_batch_size=2,
        grad_accum=1,
        max_length=128,
        logging_steps=1,
        eval_steps=3,
        save_steps=3,
    )
    if d.get("evaluation"):  # the held-out evaluation at the end is tested elsewhere; here: does it train
        d["evaluation"]["enabled"] = False
    (run / "plan.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    assert train.main([str(run)]) == 0
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "completed" and s["steps"] == 3
    assert math.isfinite(s["loss_first"]) and math.isfinite(s["loss_last"])
    from safetensors.torch import load_file

    adapter = load_file(run / "adapter" / "adapter_model.safetensors")
    assert adapter and all(w.abs().sum() > 0 for k, w in adapter.items() if "lora_B" in k)


@pytest.mark.parametrize(
    ("requested", "family", "expected"),
    [
        ("sdpa", "gemma2", "eager"),  # a hand-edited plan: the class refuses SDPA
        ("flash_attention_2", "gemma2", "eager"),  # no GPU / no flash-attn here: the family's own choice
        ("flash_attention_2", "llama", "sdpa"),
        ("eager", "llama", "eager"),
        ("sdpa", "qwen2", "sdpa"),
    ],
)
def test_the_job_never_loads_an_attention_the_class_or_machine_refuses(requested, family, expected, tmp_path):
    from transformers import AutoConfig

    from launcher.families import resolve_attention

    AutoConfig.for_model(family).save_pretrained(str(tmp_path))
    attn, note = resolve_attention(requested, str(tmp_path), cuda=False)
    assert attn == expected
    assert (note != "") == (requested != expected)
