"""The edge corpus (tests/data/edge_corpus.yaml): situations beyond the personas, each with the decision the
guide or byte arithmetic expects, and every one (personas too) rendered in every format with the same
warnings and figures. docs/edge-cases.md is generated from the corpus:
`TUNEWISE_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_edge_corpus.py` rewrites it.
"""

from __future__ import annotations

import math
import os
import re
from functools import cache
from pathlib import Path

import pytest
import yaml

from advisor.answers import GPUAnswer, load_answers, parse_answers
from advisor.recommend import recommend, recommendation_json

ROOT = Path(__file__).resolve().parents[1]
CORPUS = yaml.safe_load((Path(__file__).parent / "data" / "edge_corpus.yaml").read_text(encoding="utf-8"))
CASES = CORPUS["cases"]
DOC = ROOT / "docs" / "edge-cases.md"
MIN_CASES = 60


@cache
def _rules():
    from advisor.rules import load_rules

    return load_rules()


def _answers(case: dict):
    data = {**CORPUS["base"], **case["answers"]}
    if "gpus" in data:
        data["gpus"] = [g if isinstance(g, dict) else CORPUS["gpu"][g] for g in data["gpus"]]
    return parse_answers(data)


@cache
def _rec(case_id: str):
    case = next(c for c in CASES if c["id"] == case_id)
    return recommend(_answers(case), detect_gpus=False, rules=_rules())


def _plan_value(plan, dotted: str):
    obj = plan
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _one_of(expected, actual) -> bool:
    return (
        actual in expected
        if isinstance(expected, list) and not isinstance(actual, list)
        else actual == expected
    )


def test_the_corpus_is_large_ids_are_unique_and_every_case_says_why():
    assert len(CASES) >= MIN_CASES
    assert len({c["id"] for c in CASES}) == len(CASES)
    assert all(c.get("why") and c.get("situation") and c.get("expect") for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_each_situation_gets_the_expected_decision(case):
    rec = _rec(case["id"])
    d, p, exp = rec.decision, rec.plan, case["expect"]
    for key in ("approach", "method", "stage"):
        if key in exp:
            assert _one_of(exp[key], getattr(d, key)), (key, getattr(d, key))
    if "model" in exp:
        assert p is not None and p.model == exp["model"]
    if "exit" in exp:
        assert rec.exit_code == exp["exit"], rec.problems
    fired = set(d.fired)
    assert set(exp.get("fired", [])) <= fired, fired
    assert not set(exp.get("not_fired", [])) & fired
    for key, want in exp.items():
        if key.startswith("plan."):
            assert p is not None, "no plan"
            got = _plan_value(p, key[5:])
            assert _one_of(want, got), (key, got)
    if "would_change" in exp:
        assert any(exp["would_change"] in line for line in d.would_change), d.would_change
    if "warn_contains" in exp:
        assert any(exp["warn_contains"] in w for w in d.warnings), d.warnings
    if "gpu_usable_below" in exp:
        assert rec.facts.values["gpu_usable_gib"] < exp["gpu_usable_below"]
    if "eval_steps_above" in exp:
        assert p.eval_steps > exp["eval_steps_above"]
    if "eval_fraction_at_least" in exp:
        steps = math.ceil(p.train_examples(int(rec.facts.values["sft_examples"])) / p.effective_batch)
        assert p.eval_steps >= exp["eval_fraction_at_least"] * steps and p.save_steps >= p.eval_steps
    if exp.get("dpo_figures"):
        from dataclasses import replace

        from advisor.memory import config_for_plan, estimate

        dpo = estimate(rec.facts.model, replace(config_for_plan(p, "dpo"), spectrum_fraction=0.3))
        sft = estimate(rec.facts.model, replace(config_for_plan(p, "sft"), spectrum_fraction=0.3))
        assert (
            p.predicted_device_gib == pytest.approx(dpo.device_gib, abs=0.01)
            and dpo.device_gib > sft.device_gib
        )
        assert d.candidates[p.method].device_gib == pytest.approx(dpo.device_gib, abs=0.01)


# --- one story in every format ---------------------------------------------------------------------------


def _norm(text: str) -> str:
    return " ".join(text.replace("`", "").replace("*", "").replace("_", "").split())


def _check_formats_agree(rec) -> None:
    from advisor.report import gib, render, render_brief
    from advisor.report.full import warning_items

    data = recommendation_json(rec)
    md, txt, brief = (_norm(render(rec, "markdown")), _norm(render(rec, "text")), render_brief(rec))
    warnings = data["warnings"]
    rules, others = warning_items(rec)
    # the same list, in the same number, everywhere
    assert [r.message for r in rules] + others == warnings or sorted(
        [r.message for r in rules] + others
    ) == sorted(warnings)
    assert f"Warnings ({len(warnings)})" in brief
    assert ("Warnings - None." in md) == (not warnings)
    for w in warnings:
        assert _norm(w) in md, w
        assert _norm(w) in txt, w
    brief_n = _norm(brief)
    for r in rules:  # the brief names each warning rule by its short id (and its title, wrapped in a column)
        assert r.id.split("-")[0] in brief_n
    for w in others:
        assert _norm(w) in brief_n, w
    # the same figures
    if rec.plan is not None:
        p = rec.plan
        figures = [f"{p.max_length:,}"]
        if p.predicted_device_gib is not None:
            figures.append(gib(p.predicted_device_gib))
        for f in figures:
            assert f in md and f in txt and f in brief_n, f
        assert data["plan"]["learning_rate"] == p.learning_rate and data["plan"]["epochs"] == p.epochs
        lr = re.escape(f"{p.learning_rate:.0e}".replace("e-0", "e-"))
        assert re.search(lr, md) and re.search(lr, txt), lr


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_every_format_tells_the_same_story_for_each_case(case):
    _check_formats_agree(_rec(case["id"]))


PERSONAS = sorted((ROOT / "examples" / "answers").glob("*.yaml")) + [
    ROOT / "examples" / "demo" / "answers.yaml"
]


@pytest.mark.parametrize(
    "path", PERSONAS, ids=[p.parent.name if p.stem == "answers" else p.stem for p in PERSONAS]
)
def test_every_format_tells_the_same_story_for_each_persona(path):
    answers = load_answers(path)
    if answers.gpus is None:
        answers = answers.model_copy(
            update={"gpus": [GPUAnswer(name="NVIDIA GeForce RTX 4090", memory_gib=24)]}
        )
    _check_formats_agree(recommend(answers, detect_gpus=False, rules=_rules()))


# --- the table in docs/ ----------------------------------------------------------------------------------


def _decision(rec) -> str:
    d, p = rec.decision, rec.plan
    if p is None:
        return d.approach
    parts = [d.approach, d.method, d.stage]
    if p.model != (rec.facts.answers.model or p.model):
        parts.append(f"model {p.model.split('/')[-1]}")
    if p.n_gpus > 1:
        parts.append(f"{p.distributed or 'ddp'}{' + CPU offload' if p.cpu_offload else ''} x{p.n_gpus}")
    elif p.gpu_indices:
        parts.append(f"GPU {p.gpu_indices[0]} alone")
    parts.append(f"{p.micro_batch_size} x {p.max_length:,}")
    if rec.exit_code:
        parts.append("does not fit (exit 1)")
    return " · ".join(str(x) for x in parts)


def _doc() -> str:
    lines = [
        "<!-- generated from tests/data/edge_corpus.yaml by TUNEWISE_UPDATE_SNAPSHOTS=1 pytest tests/test_edge_corpus.py -->",
        "# Edge cases: what tunewise decides, and why",
        "",
        "Situations beyond the bundled personas: model sizes, GPU boxes, data sizes, preference data and",
        "precision. Each row is a test (`tests/test_edge_corpus.py`): the decision shown is what tunewise",
        "produces today, checked against the expectation in the corpus file, and every case is rendered in",
        "every report format with the same warnings and figures. Every case starts from a chat assistant",
        "with a tone-and-style goal, a clear task, prompting tried and Llama-3.1-8B, unless it says otherwise.",
        "",
        "| id | situation | decision | why (guide section or byte arithmetic) |",
        "|---|---|---|---|",
    ]
    for c in CASES:
        why = c["why"] + (f" *Note: {c['note']}*" if c.get("note") else "")
        lines.append(
            f"| {c['id']} | {c['situation']} | {_decision(_rec(c['id']))} | {why.replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"


def test_the_docs_table_is_generated_from_the_corpus():
    text = _doc()
    if os.environ.get("TUNEWISE_UPDATE_SNAPSHOTS") == "1":
        DOC.write_text(text, encoding="utf-8")
    assert DOC.is_file() and DOC.read_text(encoding="utf-8") == text, (
        "docs/edge-cases.md is stale: TUNEWISE_UPDATE_SNAPSHOTS=1 pytest tests/test_edge_corpus.py"
    )


# --- docs/routes.md: one brief report of each route the strategy search adds -----------------------------

ROUTES = {
    "E31": "FSDP + CPU offload: Llama-3.1-70B with QLoRA on two 24 GB cards",
    "E32": "A smaller model: Llama-3.1-70B asked for, one 24 GB card",
    "E36": "The larger card alone: a 24 GB + 12 GB box",
    "E35": "FSDP by what it buys: full fine-tuning of 8B on two 80 GB GPUs",
    "E51": "Preference pairs alone: a DPO-only plan with the DPO step's figures",
}
ROUTES_DOC = ROOT / "docs" / "routes.md"


def _routes_doc() -> str:
    from advisor.report import render_brief

    out = [
        "<!-- generated from tests/data/edge_corpus.yaml by TUNEWISE_UPDATE_SNAPSHOTS=1 pytest tests/test_edge_corpus.py -->",
        "# Routes when the first choice does not fit",
        "",
        "One brief report (`tunewise recommend --brief`) for each route the strategy search can take; the",
        "answers are the corpus cases named (tests/data/edge_corpus.yaml, on top of its `base`).",
        "",
    ]
    for cid, title in ROUTES.items():
        case = next(c for c in CASES if c["id"] == cid)
        out += [
            f"## {title} ({cid})",
            "",
            "```yaml",
            yaml.safe_dump(case["answers"], sort_keys=False, default_flow_style=None).strip(),
            "```",
            "",
            "```",
            render_brief(_rec(cid), width=100).rstrip(),
            "```",
            "",
        ]
    return "\n".join(out)


def test_the_routes_doc_is_generated_from_the_corpus():
    text = _routes_doc()
    if os.environ.get("TUNEWISE_UPDATE_SNAPSHOTS") == "1":
        ROUTES_DOC.write_text(text, encoding="utf-8")
    assert ROUTES_DOC.read_text(encoding="utf-8") == text, (
        "docs/routes.md is stale: TUNEWISE_UPDATE_SNAPSHOTS=1"
    )
