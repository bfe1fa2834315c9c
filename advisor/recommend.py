"""Orchestration: answers -> facts -> rules -> decision -> plan, and the JSON of `recommend`.

`recommend()` is what the CLI, the wizard and the report call; `recommendation_json()` is the
`tunewise recommend --format json` object of DESIGN.md (extra keys: `trace`, `excluded`, ...).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from advisor.answers import Answers
from advisor.decision import Decision
from advisor.engine import METHOD_LABEL, evaluate
from advisor.facts import Facts, build_facts
from advisor.plan import TrainingPlan


@dataclass
class Recommendation:
    facts: Facts
    decision: Decision
    plan: TrainingPlan | None
    problems: list[str] = field(default_factory=list)  # reasons to exit 1 (forced misfit, unusable data)

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0


def recommend(answers: Answers, *, detect_gpus: bool = True, rules=None, **facts_kwargs) -> Recommendation:
    """The full recommendation for one set of answers.

    Args:
        answers: validated answers.
        detect_gpus: probe NVML when the answers list no GPUs.
        rules: pre-loaded rules (default: the shipped rule files).
        **facts_kwargs: passed to `build_facts` (test doubles: model_resolver, data_inspector, fitter).
    """
    from advisor.planning import build_plan
    from advisor.rules import load_rules

    facts = build_facts(answers, detect_gpus=detect_gpus, **facts_kwargs)
    rules = rules if rules is not None else load_rules()
    decision = evaluate(rules, facts)
    plan = build_plan(decision, facts)
    return Recommendation(facts, decision, plan, _problems(facts, decision))


def _problems(facts: Facts, decision: Decision) -> list[str]:
    out = []
    req = facts.answers.method
    cand = facts.candidates.get(req)
    if req != "auto" and facts.gpus and cand is not None and not cand.fits:
        out.append(f"{METHOD_LABEL[req]} was asked for but does not fit: estimated {cand.device_gib:g} GiB in use "
                   f"at peak, {facts.values.get('gpu_usable_gib', 0):g} GiB usable per GPU")
    data = facts.data
    if data is not None and (getattr(data, "usable", True) is False or facts.values.get("examples", 1) == 0):
        out.append(f"the dataset {facts.answers.dataset} has no usable rows")
    return out


def recommendation_json(rec: Recommendation) -> dict:
    """The JSON object of DESIGN.md, plus explanatory extra keys."""
    d, f = rec.decision, rec.facts
    fine_tuning = d.method is not None
    return {
        "approach": d.approach,
        "method": d.method if fine_tuning else None,
        "stage": d.stage if fine_tuning else None,
        "model": d.model,
        "fired": list(d.fired),
        "warnings": list(d.warnings),
        "candidates": {m: {"peak_gib": c.peak_gib, "device_gib": c.device_gib, "fits": c.fits,
                           "distributed": c.distributed, "excluded_by": c.excluded_by}
                       for m, c in d.candidates.items()},
        "plan": rec.plan.to_dict() if rec.plan is not None and fine_tuning else None,
        "method_by_rules": d.method_by_rules,
        "excluded": d.excluded,
        "would_change": d.would_change,
        "suggestions": d.suggestions,
        "notes": d.notes,
        "eval_plan": d.eval_plan,
        "checklist": d.checklist,
        "problems": rec.problems,
        "facts": f.values,
        "gpus": [g.to_dict() for g in f.gpus],
        "gpu_note": f.gpu_note,
        "trace": [asdict(t) for t in d.trace],
    }
