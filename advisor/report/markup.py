"""Renderers for the report's sections: markdown text, and rich renderables for the terminal.

Both read the same `Section` list (advisor.report.build_sections), so the terminal and `report.md`
never disagree. Renderables are returned, not printed: only the Console writes.
"""

from __future__ import annotations

import re

from advisor.report.sections import Section

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")
_ITAL = re.compile(r"(?<![\w*])_(\(.+?\))_(?!\w)")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(sections: list[Section]) -> str:
    """`report.md`: one `##` heading per section under a `#` title."""
    out = ["# tunewise recommendation", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        out += [f"- {line}" for line in s.lines]
        if s.lines:
            out.append("")
        for done, text in s.checklist:
            box = "[x]" if done else "[ ]" if done is False else "[-]"
            out.append(f"- {box} {text}")
        if s.checklist:
            out.append("")
        if s.table:
            out.append("| " + " | ".join(s.table.header) + " |")
            out.append("|" + "|".join("---" for _ in s.table.header) + "|")
            for row in s.table.rows:
                out.append("| " + " | ".join(_md_cell(c) for c in row) + " |")
            out.append("")
        for line in s.after:
            out += [line, ""]
    return "\n".join(out).rstrip() + "\n"


def _rich(text: str):
    """Our tiny markup (**bold**, `code`, _(italic)_) as a rich Text, with user text escaped."""
    from rich.markup import escape
    from rich.text import Text

    t = escape(text)
    t = _BOLD.sub(r"[bold]\1[/bold]", t)
    t = _CODE.sub(r"[cyan]\1[/cyan]", t)
    t = _ITAL.sub(r"[dim]\1[/dim]", t)
    return Text.from_markup(t)


def renderables(sections: list[Section]) -> list:
    """Rich objects for the terminal: a panel for the recommendation, rules, tables, lists."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    out: list = []
    for s in sections:
        if s.key == "recommendation":
            out.append(
                Panel(
                    Group(*[_rich(line) for line in s.lines]),
                    title="[bold]tunewise recommendation",
                    title_align="left",
                    border_style="green",
                )
            )
            continue
        out.append(Text(""))
        out.append(Text(s.title, style="bold underline"))
        for line in s.lines:
            bullet = Text("• ")
            bullet.append_text(_rich(line))
            out.append(bullet)
        for done, text in s.checklist:
            box = Text(
                "[x] " if done else "[ ] " if done is False else "[-] ",
                style="green" if done else "yellow" if done is False else "dim",
            )
            box.append_text(_rich(text))
            out.append(box)
        if s.table:
            tbl = Table(show_lines=False, header_style="bold")
            last = len(s.table.header) - 1
            for i, h in enumerate(s.table.header):
                # the last column holds the prose (why / margin): it gets the room that is left
                tbl.add_column(h, overflow="fold", max_width=None if i == last else 34)
            for row in s.table.rows:
                cells = [_rich(c) for c in row]
                for c in cells:
                    if c.plain in ("does not fit",):
                        c.stylize("bold red")
                    elif c.plain == "fits":
                        c.stylize("green")
                tbl.add_row(*cells)
            out.append(tbl)
        for line in s.after:
            out.append(_rich(line).copy())
            out[-1].stylize("dim")
    return out
