"""The report renderers on a hand-built recommendation (independent of the rules' content)."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from advisor.answers import parse_answers
from advisor.data.report import DataReport
from advisor.decision import Candidate, Decision, RuleResult
from advisor.errors import UserError
from advisor.facts import Facts
from advisor.hardware import GPU
from advisor.models import ModelFacts
from advisor.plan import DataSpec, LoraSpec, QuantSpec, TrainingPlan
from advisor.recommend import Recommendation
from advisor.report import build_sections, print_report, render
from advisor.report.plan_table import NO_REASON, plan_rows

GUIDE = "Essential Parameter-Efficient Fine-Tuning Methods"


def _model() -> ModelFacts:
    return ModelFacts(
        name="meta-llama/Llama-3.1-8B",
        family="llama",
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_layers=32,
        num_heads=32,
        num_kv_heads=8,
        head_dim=128,
        tie_word_embeddings=False,
        params_total=8_030_261_248,
    )


def make_rec(
    *, approach="fine-tune", gpus_gib=(24.0,), method="qlora", trc=False, user_method="auto"
) -> Recommendation:
    trace = [
        RuleResult(
            "enough-examples",
            "Enough examples",
            "fired",
            message="2,500 examples with a clear task",
            source="When to Fine-Tune Versus Alternative Approaches",
            then={"recommend": {"approach": "fine-tune"}},
        ),
        RuleResult(
            "qlora-tight-memory",
            "QLoRA on tight memory",
            "fired",
            message="24 GiB is tight for 8B LoRA",
            source=GUIDE,
            then={"prefer": {"method": "qlora"}},
        ),
        RuleResult(
            "lr-default",
            "Learning rate",
            "fired",
            message="2e-4 for adapters",
            source="Practical Tools and Getting Started",
            then={"set": {"learning_rate": 2e-4}},
        ),
        RuleResult(
            "lora-fits",
            "LoRA must fit",
            "fired",
            message="LoRA needs 25.3 GiB; the GPU has 24 GiB",
            source="measurement",
            then={"exclude": {"method": "lora"}},
        ),
        RuleResult(
            "no-prompting-yet",
            "Try prompting",
            "fired",
            message="You have not tried prompting yet.",
            source="When to Fine-Tune Versus Alternative Approaches",
            then={"warn": True},
        ),
        RuleResult(
            "method-for-rag",
            "LoRA default",
            "fired",
            message="LoRA by default",
            applied=False,
            source=GUIDE,
            then={"recommend": {"method": "lora"}},
        ),
        RuleResult(
            "citations-rag",
            "Citations need RAG",
            "not_fired",
            source="When to Fine-Tune Versus Alternative Approaches",
        ),
        RuleResult("dpo-pairs", "Preference pairs", "skipped", missing=["preference_pairs"]),
    ]
    cands = {
        "lora": Candidate("lora", peak_gib=21.9, device_gib=25.3, fits=False, excluded_by=["lora-fits"]),
        "qlora": Candidate("qlora", peak_gib=9.4, device_gib=11.0, fits=True),
        "spectrum": Candidate("spectrum", peak_gib=40.2, device_gib=43.0, fits=False),
    }
    ft = "fine-tune" in approach
    decision = Decision(
        approach=approach,
        method=method if ft else None,
        stage="sft" if ft else None,
        model="meta-llama/Llama-3.1-8B",
        fired=[r.id for r in trace if r.status == "fired"],
        trace=trace,
        warnings=["You have not tried prompting yet."],
        excluded={"lora": ["lora-fits"]},
        would_change=["With a GPU of 32 GiB or more, LoRA would fit."],
        candidates=cands if ft else {},
        eval_plan=["Task metric: exact match", "System metric: latency p95"],
        checklist=[
            {"item": "Define a clear task", "status": "done", "detail": "you said so"},
            {"item": "Prepare ~1,000 examples", "status": "todo", "detail": "you have 2,500"},
        ],
        suggestions=["Iterate on Llama-3.2-1B first."],
    )
    plan = None
    if ft:
        plan = TrainingPlan(
            model="meta-llama/Llama-3.1-8B",
            method=method,
            stage="sft",
            data=DataSpec(source=None, format="messages"),
            lora=LoraSpec(r=16, alpha=32),
            quantization=QuantSpec() if method == "qlora" else None,
            trust_remote_code=trc,
            reasons={
                "learning_rate": "The guide's 2e-4 for adapters.",
                "max_length": "Start at 512–1,024 tokens.",
            },
            predicted_peak_gib=11.0,
        )
    answers = parse_answers({"task": "chat", "examples": 2500, "method": user_method})
    gpus = [
        GPU(name="NVIDIA GeForce RTX 4090", memory_gib=g, index=i, source="answers")
        for i, g in enumerate(gpus_gib)
    ]
    facts = Facts(
        values={"examples": 2500},
        answers=answers,
        model=_model(),
        gpus=gpus,
        gpu_note=None if gpus else "no driver",
        data=None,
    )
    return Recommendation(facts, decision, plan)


SECTION_ORDER = [
    "recommendation",
    "why",
    "ruled-out",
    "would-change",
    "memory",
    "plan",
    "evaluation",
    "checklist",
    "suggestions",
    "warnings",
    "sources",
]


def test_sections_follow_the_explain_order():
    assert [s.key for s in build_sections(make_rec())] == SECTION_ORDER


def test_markdown_has_every_part_in_order():
    md = render(make_rec(), "markdown")
    heads = [line[3:] for line in md.splitlines() if line.startswith("## ")]
    assert heads == [
        "Recommendation",
        "Why",
        "Ruled out",
        "What would change the decision",
        "Estimated peak memory per method",
        "Training plan",
        "Evaluation plan",
        "Getting-started checklist",
        "Suggestions and notes",
        "Warnings",
        "Sources",
    ]
    # fired rules with their messages and sources; the skipped one only counted
    assert "`lora-fits` — LoRA needs 25.3 GiB; the GPU has 24 GiB _(measurement)_" in md
    assert "citations-rag" not in md.split("## Sources")[0]
    assert "6 of 8 rules fired; 1 skipped" in md
    assert "**LoRA**: `lora-fits` — LoRA needs 25.3 GiB" in md
    assert "With a GPU of 32 GiB or more, LoRA would fit." in md
    assert "- [x] Define a clear task — you said so" in md and "- [ ] Prepare ~1,000 examples" in md
    assert f"**{GUIDE}** — `qlora-tight-memory`" in md
    assert "**trust_remote_code:** off" in md


def test_each_fired_rule_is_explained_where_it_acts():
    md = render(make_rec(), "markdown")
    why = md.split("## Why")[1].split("## Ruled out")[0]
    assert "- **Approach**: `enough-examples` — 2,500 examples" in why
    assert "- **Method**: `qlora-tight-memory`" in why and "- **Method**: `lora-fits`" in why
    # plan-setting rules are named, their reasons quoted in the plan; warnings under Warnings with id
    assert "`lr-default`" in why and "2e-4 for adapters" not in why
    warnings = md.split("## Warnings")[1].split("## Sources")[0]
    assert "- `no-prompting-yet` — You have not tried prompting yet. _(When to Fine-Tune" in warnings
    assert warnings.count("You have not tried prompting yet.") == 1  # the engine's copy is not repeated
    # a rule that fired without effect is listed as such, not as a reason
    assert "- **Method**: `method-for-rag`" not in why and "without effect here" in why


def test_memory_table_spare_and_short_are_computed():
    md = render(make_rec(), "markdown")
    # over the usable memory (no fit margin in this hand-made recommendation), never "to spare"
    assert "| LoRA | — | 21.9 | 25.3 | 24.0 | does not fit | 1.3 GiB over 24.0 |" in md
    assert "| QLoRA (chosen) | — | 9.4 | 11.0 | 24.0 | fits | 13.0 GiB to spare |" in md
    # with a bigger GPU the same candidate shows its spare memory, computed from the GPU figure
    md80 = render(make_rec(gpus_gib=(80.0,)), "markdown")
    assert "| QLoRA (chosen) | — | 9.4 | 11.0 | 80.0 | fits | 69.0 GiB to spare |" in md80


def test_no_gpu_is_reported_not_crashed():
    md = render(make_rec(gpus_gib=()), "markdown")
    assert "**GPUs:** none (no driver)" in md
    assert "| no GPU | — |" in md


def test_plan_arithmetic_is_shown_and_right():
    plan = make_rec().plan
    plan.micro_batch_size, plan.grad_accum, plan.max_length, plan.epochs = 4, 4, 1024, 3.0
    rows, _ = plan_rows(plan, None, 2500)
    by = {r[0]: r for r in rows}
    assert by["Sequences per optimizer step"][1:] == ["16", "4 × 4 = 16 (micro-batch × accumulation)"]
    assert by["Tokens per optimizer step"][1].replace(",", "") == "16384"
    assert "16 × 1,024 = 16,384" in by["Tokens per optimizer step"][2]
    # 80% of 2,500 = 2,000; ceil(2000/16) = 125 steps per epoch; 3 epochs = 375
    assert by["Steps per epoch"][1] == "125" and "80% of 2,500 = 2,000" in by["Steps per epoch"][2]
    assert by["Total steps (at most)"][1] == "375"
    assert by["Learning rate"][1:] == ["0.0002", "The guide's 2e-4 for adapters"]
    assert by["Epochs"][2] == NO_REASON  # a missing reason is visible, not invented
    assert by["LoRA rank / alpha"][1] == "16 / 32 (2 × 16)"


def test_packing_uses_measured_mean_tokens():
    plan = make_rec().plan
    plan.n_gpus = 2
    data = DataReport(path="train.jsonl", format="messages", token_stats={"mean": 300.0, "p95": 700})
    rows, _ = plan_rows(plan, data, 1000)
    by = {r[0]: r for r in rows}
    assert by["Sequences per optimizer step"][2].startswith("4 × 4 × 2 GPUs = 32")
    # 800 × 300 / 1024 = 234.4 → 235 sequences; ceil(235 / 32) = 8
    assert "≈ 235 sequences" in by["Steps per epoch"][2] and by["Steps per epoch"][1] == "8"


def test_rag_report_has_no_plan_and_no_memory():
    md = render(make_rec(approach="rag"), "markdown")
    assert "**Approach:** retrieval-augmented generation" in md
    assert "No training plan" in md and "No memory estimates: no training is recommended." in md
    assert "**Method:**" not in md


def test_trust_remote_code_and_user_choice_are_stated():
    md = render(make_rec(trc=True, method="full", user_method="full"), "markdown")
    assert "**trust_remote_code:** on" in md
    assert "**Your method choice:** `full`" in md


def test_text_and_rich_console_agree():
    rec = make_rec()
    buf = io.StringIO()
    print_report(Console(file=buf, width=100), rec)
    text = render(rec, "text")
    for needle in (
        "tunewise recommendation",
        "Why",
        "lora-fits",
        "does not fit",
        "1.3 GiB over",
        "Getting-started checklist",
        "16,384",
    ):
        assert needle in buf.getvalue() and needle in text
    assert "\x1b[" not in text
    assert max(len(line) for line in text.splitlines()) <= 100


def test_user_text_with_rich_markup_is_escaped():
    rec = make_rec()
    rec.decision.warnings.append("[bold]not markup[/bold] stays literal")
    assert "[bold]not markup[/bold] stays literal" in render(rec, "text")


def test_json_is_the_contract_plus_the_trace(monkeypatch):
    import advisor.report.full as full

    monkeypatch.setattr(
        full, "recommendation_json", lambda rec: {"approach": rec.decision.approach, "fired": []}
    )
    out = json.loads(render(make_rec(), "json"))
    assert out["approach"] == "fine-tune"
    assert [t["status"] for t in out["trace"]][-2:] == ["not_fired", "skipped"]
    assert out["trace"][-1]["missing"] == ["preference_pairs"]
    assert out["trust_remote_code"] is False


def test_unknown_format_is_a_user_error():
    with pytest.raises(UserError, match="unknown report format 'html'"):
        render(make_rec(), "html")
