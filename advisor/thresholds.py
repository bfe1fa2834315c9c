"""The numbers the rules use (`rules/thresholds.yaml`), each with its source, and where the shipped
rules folder is. Read by the rules loader and by facts; imports neither."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from advisor.errors import UserError

GUIDE_SECTIONS = (
    "When to Fine-Tune Versus Alternative Approaches",
    "Essential Parameter-Efficient Fine-Tuning Methods",
    "Modern Alignment and Instruction Tuning",
    "Data Preparation Best Practices",
    "Avoiding Critical Pitfalls",
    "Practical Tools and Getting Started",
    "Your Learning Path",
)
SOURCES = GUIDE_SECTIONS + ("measurement",)


@dataclass(frozen=True)
class Threshold:
    name: str
    value: float
    source: str
    note: str


def rules_root() -> Path:
    """The shipped rules folder (package data `advisor._rules`)."""
    return Path(str(resources.files("advisor._rules")))


def load_thresholds(path: str | Path | None = None) -> dict[str, Threshold]:
    p = Path(path) if path else rules_root() / "thresholds.yaml"
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as e:
        raise UserError(
            f"{p}: cannot read thresholds ({type(e).__name__})", "restore rules/thresholds.yaml"
        ) from None
    problems, out = [], {}
    if not isinstance(data, dict):
        raise UserError(f"{p}: expected a mapping of threshold names", "see docs/rules.md")
    for name, entry in data.items():
        if not isinstance(entry, dict) or set(entry) != {"value", "source", "note"}:
            problems.append(f"{p.name}: '{name}' needs exactly the keys value, source, note")
            continue
        val = entry["value"]
        if isinstance(val, bool) or not isinstance(val, int | float):
            problems.append(f"{p.name}: '{name}'.value must be a number (got {val!r})")
            continue
        if entry["source"] not in SOURCES:
            problems.append(
                f"{p.name}: '{name}'.source {entry['source']!r} is not a guide section or 'measurement'"
            )
        out[name] = Threshold(name, float(val), entry["source"], str(entry["note"]))
    if problems:
        raise UserError(
            f"{len(problems)} problem(s) in thresholds:\n  - " + "\n  - ".join(problems),
            "fix rules/thresholds.yaml (see docs/rules.md)",
        )
    return out


def threshold_values(thresholds: dict[str, Threshold]) -> dict[str, float]:
    return {k: t.value for k, t in thresholds.items()}
