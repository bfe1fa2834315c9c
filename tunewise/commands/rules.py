"""`tunewise rules [ID] [--format text|json] [--facts]`: the rules with what they do, why, and source.

Like `ruff rule CODE`: without an ID, one line per rule; with an ID (or a unique prefix such as
TW101), the full rule: what it does, why, its source in the guide, and an example.
"""

from __future__ import annotations

import json

import yaml


def add_parser(sub):
    p = sub.add_parser(
        "rules",
        help="list the decision rules, or show one with its why and source",
        description="Every recommendation comes from these rules (rules/*.yaml).",
    )
    p.add_argument("id", nargs="?", metavar="ID", help="a rule id or unique prefix, e.g. TW101")
    p.add_argument("--format", choices=["text", "json"], default="text", help="text or json (on stdout)")
    p.add_argument("--facts", action="store_true", help="list the facts (CEL variables) rules can read")
    return p


def _find(rules, key: str):
    from advisor.errors import UserError

    exact = [r for r in rules if r.id == key]
    matches = exact or [r for r in rules if r.id.lower().startswith(key.lower())]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UserError(f"no rule with id {key!r}", "run `tunewise rules` to list the ids")
    raise UserError(
        f"{key!r} matches {len(matches)} rules ({', '.join(r.id for r in matches[:5])}, ...)",
        "give more of the id",
    )


def rule_dict(r) -> dict:
    return {
        "id": r.id,
        "title": r.title,
        "when": " ".join(r.when.split()),
        "then": r.then,
        "priority": r.priority,
        "message": r.message,
        "why": r.why,
        "source": r.source,
        "examples": r.examples,
        "file": r.path,
        "layer": r.layer,
    }


def run(args) -> int:
    from advisor.facts import DECISION_DOCS, FACT_DOCS
    from advisor.rules import load_rules
    from advisor.thresholds import load_thresholds

    if args.facts:
        docs = {**FACT_DOCS, **DECISION_DOCS}
        if args.format == "json":
            print(json.dumps(docs, indent=2))
        else:
            for name, doc in docs.items():
                print(f"{name:28} {doc}")
        return 0
    rules = sorted(load_rules(), key=lambda r: r.id)
    if args.id:
        r = _find(rules, args.id)
        if args.format == "json":
            print(json.dumps(rule_dict(r), indent=2))
        else:
            print(_full_text(r, load_thresholds()))
        return 0
    if args.format == "json":
        print(json.dumps([{"id": r.id, "title": r.title, "source": r.source} for r in rules], indent=2))
        return 0
    width = max(len(r.id) for r in rules)
    for r in rules:
        print(f"{r.id:{width}}  {r.title}  [{r.source}]")
    print(f"\n{len(rules)} rules. `tunewise rules ID` shows one in full.")
    return 0


def _full_text(r, thresholds) -> str:
    used = [thresholds[n] for n in r.thresholds if n in thresholds]
    lines = [
        f"{r.id}: {r.title}",
        "",
        "## What it does",
        f"When: {' '.join(r.when.split())}",
        "Then: " + yaml.safe_dump(r.then, default_flow_style=True, sort_keys=False).strip(),
        f"Priority: {r.priority} (higher wins among recommendations; exclusions always win)",
        f"Says: {r.message}",
        "",
        "## Why",
        r.why,
        "",
        "## Example",
        "Fires with:         " + json.dumps(r.examples["fires"][0]),
    ]
    if r.examples["does_not_fire"]:
        lines.append("Does not fire with: " + json.dumps(r.examples["does_not_fire"][0]))
    if used:
        lines += ["", "## Thresholds"] + [f"t.{t.name} = {t.value:g}  ({t.note} [{t.source}])" for t in used]
    lines += [
        "",
        "## Source",
        r.source if r.source == "measurement" else f'Guide section "{r.source}"',
        f"File: rules/{r.path}",
    ]
    return "\n".join(lines)
