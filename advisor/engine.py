"""The rules engine: evaluate every rule on the facts and combine the effects into a Decision.

Pure: no I/O, no prompts, no torch. Deterministic and independent of rule order:

* Rules run in three layers. Layer 0 reads facts only; layer 1 also reads the decided `approach`
  (and `fine_tuning`); layer 2 also reads the decided `method` and `stage`. A rule may only change
  decisions made after the values it reads (checked when rules load), so there are no cycles.
* Per kind (approach, method, stage): an exclusion beats any recommendation; among the options
  still allowed the recommendation with the highest `priority` wins; equal priorities are broken
  by the fixed option order in `advisor.rules.OPTIONS` (the more conservative option first).
* A plan value `set` by several rules: highest priority wins, then the smallest rule id.
* Method, stage and `set` effects apply only when the approach includes fine-tuning; such a rule
  that fires otherwise is traced as fired but not applied.
* The approach is always backed by a fired rule: the shipped rules include a catch-all default.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from advisor.checklist import build_checklist
from advisor.decision import Decision, RuleResult
from advisor.facts import Facts
from advisor.rules import OPTIONS, PLACEHOLDER, Rule

FINE_TUNE_APPROACHES = ("fine-tune", "rag+fine-tune")
METHOD_LABEL = {"lora": "LoRA", "qlora": "QLoRA", "spectrum": "Spectrum", "full": "full fine-tuning"}


def fmt_value(v: Any) -> str:
    """A fact value as the report quotes it: 2,500 not 2500.0; 2e-4 not 0.0002."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if v.is_integer():
            return f"{int(v):,}"
        return f"{v:.0e}".replace("e-0", "e-") if abs(v) < 0.001 else f"{v:,.2f}".rstrip("0").rstrip(".")
    if isinstance(v, list):
        return ", ".join(fmt_value(x) for x in v) or "none"
    return str(v)


def fill_message(template: str, ctx: dict, thresholds: dict) -> str:
    """Fill `{fact}` and `{t.name}` placeholders with observed values (no eval, no format spec)."""

    def sub(m):
        name = m.group(1)
        if name.startswith("t."):
            val = thresholds.get(name[2:])
        else:
            val = ctx.get(name)
        return "?" if val is None else fmt_value(val)

    return PLACEHOLDER.sub(sub, " ".join(template.split()))


def _run(rule: Rule, ctx: dict, thresholds: dict) -> RuleResult:
    observed = {v: ctx[v] for v in rule.variables if v in ctx}
    observed.update({f"t.{n}": thresholds[n] for n in rule.thresholds if n in thresholds})
    res = RuleResult(
        id=rule.id,
        title=rule.title,
        status="not_fired",
        why=rule.why,
        source=rule.source,
        then=rule.then,
        observed=observed,
        priority=rule.priority,
    )
    try:
        out = rule.program.execute(ctx)
    except RuntimeError:  # CEL: undefined variable, i.e. a fact we do not have
        res.status = "skipped"
        res.missing = [v for v in rule.variables if v not in ctx]
        return res
    except (TypeError, ValueError) as e:  # a rule bug (type mismatch); kept visible in the trace
        res.status, res.error = "skipped", str(e).splitlines()[0]
        return res
    if not isinstance(out, bool):
        res.status, res.error = "skipped", f"`when` gave {out!r}, not true/false"
        return res
    if out:
        res.status = "fired"
        res.message = fill_message(rule.message, ctx, thresholds)
    return res


def _choose(kind: str, fired: list[RuleResult]) -> tuple[str | None, dict[str, list[str]]]:
    excluded: dict[str, list[str]] = {}
    votes: list[tuple[int, int, str]] = []
    for r in fired:
        for opt in _as_list(r.then.get("exclude", {}).get(kind)):
            excluded.setdefault(opt, []).append(r.id)
        opt = r.then.get("recommend", {}).get(kind)
        if opt:
            votes.append((r.priority, -OPTIONS[kind].index(opt), opt))
    allowed = [v for v in votes if v[2] not in excluded]
    return (max(allowed)[2] if allowed else None), {k: sorted(v) for k, v in excluded.items()}


def _as_list(x) -> list:
    return x if isinstance(x, list) else ([x] if x else [])


def _touches_training(rule_then: dict) -> bool:
    kinds = set(rule_then.get("recommend", {})) | set(rule_then.get("exclude", {}))
    return bool({"method", "stage"} & kinds) or "set" in rule_then


def evaluate(
    rules: list[Rule],
    facts: Facts | dict,
    thresholds: dict[str, float] | None = None,
    *,
    explain: bool = True,
) -> Decision:
    """Evaluate every rule and combine the effects (see the module docstring for the precedence).

    Args:
        rules: validated rules (`advisor.rules.load_rules`).
        facts: a `Facts`, or a bare mapping of fact values (tests).
        thresholds: threshold values by name; default `facts.thresholds`.
        explain: also compute the "what would change the decision" lines (re-evaluates variants).
    """
    values = facts.values if isinstance(facts, Facts) else dict(facts)
    th = thresholds if thresholds is not None else (facts.thresholds if isinstance(facts, Facts) else {})
    candidates = facts.candidates if isinstance(facts, Facts) else {}
    ctx: dict[str, Any] = {**values, "t": dict(th)}
    by_layer = {n: sorted((r for r in rules if r.layer == n), key=lambda r: r.id) for n in (0, 1, 2)}

    results = [_run(r, ctx, th) for r in by_layer[0]]
    approach, ex_approach = _choose("approach", [r for r in results if r.status == "fired"])
    approach = approach or "prompting"  # unreachable with the shipped catch-all rule
    fine_tuning = approach in FINE_TUNE_APPROACHES
    ctx.update(approach=approach, fine_tuning=fine_tuning)

    results += [_run(r, ctx, th) for r in by_layer[1]]
    fired = [r for r in results if r.status == "fired"]
    method = stage = method_by_rules = None
    ex_method: dict[str, list[str]] = {}
    ex_stage: dict[str, list[str]] = {}
    if fine_tuning:
        method_by_rules, ex_method = _choose("method", fired)
        stage, ex_stage = _choose("stage", fired)
        requested = values.get("method_requested", "auto")
        method = requested if requested in OPTIONS["method"] else method_by_rules
    ctx.update(method=method or "none", stage=stage or "none")

    results += [_run(r, ctx, th) for r in by_layer[2]]
    for r in results:
        if r.status == "fired" and not fine_tuning and _touches_training(r.then):
            r.applied = False
    results.sort(key=lambda r: r.id)
    applied = [r for r in results if r.status == "fired" and r.applied]

    dec = Decision(
        approach=approach,
        method=method,
        stage=stage,
        model=values.get("model_name"),
        fired=[r.id for r in applied],
        trace=results,
        method_by_rules=method_by_rules,
    )
    dec.excluded = {**ex_approach, **ex_method, **ex_stage}
    for r in applied:
        if r.then.get("warn"):
            dec.warnings.append(r.message)
        elif r.then.get("suggest"):
            dec.suggestions.append(r.message)
        else:
            dec.notes.append(r.message)
    if fine_tuning and method and method_by_rules != method:
        dec.warnings.append(_override_line(method, method_by_rules, candidates))
    dec.settings = _settings(applied, th)
    dec.eval_plan = _eval_plan(applied, th)
    dec.candidates = {m: replace(c, excluded_by=sorted(ex_method.get(m, []))) for m, c in candidates.items()}
    dec.checklist = build_checklist(values, dec, th)
    if explain:
        dec.would_change = would_change(rules, values, th, dec, candidates)
    return dec


def _override_line(method: str, by_rules: str | None, candidates: dict) -> str:
    c = candidates.get(method)
    fit = (
        ""
        if c is None
        else (
            f"; it fits ({c.device_gib:g} GiB estimated)"
            if c.fits
            else f"; it does NOT fit ({c.device_gib:g} GiB estimated)"
        )
    )
    rules_say = METHOD_LABEL.get(by_rules, "no method") if by_rules else "no method that fits"
    return f"You asked for {METHOD_LABEL[method]}; the rules would choose {rules_say}{fit}."


def _settings(applied: list[RuleResult], th: dict) -> dict[str, dict]:
    chosen: dict[str, tuple] = {}
    for r in applied:
        for key, val in (r.then.get("set") or {}).items():
            resolved = th.get(val[2:]) if isinstance(val, str) and val.startswith("t.") else val
            rank = (r.priority, _neg_id(r.id))
            if key not in chosen or rank > chosen[key][0]:
                chosen[key] = (
                    rank,
                    {
                        "value": resolved,
                        "rule": r.id,
                        "reason": r.message,
                        "source": r.source,
                        "threshold": val[2:] if isinstance(val, str) and val.startswith("t.") else None,
                    },
                )
    return {k: v[1] for k, v in sorted(chosen.items())}


def _neg_id(rule_id: str) -> tuple:
    """Sort key under which the smallest id ranks highest (ties go to the smallest id)."""
    return tuple(-ord(c) for c in rule_id)


def _eval_plan(applied: list[RuleResult], th: dict) -> list[str]:
    caps = {"task": int(th.get("max_task_metrics", 2)), "system": int(th.get("max_system_metrics", 3))}
    picked: dict[str, list[str]] = {"task": [], "system": []}
    for r in sorted(applied, key=lambda r: (-r.priority, r.id)):
        for kind, metrics in (r.then.get("eval") or {}).items():
            for m in metrics:
                if m not in picked[kind] and len(picked[kind]) < caps[kind]:
                    picked[kind].append(m)
    lines = [f"task metric: {m}" for m in picked["task"]] + [f"system metric: {m}" for m in picked["system"]]
    return lines[: int(th.get("max_eval_metrics", 5))]


def gib_needed(device_gib: float, th: dict) -> int:
    """Smallest whole GPU size (GiB) on which an estimate fits, given the fit margin."""
    return math.ceil(device_gib / (1 - th.get("fit_margin", 0.0)))


SEARCH_MAX = 1_000_000  # the largest count the threshold search tries (examples or preference pairs)


def _smallest(flips, lo: int, th: dict) -> int | None:
    """The smallest count n >= lo for which `flips(n)` holds, or None. Rules compare counts with thresholds
    (`examples < t.x`, `>= t.x`), so a decision can only change at a threshold's value or one above it: those
    are the only counts tried, by bisection (a count that flips the decision keeps it flipped when larger)."""
    points = sorted(
        {lo}
        | {
            int(v) + d
            for v in th.values()
            if isinstance(v, int | float) and not isinstance(v, bool)
            for d in (0, 1)
            if lo < int(v) + d <= SEARCH_MAX
        }
    )
    if not flips(points[-1]):
        return None
    i, j = 0, len(points) - 1
    while i < j:
        mid = (i + j) // 2
        if flips(points[mid]):
            j = mid
        else:
            i = mid + 1
    return points[i]


def would_change(rules: list[Rule], values: dict, th: dict, dec: Decision, candidates: dict) -> list[str]:
    """Counterfactuals: change one fact group, re-run the rules, and report what the decision becomes.

    Counts are found by re-running the engine, not read off a fixed probe: the number of examples (or
    preference pairs) quoted is the smallest that changes the decision for these facts."""
    lines: list[str] = []

    def variant(**changes) -> Decision:
        return evaluate(rules, {**values, **changes}, th, explain=False)

    def with_sft(n: int, **extra) -> dict:
        return {
            "sft_examples": n,
            "examples": n + values.get("preference_pairs", 0),
            "examples_known": True,
            **extra,
        }

    sft_now = int(values.get("sft_examples", 0) or 0)
    if dec.approach not in FINE_TUNE_APPROACHES:
        extra: dict = {}
        n = _smallest(lambda k: variant(**with_sft(k)).approach != dec.approach, sft_now + 1, th)
        if n is None:  # more data alone is not enough: with a clear task and prompting tried as well
            if values.get("clear_task") is not True:
                extra["clear_task"] = True
            if values.get("tried_prompting") is False:
                extra["tried_prompting"] = True
            if extra:
                n = _smallest(
                    lambda k: variant(**with_sft(k, **extra)).approach != dec.approach, sft_now + 1, th
                )
            if n == sft_now + 1:  # the other facts alone change it (said below), not the count
                n = None
        if n is not None:
            alt = variant(**with_sft(n, **extra))
            words = [
                " a clear task definition" if "clear_task" in extra else "",
                " prompt engineering tried and falling short" if "tried_prompting" in extra else "",
            ]
            words = " and".join(x for x in words if x)
            lines.append(
                f"with {fmt_value(float(n))}+ examples{' and' + words if words else ''}, "
                f"the approach would be {alt.approach}"
            )
        for fact, text in (
            ("clear_task", "with a clear task definition and success criteria"),
            ("tried_prompting", "once prompt engineering has been tried and falls short"),
        ):
            if values.get(fact) is False:
                alt = variant(**{fact: True})
                if alt.approach != dec.approach:
                    lines.append(f"{text}, the approach would be {alt.approach}")
        if values.get("any_method_fits") is False:
            best = min(candidates.values(), key=lambda c: c.device_gib, default=None)
            if best:
                lines.append(
                    f"with a GPU of at least {gib_needed(best.device_gib, th)} GiB, "
                    f"{METHOD_LABEL[best.method]} would fit and fine-tuning could be recommended"
                )
    else:
        for m, c in sorted(candidates.items()):
            if not c.fits:
                where = "with a GPU" if values.get("gpu_count", 0) else "on a GPU"
                layout = ""
                if c.distributed:
                    where = f"with {int(values.get('gpu_count', 0))} GPUs"
                    layout = f" each ({c.distributed.upper()})"
                lines.append(
                    f"{where} of at least {gib_needed(c.device_gib, th)} GiB{layout}, {METHOD_LABEL[m]} "
                    f"would fit (estimated {c.device_gib:g} GiB in use at peak)"
                )
        if values.get("model_requested"):
            lines.append(
                f"with more GPU memory, {values['model_requested']} itself could be trained (it fits no "
                f"method or layout here; {values.get('model_name')} is planned instead)"
            )
        pairs_now = int(values.get("preference_pairs", 0) or 0)
        if dec.stage == "sft":

            def pairs(k: int) -> dict:
                return {"preference_pairs": k, "examples": sft_now + k}

            n = _smallest(lambda k: variant(**pairs(k)).stage not in (None, dec.stage), pairs_now + 1, th)
            if n is not None:
                lines.append(
                    f"with {fmt_value(float(n))}+ preference pairs (prompt, chosen, rejected), "
                    f"the stage would be {variant(**pairs(n)).stage}"
                )
    return lines
