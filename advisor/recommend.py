"""Orchestration: answers -> facts -> rules -> decision -> plan, and the JSON of `recommend`.

`recommend()` is what the CLI, the wizard and the report call; `recommendation_json()` is the
`tunewise recommend --format json` object of DESIGN.md (extra keys: `trace`, `excluded`, ...).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from advisor.answers import Answers
from advisor.decision import Decision
from advisor.engine import METHOD_LABEL, evaluate
from advisor.errors import UserError
from advisor.facts import Facts, build_facts, for_stage
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
    if decision.stage == "dpo" and "fitter" not in facts_kwargs:
        # DPO alone: every figure (fits, layout, batch, the memory table) is the DPO step's, decided again on it
        facts = for_stage(facts, "dpo")
        decision = evaluate(rules, facts)
    plan = build_plan(decision, facts)
    rec = Recommendation(facts, decision, plan, _problems(facts, decision))
    complete_spectrum_plan(rec)  # here, once: every report (the wizard's too) shows the plan that is written
    return rec


def _problems(facts: Facts, decision: Decision) -> list[str]:
    out = []
    req = facts.answers.method
    cand = facts.candidates.get(req)
    if req != "auto" and facts.gpus and cand is not None and not cand.fits:
        prec = f" in {cand.precision}" if cand.precision else ""
        out.append(
            f"{METHOD_LABEL[req]} was asked for but does not fit{prec}: estimated {cand.device_gib:g} GiB in "
            f"use at peak, {facts.values.get('gpu_usable_gib', 0):g} GiB usable per GPU"
        )
    data = facts.data
    if data is not None and (getattr(data, "usable", True) is False or facts.values.get("examples", 1) == 0):
        out.append(f"the dataset {facts.answers.dataset} has no usable rows")
    return out


def all_warnings(rec: Recommendation) -> list[str]:
    """The one list of warnings every format shows: the engine's (every applied rule that warns, a method
    override, the plan's), then the data inspection's (the dataset, then the preference file), without repeats."""
    out: list[str] = []
    facts = getattr(rec, "facts", None)
    for text in [
        *rec.decision.warnings,
        *_data_warnings(getattr(facts, "data", None)),
        *_data_warnings(getattr(facts, "preference_data", None)),
    ]:
        if text not in out:
            out.append(text)
    return out


def _data_warnings(report) -> list[str]:
    return [w for w in (getattr(report, "warnings", None) or []) if isinstance(w, str)]


def all_notes(rec: Recommendation) -> list[str]:
    """Informational messages: the rules' notes, then the facts' (assumed model, which pair count was used)."""
    out: list[str] = []
    for text in [*rec.decision.notes, *(getattr(getattr(rec, "facts", None), "notes", None) or [])]:
        if text not in out:
            out.append(text)
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
        "warnings": all_warnings(rec),
        "warning_rules": [r.id for r in d.trace if r.status == "fired" and r.applied and r.then.get("warn")],
        "candidates": {
            m: {
                "peak_gib": c.peak_gib,
                "device_gib": c.device_gib,
                "fits": c.fits,
                "distributed": c.distributed,
                "cpu_offload": c.cpu_offload,
                "gpu_indices": c.gpu_indices,
                "micro_batch": c.micro_batch,
                "seq_len": c.seq_len,
                "excluded_by": c.excluded_by,
                "precision": c.precision,
            }
            for m, c in d.candidates.items()
        },
        "plan": rec.plan.to_dict() if rec.plan is not None and fine_tuning else None,
        "method_by_rules": d.method_by_rules,
        "excluded": d.excluded,
        "would_change": d.would_change,
        "suggestions": d.suggestions,
        "notes": all_notes(rec),
        "eval_plan": d.eval_plan,
        "checklist": d.checklist,
        "problems": rec.problems,
        "facts": f.values,
        "gpus": [g.to_dict() for g in f.gpus],
        "gpu_note": f.gpu_note,
        "trace": [asdict(t) for t in d.trace],
    }


def spectrum_scan_missing(plan: TrainingPlan | None) -> UserError | None:
    """Why a Spectrum plan cannot be written yet (its model is not a local directory to scan), or None.
    A run directory is never written without the scan: never a silent full fine-tune."""
    if (
        plan is None
        or plan.method != "spectrum"
        or plan.spectrum is None
        or plan.spectrum.unfrozen_parameters
    ):
        return None
    return UserError(
        f"Spectrum needs a scan of the weights, and {plan.model} is not a local directory",
        "download the model, set `model:` to its directory (or run `tunewise spectrum scan "
        "MODEL_DIR`), then rerun `tunewise recommend --out`",
    )


def complete_spectrum_plan(rec: Recommendation) -> None:
    """Give a Spectrum plan its unfrozen parameters, before any report is shown.

    Scans the local weights (`advisor.spectrum.scan`, cached by content), puts the selected
    parameters into the plan, names the chosen layers per module type in the plan's reasons (the
    report shows them), and re-estimates peak memory with the scan's actual trainable count instead
    of the fraction. A hub id has no local weights to scan: the plan stays without layers, and writing
    it is refused (`spectrum_scan_missing`).
    """
    from pathlib import Path

    plan = rec.plan
    if spectrum_scan_missing(plan) is None or not Path(plan.model).is_dir():
        return
    from advisor.spectrum import scan, scan_summary

    result = scan(plan.model, top_percent=plan.spectrum.top_percent)
    plan.spectrum.unfrozen_parameters = list(result.unfrozen)
    layers = "; ".join(
        f"{t}: layers {', '.join(map(str, sorted(s['selected'])))}" for t, s in scan_summary(result).items()
    )
    plan.reasons["spectrum.unfrozen_parameters"] = (
        f"{len(result.unfrozen)} parameters ({result.trainable_params:,} weights) in the top "
        f"{plan.spectrum.top_percent:g}% of layers of each module type by signal-to-noise ratio, from a scan of "
        f"the local weights ({layers}) (Essential Parameter-Efficient Fine-Tuning Methods; measurement)"
    )
    model = rec.facts.model
    if model is None:
        return
    from advisor.memory import config_for_plan, estimate

    est = estimate(model, replace(config_for_plan(plan), spectrum_trainable_params=result.trainable_params))
    plan.predicted_peak_gib, plan.predicted_device_gib = est.peak_allocated_gib, est.device_gib
    plan.reasons["predicted_peak_gib"] = (
        f"estimated {est.device_gib:g} GiB in use at peak ({est.peak_allocated_gib:g} GiB allocated) at "
        f"{plan.micro_batch_size} x {plan.max_length:,} tokens per step with the scan's "
        f"{result.trainable_params:,} trainable weights (measurement)"
    )
