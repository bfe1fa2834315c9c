"""The brief view of a recommendation: about one screen, for the wizard and `recommend --brief`.

A selection from the full report, never a second analysis: every sentence comes from the helpers
that build the full report (`advisor.report`, `advisor.report.plan_table`): the decision words, the rules
that decided it (their titles and guide sources), the chosen method's memory verdict and the other
candidates', the plan values that matter most with their arithmetic, and every warning. What is
left out (the full trace, ruled-out options, the whole plan, evaluation, checklist, suggestions,
sources) is one command or one file away, and the last line says where.

Public interface: `brief_renderables(rec, where)`, `print_brief(console, rec, where)`,
`render_brief(rec, where, width)`; the selections `brief_rules(rec)`, `brief_plan_rows(rec)`,
`BRIEF_PLAN_ROWS`.
"""

from __future__ import annotations

import re
from typing import Any

from advisor.report.full import (
    _DECISIVE,
    APPROACH_WORDS,
    METHOD_WORDS,
    STAGE_WORDS,
    _examples,
    _plan,
    deciding_rules,
    gpu_line,
    memory_rows,
    model_name,
    no_memory_line,
    warning_items,
)
from advisor.report.markup import _rich
from advisor.report.plan_table import plan_rows

MAX_RULES = 5
# Training-plan rows the brief view keeps (by the start of their "Setting" label), in this order.
BRIEF_PLAN_ROWS = (
    "Sequences per optimizer step",
    "Tokens per optimizer step",
    "Max sequence length",
    "Learning rate",
    "Epochs",
    "Total steps",
    "Optimizer steps",
    "LoRA rank / alpha",
    "Spectrum",
    "DPO",
)
DEFAULT_WHERE = "Full report: `tunewise recommend --answers FILE`"
_RULE_REF = re.compile(r"\[(TW\d+)[\w-]*; ([^\]]+)\]")  # how plan reasons cite a rule: [TW500-...; Source]
_RULE_ID = re.compile(r"\b(TW\d+)")


def short_id(rule_id: str) -> str:
    """`TW103-enough-examples-clear-task` -> `TW103` (ids are unique by number); other ids as they are."""
    m = re.match(r"(TW\d+)-", rule_id)
    return m.group(1) if m else rule_id


def _chose(rule, dim: str) -> bool:
    """Whether the rule recommends or prefers a value for `dim` (rather than only excluding one)."""
    then = rule.then if isinstance(rule.then, dict) else {}
    return any(isinstance(then.get(v), dict) and dim in then[v] for v in ("recommend", "prefer"))


def brief_rules(rec, limit: int = MAX_RULES) -> tuple[list[tuple[str, Any]], int]:
    """Up to `limit` of the rules that decided the approach, method and stage: one per dimension first
    (rules that chose a value before rules that excluded one), then more in the same order.
    Returns ([(dimension, rule)] in report order, how many deciding rules there were)."""
    decided, _ = deciding_rules(rec)
    queues = {
        dim: sorted((r for d, r in decided if d == dim), key=lambda r, d=dim: not _chose(r, d))
        for dim in _DECISIVE
    }
    picked: list[tuple[str, Any]] = []
    while len(picked) < limit and any(queues.values()):
        for dim in _DECISIVE:
            if queues[dim] and len(picked) < limit:
                picked.append((dim, queues[dim].pop(0)))
    order = {id(r): i for i, (_, r) in enumerate(decided)}
    picked.sort(key=lambda item: (_DECISIVE.index(item[0]), not _chose(item[1], item[0]), order[id(item[1])]))
    return picked, len(decided)


def _decision_lines(rec) -> list[str]:
    d = rec.decision
    words = [APPROACH_WORDS.get(d.approach, d.approach)]
    if d.method:
        words.append(METHOD_WORDS.get(d.method, d.method))
    if d.stage:
        words.append(STAGE_WORDS.get(d.stage, d.stage))
    lines = ["**Decision:** " + " · ".join(words)]
    name = model_name(rec)
    if name and rec.facts.gpus:
        lines.append(f"**Model:** `{name}` on {gpu_line(rec)}")
    else:
        lines += ([f"**Model:** `{name}`"] if name else []) + [f"**GPUs:** {gpu_line(rec)}"]
    lines += [f"**Problem:** {p}" for p in rec.problems]
    return lines


def _memory_lines(rec) -> list[str]:
    """The chosen method's verdict with its margin and shape; every other candidate on one line."""
    rows = memory_rows(rec)
    if not rows:
        return [no_memory_line(rec)]
    if not rec.facts.gpus:  # nothing to hold the estimates against: the figures alone
        lines = [
            f"{r.label}: {r.device} GiB at {r.shape} ({r.fit} to check against)" for r in rows if r.chosen
        ]
        others = [f"{r.label} {r.device} GiB" for r in rows if not r.chosen]
    else:
        lines = [
            f"{r.label}: **{r.fit}** — {r.device} of {r.gpu} GiB at {r.shape}, {r.margin}"
            for r in rows
            if r.chosen
        ]
        # a fit is enough for the others; a misfit says by how much
        others = [
            f"{r.label} {r.fit} ({r.margin if r.fit == 'does not fit' else r.device + ' GiB'})"
            for r in rows
            if not r.chosen
        ]
    if others:
        lines.append(("Others: " if lines else "No method chosen; estimates: ") + "; ".join(others))
    return lines + _time_lines(rec)


def _time_lines(rec) -> list[str]:
    """The run's predicted time and cost beside the memory verdict (or why they are unknown)."""
    from advisor.throughput.forecast import cost_text, time_range

    plan = rec.plan
    if plan is None:
        return []
    sp = plan.speed
    if sp is None:
        return [f"Time: unknown ({plan.reasons.get('speed', 'no forecast').removeprefix('time unknown: ')})"]
    cost = cost_text(sp)
    return [
        f"Time: **{time_range(sp.run_s)}** on {sp.n_gpus} × {sp.gpu}; cost "
        + (
            cost.split(" at ", 1)[0]
            + f" at ${sp.usd_per_gpu_hour:,.2f}/GPU-hour ("
            + (
                "yours"
                if sp.price_source == "gpu_hour_price in the answers"
                else "a dated market midpoint, not a quote"
            )
            + ")"
            if cost
            else "unknown (set `gpu_hour_price`)"
        )
    ]


def _plan_note(why: str) -> str:
    """The plan row's arithmetic as it is, or, for a value a rule set, that rule's id and guide source."""
    cited = _RULE_REF.findall(why)
    if cited:
        return "set by " + "; ".join(f"{rid} ({src})" for rid, src in dict(cited).items())
    ids = list(dict.fromkeys(_RULE_ID.findall(why)))
    return f"set by {', '.join(ids)}" if ids else why


def brief_plan_rows(rec) -> list[tuple[str, str, str]]:
    """(setting, value, arithmetic or the rule that set it) for the plan values the brief view keeps."""
    if rec.plan is None:
        return []
    rows, _ = plan_rows(rec.plan, rec.facts.data, _examples(rec))
    out = []
    for name in BRIEF_PLAN_ROWS:
        for setting, value, why in rows:
            if setting.startswith(name):
                out.append((setting, value, _plan_note(why)))
    return out


def brief_renderables(rec, where: str | None = None, width: int = 100) -> list:
    """Rich objects for the brief view, laid out for `width` columns; `where` is the last line, saying
    where the full report is."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    def heading(text: str):
        return Text(text, style="bold underline")

    def grid(*columns: dict) -> Table:
        t = Table.grid(padding=(0, 1))
        t.add_column(width=1)  # indent
        for c in columns:
            t.add_column(**c)
        return t

    def fixed(texts, **style) -> dict:
        """A column that is never cut or wrapped (labels, ids)."""
        return {"no_wrap": True, "min_width": max((len(t) for t in texts), default=1), **style}

    def source_column(sources, used: int) -> dict:
        """Guide sources stay whole and on one line while `used` columns leave the text 16 of its own;
        on a narrower terminal they wrap rather than squeeze the text to nothing."""
        longest = max((len(x) for x in sources), default=1)
        room = width - used - 16
        return {"style": "dim", "min_width": min(longest, max(room, 8)), "no_wrap": room >= longest}

    def one_line(text) -> Text:
        """A cell cut with an ellipsis at the column's width (its column gives way first)."""
        t = _rich(text) if isinstance(text, str) else text
        t.no_wrap, t.overflow = True, "ellipsis"
        return t

    out: list = [
        Panel(
            Group(*[_rich(line) for line in _decision_lines(rec)]),
            title="[bold]tunewise recommendation (brief)",
            title_align="left",
            border_style="green",
        )
    ]
    picked, n_deciding = brief_rules(rec)
    fired = sum(r.status == "fired" for r in rec.decision.trace)
    shown = (
        f"{len(picked)} of the {n_deciding} rules that decided it"
        if n_deciding > len(picked)
        else "the rules that decided it"
    )
    out.append(heading(f"Why — {shown} ({fired} of {len(rec.decision.trace)} rules fired)"))
    if picked:
        dims, ids = [d for d, _ in picked], [short_id(r.id) for _, r in picked]
        used = 2 + max(map(len, dims)) + max(map(len, ids)) + 4  # indent, columns and the gaps between
        rules = grid(
            fixed(dims, style="bold"),
            fixed(ids, style="cyan"),
            {"ratio": 1, "min_width": 16},
            source_column([r.source or "" for _, r in picked], used),
        )
        for dim, r in picked:  # id and source are never cut; a long title is
            rules.add_row("", dim, short_id(r.id), one_line(r.title or r.message), r.source or "")
        out.append(rules)
    else:
        out.append(Text("  No rule decided the approach."))

    out.append(heading("Memory per GPU (device GiB at micro-batch × sequence length)"))
    for line in _memory_lines(rec):
        out.append(Text("  ") + _rich(line))

    out.append(heading("Plan"))
    rows = brief_plan_rows(rec)
    if rows:
        plan = grid({"no_wrap": True}, {"no_wrap": True, "style": "bold"}, {"ratio": 1, "style": "dim"})
        for setting, value, note in rows:
            plan.add_row("", setting, _rich(value), one_line(note))
        out.append(plan)
    else:
        out += [Text("  ") + _rich(line) for line in _plan(rec).lines]

    rules_w, others_w = warning_items(rec)
    out.append(heading(f"Warnings ({len(rules_w) + len(others_w)})"))
    if rules_w or others_w:
        # never cut: a warning too long for the line wraps inside its column
        mark = fixed([short_id(r.id) for r in rules_w], style="yellow")
        if rules_w:
            warn = grid(
                mark,
                {"ratio": 1, "min_width": 16},
                source_column([r.source or "" for r in rules_w], 2 + mark["min_width"] + 3),
            )
            for r in rules_w:  # the title says it in one line; the message is in the full report
                warn.add_row("", short_id(r.id), _rich(r.title or r.message), r.source or "")
            out.append(warn)
        if others_w:  # the engine's and the data's own warnings have no title: their whole text
            other = grid(mark, {"ratio": 1})
            for text in others_w:
                other.add_row("", "!", _rich(text))
            out.append(other)
    else:
        out.append(Text("  None."))
    out.append(_rich(where or DEFAULT_WHERE))
    return out


def print_brief(console, rec, where: str | None = None) -> None:
    """Print the brief view to a rich Console."""
    for r in brief_renderables(rec, where, console.width):
        console.print(r)


def render_brief(rec, where: str | None = None, width: int = 100) -> str:
    """The brief view as plain text, `width` columns (what `recommend --brief` prints)."""
    import io

    from rich.console import Console

    buf = io.StringIO()
    print_brief(
        Console(file=buf, width=width, color_system=None, force_terminal=False, legacy_windows=False),
        rec,
        where,
    )
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"
