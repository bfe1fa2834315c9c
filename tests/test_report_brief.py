"""The brief view (`recommend --brief`, the wizard's first screen): a selection of the full report.

Each persona's brief view is checked against the same recommendation's full markdown report, parsed
here: the decision, every warning, the chosen method's memory verdict, the plan values and the rules
it shows must all be the full report's, and the whole must fit about one screen.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_report import make_rec

from advisor.answers import GPUAnswer, load_answers
from advisor.report import APPROACH_WORDS, METHOD_WORDS, STAGE_WORDS, render
from advisor.report.brief import BRIEF_PLAN_ROWS, brief_rules, render_brief, short_id
from advisor.report.plan_table import plan_rows
from tunewise.cli import main

ROOT = Path(__file__).resolve().parents[1]
PERSONAS = sorted((ROOT / "examples" / "answers").glob("*.yaml"))
MAX_LINES = 30  # one screen at width 100


def _recommend(path: Path, gpus: bool = True):
    from advisor.recommend import recommend

    answers = load_answers(path)
    if gpus and answers.gpus is None:
        answers = answers.model_copy(
            update={"gpus": [GPUAnswer(name="NVIDIA GeForce RTX 4090", memory_gib=24)]}
        )
    return recommend(answers, detect_gpus=False)


def _section(md: str, title: str) -> list[str]:
    """The lines of one `## title` section of the markdown report."""
    body = md.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in body.splitlines() if line.strip()]


def _flat(text: str) -> str:
    """Whitespace collapsed, so a warning wrapped over two lines still reads as one string."""
    return " ".join(text.split())


def _unmark(text: str) -> str:
    return re.sub(
        r"\*\*|`|_\(|\)_", lambda m: "(" if m.group() == "_(" else ")" if m.group() == ")_" else "", text
    )


CASES = [(p.stem, p, True) for p in PERSONAS] + [
    ("demo-no-gpu", ROOT / "examples" / "demo" / "answers.yaml", False)
]


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def persona(request):
    import os

    name, path, gpus = request.param
    old = Path.cwd()
    os.chdir(ROOT)  # paths in both views are shown relative to the working directory
    try:
        rec = _recommend(path, gpus)
        return name, rec, render(rec, "markdown"), render_brief(rec)
    finally:
        os.chdir(old)


def test_fits_one_screen(persona):
    name, _, _, brief = persona
    lines = brief.splitlines()
    assert len(lines) <= MAX_LINES, (name, len(lines))
    assert max(map(len, lines)) <= 100


def test_states_the_decision(persona):
    _, rec, _, brief = persona
    d = rec.decision
    head = brief.split("Why —")[0].replace("│", " ")  # the panel's borders
    assert APPROACH_WORDS[d.approach] in head
    if d.method:
        assert METHOD_WORDS[d.method] in head
    if d.stage:
        assert STAGE_WORDS[d.stage] in head
    for problem in rec.problems:  # a forced method that does not fit is said up front
        assert _flat(problem) in _flat(head)


def test_every_warning_of_the_full_report_is_there(persona):
    name, _, md, brief = persona
    warnings = [line[2:] for line in _section(md, "Warnings")]
    shown = brief.split("\nWarnings (")[1]
    if warnings == ["None."]:
        assert shown.startswith("0)") and "None." in shown
        return
    assert shown.startswith(f"{len(warnings)})"), name
    for w in warnings:
        rule = re.match(r"`([^`]+)` — ", w)
        if rule:  # a rule's warning: its id and the guide source on one line
            rid = short_id(rule.group(1))
            source = re.search(r"_\((.+)\)_$", w).group(1)
            assert any(rid in line and source in line for line in shown.splitlines()), (name, w)
        else:  # anything else: the whole text, never cut
            assert _flat(_unmark(w)) in _flat(shown), (name, w)


def test_chosen_method_memory_line_is_the_tables(persona):
    name, rec, md, brief = persona
    if not rec.decision.method or not rec.decision.candidates:
        assert "Memory per GPU" in brief
        return
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in _section(md, "Estimated peak memory per method")
        if line.startswith("| ") and "(chosen)" in line
    ]
    assert len(rows) == 1, name
    label, shape, _peak, device, gpu, fit, margin = rows[0]
    line = next(x for x in brief.splitlines() if x.strip().startswith(label + ":"))
    assert device in line and shape in line, (name, line)
    if fit == "no GPU":
        assert "no GPU" in line
    else:
        assert f"{fit} —" in line and f"of {gpu} GiB" in line and margin in line, (name, line)
    others = [r for r in rec.decision.candidates if r != rec.decision.method]
    if others:
        other_line = next(x for x in brief.splitlines() if x.strip().startswith("Others:"))
        assert other_line.count(";") == len(others) - 1 and other_line.count(" GiB") == len(others)


def test_plan_values_are_the_full_reports(persona):
    name, rec, md, brief = persona
    if rec.plan is None:
        assert "No training plan" in brief
        return
    table = {}
    for line in _section(md, "Training plan"):
        if line.startswith("| ") and not line.startswith("| Setting"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            table[cells[0]] = cells
    plan = brief.split("\nPlan\n")[1].split("\nWarnings (")[0].splitlines()
    assert 5 <= len(plan) <= 9, name
    for setting in ("Sequences per optimizer step", "Tokens per optimizer step", "Learning rate", "Epochs"):
        line = next(x for x in plan if x.strip().startswith(setting))
        value = _unmark(table[setting][1])
        assert f"{setting} " in line and f" {value} " in line + " ", (name, line)
    # the arithmetic is the full report's, not a second computation
    seq = next(x for x in plan if x.strip().startswith("Sequences per optimizer step"))
    arithmetic = table["Sequences per optimizer step"][2]
    assert arithmetic.split(" (")[0] in seq
    if rec.plan.lora:
        assert any(
            "LoRA rank / alpha" in x and f"{rec.plan.lora.r} / {rec.plan.lora.alpha}" in x for x in plan
        )


def test_rules_shown_are_deciding_rules_of_the_full_report(persona):
    name, rec, md, brief = persona
    why = "\n".join(_section(md, "Why"))
    block = brief.split("\nWhy — ")[1].split("\nMemory per GPU")[0].splitlines()[1:]
    picked, n_deciding = brief_rules(rec)
    assert len(block) == len(picked) and 1 <= len(picked) <= 5, name
    assert len(picked) == min(5, n_deciding)
    assert {dim for dim, _ in picked} == {
        dim for dim in ("approach", "method", "stage") if f"**{dim.capitalize()}**" in why
    }
    for line, (dim, rule) in zip(block, picked, strict=True):
        assert f"**{dim.capitalize()}**: `{rule.id}`" in why, (name, rule.id)
        assert line.split()[:2] == [dim, short_id(rule.id)], (name, line)
        assert line.rstrip().endswith(rule.source), (name, line)  # the guide source is never cut


def test_plan_rows_kept_by_the_brief_view_still_exist():
    """The brief view picks plan rows by their label: a renamed row must fail here, not vanish."""
    rec = make_rec(method="qlora")
    labels = [row[0] for row in plan_rows(rec.plan, None, 2500)[0]]
    for name in (
        "Sequences per optimizer step",
        "Tokens per optimizer step",
        "Max sequence length",
        "Learning rate",
        "Epochs",
        "Total steps",
        "LoRA rank / alpha",
    ):
        assert name in BRIEF_PLAN_ROWS and any(label.startswith(name) for label in labels), name


def test_a_dropped_warning_would_be_caught():
    """Many warnings, long ones, at a narrow width: every one is there, whole, each starting its line."""
    rec = make_rec()
    long = (
        "The dataset has 41 duplicated rows and 3 rows longer than the maximum sequence length; "
        "they will be truncated, which can cut the answers the model should learn"
    )
    rec.decision.warnings += ["Second engine warning.", long]
    from advisor.data.report import DataReport

    rec.facts.data = DataReport(
        path=None, format="messages", rows=10, warnings=["Data warning: 12 empty responses."]
    )
    for width in (100, 70):
        brief = render_brief(rec, width=width)
        shown = brief.split("\nWarnings (")[1]
        assert shown.startswith("4)")  # the rule's, two more of the engine's, the data's
        assert "no-prompting-yet" in shown  # the rule's warning, by its id
        for text in ("Second engine warning.", long, "Data warning: 12 empty responses."):
            assert _flat(text) in _flat(shown), (width, text)
            assert any(re.match(r"\s*!\s+" + text.split()[0], line) for line in shown.splitlines())
        # the engine's copy of a rule's warning is said once, under the rule
        assert "You have not tried prompting yet." not in shown


def test_no_gpu_and_no_training_are_said_not_crashed():
    brief = render_brief(make_rec(gpus_gib=()))
    assert "GPUs: none (no driver)" in brief and "no GPU to check against" in brief
    rag = render_brief(make_rec(approach="rag"))
    assert "retrieval-augmented generation" in rag and "No training plan" in rag
    assert "No memory estimates: no training is recommended." in rag


def test_the_last_line_says_where_the_full_report_is():
    assert render_brief(make_rec()).splitlines()[-1].startswith("Full report: tunewise recommend --answers")
    assert (
        render_brief(make_rec(), "Full report: runs/x/report.md").splitlines()[-1]
        == "Full report: runs/x/report.md"
    )


def test_recommend_brief_cli(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    answers = str(PERSONAS[0].relative_to(ROOT))
    assert main(["recommend", "--answers", answers, "--no-detect", "--brief"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("╭─ tunewise recommendation (brief)") and len(out.splitlines()) <= MAX_LINES
    assert out.splitlines()[-1] == f"Full report: tunewise recommend --answers {answers}"
    # with --out the run directory is written first and the view points at its report.md
    monkeypatch.chdir(tmp_path)
    assert main(["recommend", "--answers", str(PERSONAS[0]), "--no-detect", "--brief", "--out", "run"]) == 0
    captured = capsys.readouterr()
    assert "wrote run" in captured.err and (tmp_path / "run" / "report.md").is_file()
    assert _flat(captured.out).endswith(
        f"Full report: run/report.md, or tunewise recommend --answers {PERSONAS[0]}"
    )


@pytest.mark.parametrize("fmt", ["markdown", "json"])
def test_recommend_brief_is_text_only(capsys, fmt):
    rc = main(["recommend", "--answers", str(PERSONAS[0]), "--no-detect", "--brief", "--format", fmt])
    err = capsys.readouterr().err
    assert rc == 2 and f"--brief works with --format text only, not --format {fmt}" in err
    assert "Traceback" not in err


DOC = ROOT / "docs" / "report-brief.md"
DOC_PERSONA = "code-patterns-colab-t4"


def test_docs_sample_is_the_current_brief_view(capsys, monkeypatch):
    """docs/report-brief.md shows real output: regenerate with TUNEWISE_UPDATE_SNAPSHOTS=1."""
    import os

    monkeypatch.chdir(ROOT)
    answers = f"examples/answers/{DOC_PERSONA}.yaml"
    assert main(["recommend", "--answers", answers, "--no-detect", "--brief"]) == 0
    out = capsys.readouterr().out
    doc = DOC.read_text(encoding="utf-8")
    head, rest = doc.split("```text\n", 1)
    sample, tail = rest.split("```\n", 1)
    assert f"`tunewise recommend --answers {answers} --brief`" in head
    if os.environ.get("TUNEWISE_UPDATE_SNAPSHOTS") == "1":
        DOC.write_text(f"{head}```text\n{out}```\n{tail}", encoding="utf-8")
        return
    assert sample == out, "docs/report-brief.md is stale: TUNEWISE_UPDATE_SNAPSHOTS=1"
