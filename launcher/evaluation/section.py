"""Where people look: the Evaluation section of the run's report.md, and the same table for the terminal."""

from __future__ import annotations

import re
from pathlib import Path

from advisor.task_metrics import label
from launcher.evaluation.verdict import fmt_ci
from launcher.rundir import atomic_write

BEGIN, END = "<!-- tunewise:evaluation -->", "<!-- /tunewise:evaluation -->"
SYSTEM_LABELS = {
    "latency_p50_s": "latency p50 (s)",
    "latency_p95_s": "latency p95 (s)",
    "tokens_per_s": "tokens/s",
    "peak_memory_gib": "peak memory (GiB)",
    "output_tokens_mean": "output tokens (mean)",
}


def _cell(m: dict | None) -> str:
    if not m:
        return "—"
    return f"{m['value']:.2f} ({fmt_ci(m['ci'])})"


def _md(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    if len(text) > limit:  # keep the start and the end: the question usually sits at the end of a prompt
        head = limit // 3
        text = text[:head] + " … " + text[-(limit - head - 3) :]
    return text.replace("|", "\\|") or "(empty)"


def table_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per model, one column per task metric (value and CI), then system metrics."""
    metrics = result["task_metrics"]
    header = ["model"] + [label(m) for m in metrics] + [SYSTEM_LABELS[s] for s in SYSTEM_LABELS]
    rows = []
    for m in result["models"].values():
        sys_ = m.get("system", {})
        rows.append(
            [m["label"]]
            + [_cell(m["metrics"].get(x)) for x in metrics]
            + ["—" if sys_.get(s) is None else f"{sys_[s]:g}" for s in SYSTEM_LABELS]
        )
    return header, rows


def markdown(result: dict) -> str:
    pct = f"{result['confidence']:.0%}"
    lines = [
        BEGIN,
        "## Evaluation",
        "",
        f"**Verdict:** {result['verdict']['text']}.",
        "",
        f"Held-out split: {result['n_examples']} examples (of {result['n_available']}), "
        f"{result['few_shot']}-shot prompts from the training split, greedy decoding; "
        f"{pct} intervals from a paired bootstrap ({result['resamples']} resamples, seed {result['seed']}). "
        f"Evaluation took {result['wall_s']:.0f} s.",
        "",
    ]
    if result.get("code_tests"):
        lines += [f"The data's tests: {result['code_tests']['note']}.", ""]
    header, rows = table_rows(result)
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += [
        "",
        "Differences (paired):",
        "",
        "| comparison | metric | difference | " + pct + " CI |",
        "|---|---|---|---|",
    ]
    models = result["models"]
    for c in result["comparisons"]:
        lines.append(
            f"| {models[c['a']]['label']} vs {models[c['b']]['label']} | {label(c['metric'])} | "
            f"{c['diff']:+.2f} | {fmt_ci(c['ci'], signed=True)} |"
        )
    plots = result.get("plots") or {}
    if plots:
        lines += [""] + [f"![{name}]({path})" for name, path in plots.items()]
    if result["examples"]:
        keys = list(models)
        lines += [
            "",
            "Held-out examples side by side:",
            "",
            "| prompt | reference | " + " | ".join(models[k]["label"] for k in keys) + " |",
            "|" + "---|" * (2 + len(keys)),
        ]
        for ex in result["examples"]:
            lines.append(
                f"| {_md(ex['prompt'])} | {_md(ex['reference'])} | "
                + " | ".join(_md(ex["outputs"].get(k, "")) for k in keys)
                + " |"
            )
    lines += ["", END, ""]
    return "\n".join(lines)


def update_report(run_dir: Path, result: dict) -> None:
    """Put the section into report.md (replacing an earlier one), atomically; create the file if missing."""
    path = run_dir / "report.md"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        text = ""
    section = markdown(result)
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section
    atomic_write(path, text)


def terminal(result: dict):
    """A rich renderable: one column per model (narrow enough for a terminal), the verdict below."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    models = result["models"]
    table = Table(
        title=f"Evaluation on {result['n_examples']} held-out examples ({result['confidence']:.0%} CI)"
    )
    table.add_column("metric")
    for m in models.values():
        table.add_column(m["label"], justify="right")
    for metric in result["task_metrics"]:
        table.add_row(label(metric), *[_cell(m["metrics"].get(metric)) for m in models.values()])
    for key, name in SYSTEM_LABELS.items():
        table.add_row(
            name,
            *[
                "—" if m.get("system", {}).get(key) is None else f"{m['system'][key]:g}"
                for m in models.values()
            ],
            style="dim",
        )
    parts = [table]
    if result["examples"]:
        side = Table(title="Held-out examples side by side", show_lines=True)
        for name in ["prompt", "reference", *(m["label"] for m in models.values())]:
            side.add_column(name, overflow="fold")
        for ex in result["examples"]:
            side.add_row(
                _md(ex["prompt"], 80).replace("\\|", "|"),
                _md(ex["reference"], 60).replace("\\|", "|"),
                *[_md(ex["outputs"].get(k, ""), 60).replace("\\|", "|") for k in models],
            )
        parts.append(side)
    parts.append(Text(f"Verdict: {result['verdict']['text']}.", style="bold"))
    return Group(*parts)
