"""The verdict: did fine-tuning beat prompting by more than the noise, and does it meet the target?

Read on the headline metric (the user's success metric, else the task's first): the final fine-tuned model
against the stronger prompting baseline (zero- or few-shot), by the paired bootstrap interval of the
difference. An interval that excludes zero is a difference; one that straddles it is noise.
"""

from __future__ import annotations

from advisor.task_metrics import METRICS, MetricInfo, label, meets, shortfall


def _better(metric: str) -> bool:
    return METRICS.get(metric, MetricInfo(metric)).higher_is_better


def fmt_ci(ci: list[float], signed: bool = False) -> str:
    f = "{:+.2f}" if signed else "{:.2f}"
    return f"{f.format(ci[0])}…{f.format(ci[1])}"


def decide(
    metric: str,
    models: dict,
    comparisons: list[dict],
    tuned: list[str],
    *,
    target: float | None,
    confidence: float,
) -> dict:
    """The verdict object of eval.json: outcome, text, and the numbers it rests on."""
    pct = f"{confidence:.0%}"
    name = label(metric)
    value = {k: m["metrics"][metric]["value"] for k, m in models.items() if metric in m["metrics"]}
    prompting = [k for k in ("base_zero_shot", "base_few_shot") if k in value]
    if not prompting:
        return {"outcome": "not-measured", "metric": metric, "text": f"{name} could not be measured"}
    best_prompt = max(prompting, key=lambda k: value[k] if _better(metric) else -value[k])
    out: dict = {"metric": metric, "baseline": best_prompt}
    final = next((t for t in reversed(tuned) if t in value), None)
    if final is None:
        out |= {
            "outcome": "baselines-only",
            "text": f"no fine-tuned model in the run yet: {models[best_prompt]['label']} scores "
            f"{value[best_prompt]:.2f} {name} (the figure fine-tuning has to beat)",
        }
    else:
        cmp = next(
            c for c in comparisons if c["a"] == final and c["b"] == best_prompt and c["metric"] == metric
        )
        d, ci = cmp["diff"], cmp["ci"]
        good = (lambda x: x > 0) if _better(metric) else (lambda x: x < 0)
        what = f"{d:+.2f} {name}, {pct} CI {fmt_ci(ci, signed=True)}"
        base_label, tuned_label = models[best_prompt]["label"], models[final]["label"]
        if good(ci[0]) and good(ci[1]):
            outcome, text = "fine-tune-better", f"{tuned_label} beats {base_label} by {what}"
        elif good(-ci[0]) and good(-ci[1]):
            outcome, text = (
                "prompting-better",
                f"{tuned_label} is worse than {base_label} ({what}): prompting is enough",
            )
        else:
            outcome, text = (
                "no-gain",
                f"no gain beyond the noise over {base_label} ({what}): prompting is enough",
            )
        out |= {"outcome": outcome, "tuned": final, "diff": d, "ci": ci, "text": text}
    if target is not None:
        out["target"] = _target(metric, target, value, models, final, best_prompt)
        out["text"] += "; " + out["target"]["text"]
    return out


def _target(
    metric: str, target: float, value: dict, models: dict, final: str | None, best_prompt: str
) -> dict:
    sign = "≥" if _better(metric) else "≤"
    parts, res = [], {"metric": metric, "target": target}
    for key in [k for k in (final, best_prompt) if k]:
        v = value[key]
        ok = meets(metric, v, target)
        res[key] = {"value": v, "meets": ok, "shortfall": round(shortfall(metric, v, target), 4)}
        gap = "meets it" if ok else f"misses it by {abs(shortfall(metric, v, target)):.2f}"
        parts.append(f"{models[key]['label']} {v:.2f} {gap}")
    res["text"] = f"target {label(metric)} {sign} {target:g}: " + ", ".join(parts)
    return res
