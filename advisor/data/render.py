"""The terminal view of a `DataReport`: pure renderables (only the caller's Console writes)."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from advisor.data.report import INVALID_KINDS, DataReport

SHOWN_PER_KIND = 3  # problems listed per kind; `--format json` has them all (up to the cap)
_BAR = 40
_TOKEN_KINDS = ("truncated", "zero-trainable", "chat-template")  # counted on the token sample only


def render(r: DataReport) -> RenderableType:
    """Counts, the token-length histogram, the first problems of each kind, the verdict."""
    parts: list[RenderableType] = [_header(r), _counts(r)]
    if r.token_stats:
        parts += [Text(""), _tokens(r)]
    problems = _problems(r)
    if problems is not None:
        parts += [Text(""), problems]
    if r.warnings:
        parts.append(Text(""))
        parts += [Text(f"! {w}", style="yellow") for w in r.warnings]
    parts += [Text(""), _verdict(r)]
    return Group(*parts)


def _header(r: DataReport) -> Text:
    t = Text(f"Data pre-flight: {r.path}", style="bold")
    if r.format:
        norm = f" (trains as {r.normalized_format})" if r.normalized_format != r.format else ""
        t.append(f"\nformat: {r.format}{norm}")
    return t


def _counts(r: DataReport) -> Table:
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="dim")
    t.add_column(justify="right")
    t.add_row("rows", f"{r.rows:,}")
    t.add_row("valid", f"{r.valid:,}")
    t.add_row("invalid", f"{r.invalid_count:,}")
    t.add_row("exact duplicates", f"{r.duplicates:,}")
    t.add_row("near-duplicates", f"{r.near_duplicates:,}")
    # Rows that keep no trainable token at max_length make data unusable even when the split keeps them.
    t.add_row("usable for training", f"{r.trainable_rows:,}" if r.usable or not r.usable_rows else "0")
    if r.zero_trainable_rows and r.usable:
        t.add_row("left out at max_length", f"{r.zero_trainable_rows:,} (no trainable token)")
    if r.format == "preference":
        t.add_row("preference pairs", f"{r.preference_rows:,}")
    if r.label_column:
        t.add_row("stratify on", f"{r.label_column} ({r.labels} values)")
    if r.validation_path:
        t.add_row("validation rows", f"{r.validation_valid:,} valid of {r.validation_rows:,}")
        t.add_row("leaked into validation", f"{r.leaked_rows:,}")
    return t


def _tokens(r: DataReport) -> Group:
    st = r.token_stats
    sample = f", sample of {r.token_sample:,}" if r.token_sample else ""
    lines: list[RenderableType] = [
        Text(
            f"Token lengths ({r.tokenizer}{sample}): p50 {st['p50']:,}  p95 {st['p95']:,}  "
            f"max {st['max']:,}  mean {st['mean']:,}",
            style="bold",
        )
    ]
    top = max(b["count"] for b in r.token_histogram) or 1
    for b in r.token_histogram:
        bar = "█" * round(_BAR * b["count"] / top)
        if b["count"] and not bar:
            bar = "▏"
        over = r.max_length is not None and b["hi"] > r.max_length
        lines.append(
            Text(f"{b['lo']:>7,}–{b['hi']:<7,} {bar:<{_BAR}} {b['count']:,}", style="red" if over else "")
        )
    if r.recommended_max_length:
        lines.append(Text(f"recommended max_length: {r.recommended_max_length:,}", style="bold green"))
        lines.append(Text(f"  {r.max_length_reason}", style="dim"))
    if r.max_length is not None:
        lines.append(
            Text(
                f"at max_length {r.max_length:,}: {r.truncated_rows:,} rows truncated"
                + (f" ({r.truncated_tokens:,} tokens lost)" if r.truncated_tokens else "")
                + f", {r.zero_trainable_rows:,} with no trainable tokens"
            )
        )
    return Group(*lines)


def _problems(r: DataReport) -> RenderableType | None:
    if not r.findings:
        return None
    by_kind: dict[str, list] = {}
    for f in r.findings:
        by_kind.setdefault(f.kind, []).append(f)
    t = Table(title="Problems (first few of each kind)", title_justify="left", show_lines=False)
    t.add_column("kind")
    t.add_column(r.unit, justify="right")
    t.add_column("what")
    for kind in sorted(by_kind, key=lambda k: (k not in INVALID_KINDS, k)):
        count = r.finding_counts.get(kind, len(by_kind[kind]))
        of = " in sample" if r.token_sample and kind in _TOKEN_KINDS else ""
        style = "red" if kind in INVALID_KINDS else "yellow"
        for i, f in enumerate(by_kind[kind][:SHOWN_PER_KIND]):
            label = Text(f"{kind} ({count:,}{of})" if i == 0 else "", style=style)
            t.add_row(label, str(f.line) if f.line else "-", f.message)
    return t


def _verdict(r: DataReport) -> Text:
    if r.usable:
        return Text(f"usable: {r.trainable_rows:,} rows to train on", style="bold green")
    return Text("unusable: no rows to train on", style="bold red")
