"""The report's building blocks: a `Section` (a heading, lines, an optional `Table`) and the small
formatters every part of the report shares. Pure data: nothing here renders or prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    """One heading of the report. `lines` use a small markup: **bold** and `code` only."""

    key: str
    title: str
    lines: list[str] = field(default_factory=list)
    table: Table | None = None
    after: list[str] = field(default_factory=list)  # lines printed below the table
    checklist: list[tuple[bool | None, str]] = field(default_factory=list)  # (done?, text)


def show_path(p: str | None) -> str:
    """A path relative to the working directory when it lies below it (stable across machines)."""
    if not p:
        return ""
    try:
        return str(Path(p).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)


def gib(x: float | None) -> str:
    return "?" if x is None else f"{x:,.1f}"
