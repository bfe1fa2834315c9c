"""Rule files: load `rules/**/*.yaml` (one rule per file) and `rules/thresholds.yaml`, and validate.

Validation collects every problem in every file and raises one `UserError` listing them all:
unknown or missing keys, CEL that does not compile, fact or threshold names that do not exist,
`then` effects the engine does not know, numeric literals where a threshold belongs.
The schema of a rule file is documented in docs/rules.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from advisor.errors import UserError
from advisor.facts import DECISION_DOCS, FACT_DOCS
from advisor.plan import DataSpec, DPOSpec, LoraSpec, QuantSpec, SpectrumSpec, TrainingPlan
from advisor.thresholds import GUIDE_SECTIONS, SOURCES, Threshold, load_thresholds, rules_root

OPTIONS = {
    "approach": ("prompting", "rag", "fine-tune", "rag+fine-tune"),
    "method": ("lora", "qlora", "spectrum", "full"),
    "stage": ("sft", "dpo", "sft+dpo"),
}
REQUIRED_KEYS = ("id", "title", "when", "then", "message", "why", "source", "examples")
OPTIONAL_KEYS = ("priority",)
THEN_KEYS = ("recommend", "exclude", "warn", "suggest", "note", "set", "eval")
NOT_RULE_FILES = ("thresholds.yaml", "models.yaml", "gpus.yaml", "throughput.yaml")  # data beside the rules
ID_RE = re.compile(r"^TW\d{3}-[a-z0-9]+(-[a-z0-9]+)*$")
THRESHOLD_REF = re.compile(r"\bt\.([A-Za-z_][A-Za-z0-9_]*)")
NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w])")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")
# Decision variables by evaluation layer (see engine.py): rules reading them run after they are set.
LAYER_OF = {"approach": 1, "fine_tuning": 1, "method": 2, "stage": 2}


@dataclass
class Rule:
    """One validated rule. `layer` says when the engine can evaluate it (0: facts only;
    1: after the approach is decided; 2: after method and stage)."""

    id: str
    title: str
    when: str
    then: dict
    message: str
    why: str
    source: str
    examples: dict
    priority: int = 0
    path: str = ""
    variables: tuple[str, ...] = ()
    thresholds: tuple[str, ...] = ()
    layer: int = 0
    program: Any = field(default=None, repr=False, compare=False)


def _plan_fields() -> set[str]:
    """Plan fields a rule may `set`: top-level scalars and dotted sub-section fields."""
    subs = {
        "lora": LoraSpec,
        "quantization": QuantSpec,
        "spectrum": SpectrumSpec,
        "dpo": DPOSpec,
        "data": DataSpec,
    }
    names = {
        f.name for f in fields(TrainingPlan) if f.name not in subs and f.name not in ("reasons", "version")
    }
    for sec, cls in subs.items():
        names |= {f"{sec}.{f.name}" for f in fields(cls)}
    return names


def rule_files(root: Path | None = None) -> list[Path]:
    root = root or rules_root()
    return sorted(p for p in root.rglob("*.yaml") if p.name not in NOT_RULE_FILES)


def _check_options(kind_map: Any, what: str, many: bool) -> list[str]:
    if not isinstance(kind_map, dict) or not kind_map:
        return [
            f"then.{what} must map approach/method/stage to {'a list of options' if many else 'an option'}"
        ]
    problems = []
    for kind, val in kind_map.items():
        if kind not in OPTIONS:
            problems.append(f"then.{what}: unknown kind '{kind}' (allowed: {', '.join(OPTIONS)})")
            continue
        vals = val if many and isinstance(val, list) else [val]
        for x in vals:
            if x not in OPTIONS[kind]:
                problems.append(
                    f"then.{what}.{kind}: unknown option {x!r} (allowed: {', '.join(OPTIONS[kind])})"
                )
    return problems


def _check_then(then: Any, layer: int, thresholds: dict, plan_fields: set[str]) -> list[str]:
    if not isinstance(then, dict) or not then:
        return ["then must be a non-empty mapping of effects"]
    problems = [
        f"then: unknown effect '{k}' (allowed: {', '.join(THEN_KEYS)})" for k in then if k not in THEN_KEYS
    ]
    if "recommend" in then:
        problems += _check_options(then["recommend"], "recommend", many=False)
    if "exclude" in then:
        problems += _check_options(then["exclude"], "exclude", many=True)
    for what in ("recommend", "exclude"):
        kinds = then.get(what) if isinstance(then.get(what), dict) else {}
        if "approach" in kinds and layer >= 1:
            problems.append(
                f"then.{what}.approach: a rule that reads the decided approach/method cannot change it"
            )
        if ({"method", "stage"} & set(kinds)) and layer >= 2:
            problems.append(f"then.{what}: a rule that reads the decided method/stage cannot change them")
    for flag in ("warn", "suggest", "note"):
        if flag in then and not isinstance(then[flag], bool):
            problems.append(f"then.{flag} must be true or false")
    if "set" in then:
        if not isinstance(then["set"], dict) or not then["set"]:
            problems.append("then.set must map plan fields to values")
        else:
            for k, val in then["set"].items():
                if k not in plan_fields:
                    problems.append(f"then.set: unknown plan field '{k}'")
                if isinstance(val, int | float) and not isinstance(val, bool):
                    problems.append(
                        f"then.set.{k}: numeric literal {val!r}; put numbers in thresholds.yaml "
                        "and write t.<name>"
                    )
                elif isinstance(val, str) and val.startswith("t.") and val[2:] not in thresholds:
                    problems.append(f"then.set.{k}: unknown threshold '{val}'")
                elif not isinstance(val, bool | str):
                    problems.append(f"then.set.{k}: value must be true/false, a string or t.<threshold>")
    if "eval" in then:
        ev = then["eval"]
        if not isinstance(ev, dict) or set(ev) - {"task", "system"} or not ev:
            problems.append("then.eval must map 'task' and/or 'system' to lists of metric descriptions")
        else:
            for k, lst in ev.items():
                if not isinstance(lst, list) or not all(isinstance(x, str) and x for x in lst):
                    problems.append(f"then.eval.{k} must be a list of metric descriptions")
    return problems


def _check_names(names: list[str], where: str, thresholds: dict) -> list[str]:
    problems = []
    for n in names:
        if n.startswith("t."):
            if n[2:] not in thresholds:
                problems.append(f"{where}: unknown threshold '{n}'")
        elif n not in FACT_DOCS and n not in DECISION_DOCS:
            problems.append(f"{where}: unknown fact '{n}' (see `tunewise rules --facts`)")
    return problems


def _check_examples(ex: Any, always: bool) -> list[str]:
    """Both lists non-empty, except that a catch-all rule (`when: "true"`) has nothing that does not fire."""
    if not isinstance(ex, dict) or set(ex) != {"fires", "does_not_fire"}:
        return ["examples must have exactly the keys fires and does_not_fire"]
    problems = []
    for k in ("fires", "does_not_fire"):
        empty_ok = always and k == "does_not_fire"
        if (
            not isinstance(ex[k], list)
            or (not ex[k] and not empty_ok)
            or not all(isinstance(e, dict) for e in ex[k])
        ):
            problems.append(f"examples.{k} must be a non-empty list of fact mappings")
            continue
        for e in ex[k]:
            problems += _check_names([n for n in e if n != "t"], f"examples.{k}", {})
    return problems


def parse_rule(
    data: Any, path: str, thresholds: dict, plan_fields: set[str]
) -> tuple[Rule | None, list[str]]:
    """Validate one rule mapping; returns the rule (or None) and its problems."""
    import cel

    if not isinstance(data, dict):
        return None, ["expected a mapping with the keys " + ", ".join(REQUIRED_KEYS)]
    problems = [
        f"unknown key '{k}' (allowed: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)})"
        for k in data
        if k not in REQUIRED_KEYS + OPTIONAL_KEYS
    ]
    problems += [f"missing key '{k}'" for k in REQUIRED_KEYS if k not in data]
    for k in ("id", "title", "when", "message", "why", "source"):
        if k in data and (not isinstance(data[k], str) or not data[k].strip()):
            problems.append(f"'{k}' must be a non-empty string")
    if isinstance(data.get("id"), str) and not ID_RE.match(data["id"]):
        problems.append(f"id {data['id']!r} must look like TW123-kebab-case-name")
    if isinstance(data.get("source"), str) and data["source"] not in SOURCES:
        problems.append(
            f"source {data['source']!r} must be a guide section heading ({'; '.join(GUIDE_SECTIONS)}) "
            "or 'measurement'"
        )
    prio = data.get("priority", 0)
    if isinstance(prio, bool) or not isinstance(prio, int):
        problems.append(f"priority must be an integer (got {prio!r})")
    program, variables, used_t, layer = None, [], [], 0
    when = data.get("when")
    if isinstance(when, str) and when.strip():
        try:
            program = cel.compile(when)
            variables = sorted(program.variables())
        except (ValueError, RuntimeError) as e:
            first = str(e).splitlines()[0]
            problems.append(f"when: CEL does not compile: {first}")
        used_t = sorted(set(THRESHOLD_REF.findall(when)))
        problems += _check_names([v for v in variables if v != "t"], "when", thresholds)
        problems += _check_names([f"t.{n}" for n in used_t], "when", thresholds)
        literals = NUMBER.findall(re.sub(r'"[^"]*"', "", when))
        if any(float(n) not in (0.0, 1.0) for n in literals):
            problems.append("when: numeric literal; put numbers in thresholds.yaml and write t.<name>")
        layer = max([LAYER_OF.get(v, 0) for v in variables] or [0])
    if isinstance(data.get("message"), str):
        problems += _check_names(PLACEHOLDER.findall(data["message"]), "message", thresholds)
    if "then" in data:
        problems += _check_then(data["then"], layer, thresholds, plan_fields)
    if "examples" in data:
        problems += _check_examples(data["examples"], always=str(when).strip() == "true")
    if problems:
        return None, problems
    rule = Rule(
        id=data["id"],
        title=data["title"],
        when=when,
        then=data["then"],
        message=data["message"].strip(),
        why=" ".join(data["why"].split()),
        source=data["source"],
        examples=data["examples"],
        priority=prio,
        path=path,
        variables=tuple(v for v in variables if v != "t"),
        thresholds=tuple(used_t),
        layer=layer,
        program=program,
    )
    return rule, []


def load_rules(root: str | Path | None = None, thresholds: dict[str, Threshold] | None = None) -> list[Rule]:
    """Load and validate every rule file under `root` (default: the shipped rules).

    Raises:
        UserError: listing every problem in every file at once.
    """
    root_p = Path(root) if root else rules_root()
    th = (
        thresholds
        if thresholds is not None
        else load_thresholds(root_p / "thresholds.yaml" if (root_p / "thresholds.yaml").is_file() else None)
    )
    plan_fields = _plan_fields()
    rules, problems, seen = [], [], {}
    for p in rule_files(root_p):
        rel = str(p.relative_to(root_p))
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            problems.append(f"{rel}: not valid YAML" + (f" (line {mark.line + 1})" if mark else ""))
            continue
        except (OSError, UnicodeDecodeError) as e:
            problems.append(f"{rel}: cannot read ({type(e).__name__})")
            continue
        except RecursionError:  # PyYAML composes nested nodes recursively
            problems.append(f"{rel}: nested too deeply to be a rule")
            continue
        rule, probs = parse_rule(data, rel, th, plan_fields)
        problems += [f"{rel}: {x}" for x in probs]
        if rule:
            number = rule.id.split("-", 1)[0]  # reports cite a rule by its number alone (`TW103`)
            if number in seen:
                problems.append(
                    f"{rel}: number {number} already used by {seen[number]}; give the rule a free number"
                )
            seen[number] = rel
            rules.append(rule)
    if not rules and not problems:
        problems.append(f"{root_p}: no rule files found")
    if problems:
        raise UserError(
            f"{len(problems)} problem(s) in rule files under {root_p}:\n  - " + "\n  - ".join(problems),
            "fix the files above (schema: docs/rules.md; `tunewise rules ID` shows a working rule)",
        )
    return rules
