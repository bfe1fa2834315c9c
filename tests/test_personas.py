"""Every persona answers file in examples/: it loads, the decision is the one a practitioner expects,
and its markdown report matches the reviewed snapshot in tests/snapshots/.

Regenerate the snapshots after an intended change with
`TUNEWISE_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_personas.py`, then read the diff.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from advisor.answers import GPUAnswer, load_answers

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
PERSONAS = sorted((ROOT / "examples" / "answers").glob("*.yaml"))
DEMO = ROOT / "examples" / "demo" / "answers.yaml"
MIN_PERSONAS = 8

# What the guide says each persona should get (approach, method or a set of acceptable ones, stage).
EXPECTED = {
    "brand-voice-chatbot-24gb": ("fine-tune", {"lora", "qlora"}, "sft"),
    "only-50-examples": ("prompting", None, None),
    "news-summarization-rag": ("rag", None, None),
    "legal-qa-citations": ({"rag", "rag+fine-tune"}, {None, "lora", "qlora"}, {None, "sft"}),
    "llama-70b-2x80gb": ("fine-tune", {"qlora", "spectrum"}, "sft"),
    "dpo-alignment": ("fine-tune", {"lora", "qlora"}, "sft+dpo"),
    "low-resource-language-16gb": ("fine-tune", "qlora", "sft"),
    "code-patterns-colab-t4": ("fine-tune", "qlora", "sft"),
    "forced-full-does-not-fit": ("fine-tune", "full", "sft"),
    "zero-latency-extraction-48gb": ("fine-tune", "lora", "sft"),
    "demo": ("fine-tune", {"lora", "qlora"}, "sft"),
}


def _cases() -> list[tuple[str, Path]]:
    return [(p.stem, p) for p in PERSONAS] + [("demo", DEMO)]


def test_there_are_enough_personas_and_every_one_loads():
    assert len(PERSONAS) >= MIN_PERSONAS, f"only {len(PERSONAS)} persona files in examples/answers"
    for path in [*PERSONAS, DEMO]:
        answers = load_answers(path)
        assert answers.task is not None, path
        assert answers.model is not None, path
    # every persona has an expectation, so a new file cannot slip in unchecked
    assert {name for name, _ in _cases()} == set(EXPECTED)


def _recommend(path: Path):
    from advisor.recommend import recommend

    answers = load_answers(path)
    if answers.gpus is None:  # the demo plans for the wizard's default GPU, never for this machine's
        answers = answers.model_copy(
            update={"gpus": [GPUAnswer(name="NVIDIA GeForce RTX 4090", memory_gib=24)]}
        )
    return recommend(answers, detect_gpus=False)


def _matches(value, expected) -> bool:
    return value in expected if isinstance(expected, set) else value == expected


@pytest.mark.parametrize(("name", "path"), _cases(), ids=[n for n, _ in _cases()])
def test_persona_decision_is_what_the_guide_says(name, path, monkeypatch):
    monkeypatch.chdir(ROOT)
    d = _recommend(path).decision
    approach, method, stage = EXPECTED[name]
    assert _matches(d.approach, approach), (name, d.approach)
    assert _matches(d.method, method), (name, d.method)
    assert _matches(d.stage, stage), (name, d.stage)
    assert d.fired, name


def test_forced_full_fine_tuning_is_shown_not_to_fit(monkeypatch):
    monkeypatch.chdir(ROOT)
    rec = _recommend(ROOT / "examples" / "answers" / "forced-full-does-not-fit.yaml")
    assert rec.decision.candidates["full"].fits is False
    from advisor.report import render

    md = render(rec, "markdown")
    assert "**Your method choice:** `full`" in md
    assert "| Full fine-tuning (chosen) |" in md and "does not fit" in md


@pytest.mark.parametrize(("name", "path"), _cases(), ids=[n for n, _ in _cases()])
def test_persona_report_matches_snapshot(name, path, monkeypatch):
    from advisor.report import render

    monkeypatch.chdir(ROOT)  # paths in the report are shown relative to the working directory
    md = render(_recommend(path), "markdown")
    snap = SNAPSHOTS / f"{name}.md"
    if os.environ.get("TUNEWISE_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOTS.mkdir(exist_ok=True)
        snap.write_text(md, encoding="utf-8")
        return
    assert snap.is_file(), f"no snapshot {snap.name}; create it with TUNEWISE_UPDATE_SNAPSHOTS=1"
    expected = snap.read_text(encoding="utf-8")
    if md != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(True), md.splitlines(True), f"snapshots/{snap.name}", "rendered"
            )
        )
        pytest.fail(f"report for {name} changed (TUNEWISE_UPDATE_SNAPSHOTS=1 to accept):\n{diff}")


DOC = ROOT / "docs" / "report.md"
DOC_PERSONA = "brand-voice-chatbot-24gb"
DOC_PREFACE = (
    "<!-- generated from tests/snapshots/{name}.md by TUNEWISE_UPDATE_SNAPSHOTS=1 pytest tests/test_personas.py -->\n"
    "# A sample report\n\n"
    "What `tunewise recommend --answers examples/answers/{name}.yaml --format markdown` prints (and what "
    "`--out RUN_DIR` writes to `report.md`) for a support team that wants its chatbot to speak in the "
    "company's voice, with 2,500 approved conversations and one 24 GB GPU.\n\n---\n\n"
)


def test_docs_sample_report_is_the_current_snapshot():
    snap = (SNAPSHOTS / f"{DOC_PERSONA}.md").read_text(encoding="utf-8")
    # one heading level down, under the page's own title
    body = "".join("#" + line if line.startswith("#") else line for line in snap.splitlines(True))
    expected = DOC_PREFACE.format(name=DOC_PERSONA) + body
    if os.environ.get("TUNEWISE_UPDATE_SNAPSHOTS") == "1":
        DOC.write_text(expected, encoding="utf-8")
        return
    assert DOC.read_text(encoding="utf-8") == expected, "docs/report.md is stale: TUNEWISE_UPDATE_SNAPSHOTS=1"


def test_reports_render_in_every_format(monkeypatch):
    import json

    from advisor.report import render

    monkeypatch.chdir(ROOT)
    rec = _recommend(ROOT / "examples" / "answers" / "brand-voice-chatbot-24gb.yaml")
    out = json.loads(render(rec, "json"))
    for key in ("approach", "method", "stage", "model", "fired", "warnings", "candidates", "plan", "trace"):
        assert key in out
    assert len(out["trace"]) == len(rec.decision.trace)
    text = render(rec, "text")
    assert "tunewise recommendation" in text and "\x1b[" not in text
