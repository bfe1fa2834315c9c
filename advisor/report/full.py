"""The recommendation report: what to do, why, and the plan, in the order a reviewer reads it.

Built once as a list of `Section`s (pure data, no I/O), then rendered as markdown (`report.md`),
as rich renderables for the terminal, or as JSON. The order follows OPA's `--explain`: the
recommendation, the rules that fired, what was ruled out, what would change the decision, the
memory table, the plan with the arithmetic behind each number, evaluation, the guide's checklist,
warnings, sources.

Public interface: `render(rec, fmt)`, `print_report(console, rec)`, `build_sections(rec)`,
`report_json(rec)`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from advisor.errors import UserError
from advisor.recommend import recommendation_json
from advisor.report.markup import renderables, to_markdown
from advisor.report.plan_table import plan_rows
from advisor.report.sections import Section, Table, gib, show_path

FORMATS = ("text", "markdown", "json")

APPROACH_WORDS = {
    "prompting": "prompt engineering (no training)",
    "rag": "retrieval-augmented generation (RAG, no training)",
    "fine-tune": "fine-tuning",
    "rag+fine-tune": "RAG plus fine-tuning",
}
METHOD_WORDS = {
    "lora": "LoRA",
    "qlora": "QLoRA (4-bit base, LoRA adapters)",
    "spectrum": "Spectrum",
    "full": "full fine-tuning",
}
STAGE_WORDS = {
    "sft": "instruction tuning (SFT)",
    "dpo": "preference alignment (DPO)",
    "sft+dpo": "instruction tuning (SFT), then DPO",
}
# then-keys that decide the approach, method or stage, as opposed to plan values and warnings.
_DECISIVE = ("approach", "method", "stage")


def _answers(rec):
    return rec.facts.answers


def _rule_index(rec) -> dict:
    return {r.id: r for r in rec.decision.trace}


def _decides(rule) -> list[str]:
    """Which of approach / method / stage a rule recommends or excludes (empty for advice and settings)."""
    then = rule.then if isinstance(rule.then, dict) else {}
    dims = set()
    for verb in ("recommend", "exclude", "prefer"):
        eff = then.get(verb)
        if isinstance(eff, dict):
            dims |= set(eff) & set(_DECISIVE)
    return [d for d in _DECISIVE if d in dims]


def _kind(rule) -> str:
    """decides | sets | warns | advises: where in the report a fired rule is explained."""
    then = rule.then if isinstance(rule.then, dict) else {}
    if _decides(rule):
        return "decides"
    if then.get("warn"):
        return "warns"
    if "set" in then:
        return "sets"
    if "eval" in then:
        return "evaluates"
    return "advises"


def _applied(rec) -> list:
    return [r for r in rec.decision.trace if r.status == "fired" and r.applied]


def _rule_line(r) -> str:
    return f"`{r.id}` — {r.message or r.title}{_cite(r)}"


def _cite(rule) -> str:
    return f" _({rule.source})_" if rule.source else ""


def _headline(rec) -> Section:
    d = rec.decision
    lines = [f"**Approach:** {APPROACH_WORDS.get(d.approach, d.approach)}"]
    if d.method:
        lines.append(f"**Method:** {METHOD_WORDS.get(d.method, d.method)}")
    if d.stage:
        lines.append(f"**Stage:** {STAGE_WORDS.get(d.stage, d.stage)}")
    model = rec.facts.model
    name = model_name(rec)
    if name:
        size = (
            f" — {model.params_total:,} parameters ({model.family})" if model and model.params_total else ""
        )
        lines.append(f"**Model:** `{name}`{size}")
    lines.append(f"**GPUs:** {gpu_line(rec)}")
    answers = _answers(rec)
    chosen = answers.method
    if chosen and chosen != "auto":
        by_rules = d.method_by_rules
        view = (
            f"the rules would choose {METHOD_WORDS.get(by_rules, by_rules)}"
            if by_rules and by_rules != chosen
            else "the rules agree"
            if by_rules
            else "the rules' view and the fit are shown below"
        )
        lines.append(f"**Your method choice:** `{chosen}` ({view})")
    for problem in rec.problems:
        lines.append(f"**Problem:** {problem}")
    data = rec.facts.data
    if data is not None:
        lines.append(f"**Data:** `{show_path(data.path)}` — {data.rows:,} rows, format {data.format}")
    trc = bool(rec.plan.trust_remote_code if rec.plan else answers.trust_remote_code)
    lines.append(
        "**trust_remote_code:** "
        + (
            "on — the model's own Python code will run; you asked for it"
            if trc
            else "off (the model's repository code is never run)"
        )
    )
    return Section("recommendation", "Recommendation", lines)


def model_name(rec) -> str | None:
    """The model as the report names it (a local path relative to the working directory)."""
    model = rec.facts.model
    name = rec.decision.model or (model.name if model else None) or _answers(rec).model
    return (show_path(name) if Path(name).is_absolute() else name) if name else None


def gpu_line(rec) -> str:
    gpus = rec.facts.gpus or []
    if not gpus:
        note = rec.facts.gpu_note
        return "none" + (f" ({note})" if note else "") + " — memory fit cannot be checked here"
    names: dict[str, int] = {}
    for g in gpus:
        key = f"{g.name}, {gib(g.memory_gib)} GiB"
        names[key] = names.get(key, 0) + 1
    src = {g.source for g in gpus}
    origin = "from your answers" if src == {"answers"} else "detected"
    return "; ".join(f"{n} × {k}" for k, n in names.items()) + f" ({origin})"


def deciding_rules(rec) -> tuple[list[tuple[str, Any]], list[str]]:
    """([(dimension, rule)] for the applied rules that decided the approach, method and stage, in that
    order; ["`id` (wanted)"] for the rules whose recommendation was outweighed)."""
    decided: list[tuple[str, Any]] = []
    outweighed = []
    applied = _applied(rec)
    for dim in _DECISIVE:  # approach first, then method, then stage
        chosen = getattr(rec.decision, dim, None)
        if dim == "method" and rec.decision.method_by_rules:
            chosen = rec.decision.method_by_rules
        for r in applied:
            if _decides(r)[:1] != [dim]:
                continue
            wanted = (r.then.get("recommend") or {}).get(dim)
            if wanted is not None and wanted != chosen:
                outweighed.append(f"`{r.id}` ({wanted})")
            else:
                decided.append((dim, r))
    return decided, outweighed


def _why(rec) -> Section:
    fired = [r for r in rec.decision.trace if r.status == "fired"]
    applied = _applied(rec)
    decided, outweighed = deciding_rules(rec)
    lines = [f"**{dim.capitalize()}**: {_rule_line(r)}" for dim, r in decided]
    if not lines:
        lines = ["No rule decided the approach."]
    n_skip = sum(r.status == "skipped" for r in rec.decision.trace)
    after = [
        f"{len(fired)} of {len(rec.decision.trace)} rules fired"
        + (
            f"; {n_skip} skipped for a missing fact (see `--format json` for the full trace)."
            if n_skip
            else "."
        )
    ]
    if outweighed:
        after.append(
            "Outweighed by the rules above (their recommendation was not taken): "
            + ", ".join(outweighed)
            + "."
        )
    sets = [r.id for r in applied if _kind(r) == "sets"]
    if sets:
        after.append(
            "Rules that set plan values ("
            + ", ".join(f"`{i}`" for i in sets)
            + ") are quoted in the training plan; warnings and advice follow below."
        )
    idle = [r.id for r in fired if not r.applied]
    if idle:
        after.append(
            "Fired without effect here (they concern training, which is not recommended): "
            + ", ".join(f"`{i}`" for i in idle)
            + "."
        )
    return Section("why", "Why", lines, after=after)


def _ruled_out(rec) -> Section:
    idx = _rule_index(rec)
    lines = []
    for option, rule_ids in rec.decision.excluded.items():
        reasons = "; ".join(
            f"`{rid}` — {(idx[rid].message or idx[rid].title).rstrip('.')}" if rid in idx else f"`{rid}`"
            for rid in rule_ids
        )
        lines.append(f"**{_option(option)}**: {reasons}")
    for m, c in rec.decision.candidates.items():
        if not c.fits and m not in rec.decision.excluded:
            lines.append(
                f"**{_option(m)}**: the memory estimate ({gib(c.device_gib)} GiB) does not fit the GPU"
            )
    return Section("ruled-out", "Ruled out", lines or ["Nothing was ruled out."])


def _option(name: str) -> str:
    return METHOD_WORDS.get(name, name).split(" (")[0]


def _would_change(rec) -> Section:
    return Section(
        "would-change",
        "What would change the decision",
        list(rec.decision.would_change) or ["No single change in the answers would alter it."],
    )


@dataclass
class MemoryRow:
    """One method's line of the memory table, as the report words it."""

    method: str
    label: str  # "LoRA", "QLoRA, FSDP (chosen)"
    shape: str  # "8 × 1,024" (micro-batch × sequence length) or "—"
    peak: str
    device: str
    gpu: str
    fit: str  # fits | does not fit | no GPU
    margin: str
    chosen: bool


def memory_rows(rec) -> list[MemoryRow]:
    """The memory verdict of every candidate method against the GPUs its layout uses (the smallest of them, less
    any display reserve; empty without estimates). A method that does not fit is "over" the usable memory
    (the card less the fit margin), never "to spare"."""
    gpus = rec.facts.gpus or []
    margin_frac = (rec.facts.thresholds or {}).get("fit_margin", 0.0)
    rows = []
    for m, c in rec.decision.candidates.items():
        chosen = m == rec.decision.method
        used = [g for g in gpus if not c.gpu_indices or g.index in c.gpu_indices]
        mem = min((getattr(g, "usable_gib", g.memory_gib) for g in used), default=None)
        if mem is None:
            fit, margin = "no GPU", "—"
        elif c.fits:
            spare = mem - c.device_gib
            fit = "fits"
            margin = f"{spare:,.{2 if spare < 0.05 else 1}f} GiB to spare"
        else:
            usable = mem * (1 - margin_frac)
            short = c.device_gib - usable
            fit = "does not fit"
            margin = f"{short:,.{2 if short < 0.05 else 1}f} GiB over {usable:,.1f}"
        layout = f", {c.distributed.upper()}" if c.distributed else ""
        if c.cpu_offload:
            layout += " + CPU offload"
        if c.gpu_indices and len(c.gpu_indices) < len(gpus):
            layout += (
                f", GPU {', '.join(map(str, c.gpu_indices))} alone"
                if len(c.gpu_indices) == 1
                else f", GPUs {', '.join(map(str, c.gpu_indices))}"
            )
        label = _option(m)
        mb, seq = c.micro_batch, c.seq_len
        shape = f"{mb} × {seq:,}" if mb and seq else "—"
        rows.append(
            MemoryRow(
                m,
                label[:1].upper() + label[1:] + layout + (" (chosen)" if chosen else ""),
                shape,
                gib(c.peak_gib),
                gib(c.device_gib),
                gib(mem),
                fit,
                margin,
                chosen,
            )
        )
    return rows


def no_memory_line(rec) -> str:
    why = "no training is recommended" if rec.plan is None else "the model's shapes are unknown"
    return f"No memory estimates: {why}."


def _memory(rec) -> Section:
    if not rec.decision.candidates:
        return Section("memory", "Estimated peak memory", [no_memory_line(rec)])
    rows = [[r.label, r.shape, r.peak, r.device, r.gpu, r.fit, r.margin] for r in memory_rows(rec)]
    table = Table(["Method", "Batch × seq", "Peak GiB", "Device GiB", "GPU GiB", "Verdict", "Margin"], rows)
    after = [
        "Per GPU, for one training step at the largest micro-batch and sequence length that fit each "
        "method (so methods can differ in batch), the chosen one at the micro-batch its plan runs. Peak: "
        "what PyTorch allocates; device: plus the CUDA "
        "context and allocator reserve, which decides the verdict."
    ]
    return Section("memory", "Estimated peak memory per method", table=table, after=after)


def _plan(rec) -> Section:
    if rec.plan is None:
        return Section(
            "plan",
            "Training plan",
            [
                f"No training plan: {APPROACH_WORDS.get(rec.decision.approach, rec.decision.approach)} "
                "does not train a model."
            ],
        )
    rows, notes = plan_rows(rec.plan, rec.facts.data, _examples(rec))
    return Section("plan", "Training plan", table=Table(["Setting", "Value", "Why"], rows), after=notes)


def _examples(rec) -> int | None:
    """Examples the first training stage walks through: instruction examples for SFT, pairs for DPO."""
    values = rec.facts.values or {}
    keys = ("preference_pairs",) if rec.plan and rec.plan.stage == "dpo" else ("sft_examples", "examples")
    for key in keys:
        v = values.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and v >= 0:
            return int(v)
    return _answers(rec).examples


def _evaluation(rec) -> Section:
    rules = [r for r in _applied(rec) if _kind(r) == "evaluates"]
    after = (
        [
            "Chosen by "
            + ", ".join(f"`{r.id}`" for r in rules)
            + f" _({rules[0].source})_: one or two task metrics plus two or three system metrics, five at most."
        ]
        if rules
        else []
    )
    return Section("evaluation", "Evaluation plan", list(rec.decision.eval_plan) or ["(none)"], after=after)


def _checklist(rec) -> Section:
    items = []
    for it in rec.decision.checklist:
        status = str(it.get("status", "")).lower()
        done = (
            True
            if status in ("done", "ok", "yes", "true")
            else None
            if status in ("", "n/a", "na")
            else False
        )
        detail = it.get("detail")
        # "planned": tunewise's plan covers it; "unknown": the answers do not say
        tag = f"{status}: " if status in ("planned", "unknown") else ""
        items.append(
            (
                done,
                f"{it.get('item', '')}" + (f" — {tag}{detail}" if detail else f" — {status}" if tag else ""),
            )
        )
    return Section(
        "checklist",
        "Getting-started checklist",
        checklist=items,
        lines=[] if items else ["(no checklist)"],
        after=[
            "From the guide's getting-started checklist _(Your Learning Path)_, filled in from your answers."
        ]
        if items
        else [],
    )


def _said(rec, kinds: tuple[str, ...], extra: list[str]) -> tuple[list, list[str]]:
    """(fired rules of these kinds, the other messages that no applied rule already says)."""
    rules = [r for r in _applied(rec) if _kind(r) in kinds]
    said = {r.message for r in _applied(rec)}
    lines = [_rule_line(r) for r in rules]
    others: list[str] = []
    for text in extra:
        if text not in said and text not in lines and text not in others:
            others.append(text)
    return rules, others


def _from_rules(rec, kinds: tuple[str, ...], extra: list[str]) -> list[str]:
    """Fired rules of these kinds (with id and source), then any other message not already said."""
    rules, others = _said(rec, kinds, extra)
    return [_rule_line(r) for r in rules] + others


def warning_items(rec) -> tuple[list, list[str]]:
    """Every warning of `advisor.recommend.all_warnings` (the list the JSON holds): (the applied rules that
    warn, whatever they also decide; the other warnings: method override, plan, data)."""
    from advisor.recommend import all_warnings

    rules = [r for r in _applied(rec) if (r.then or {}).get("warn")]
    said = {r.message for r in rules}
    return rules, [w for w in all_warnings(rec) if w not in said]


def _warnings(rec) -> Section:
    rules, others = warning_items(rec)
    return Section("warnings", "Warnings", [_rule_line(r) for r in rules] + others or ["None."])


def _suggestions(rec) -> Section | None:
    extra = list(rec.decision.suggestions) + list(rec.decision.notes) + list(rec.facts.notes)
    lines = _from_rules(rec, ("advises",), extra)
    return Section("suggestions", "Suggestions and notes", lines) if lines else None


def _sources(rec) -> Section:
    by_source: dict[str, list[str]] = {}
    for r in rec.decision.trace:
        if r.status == "fired" and r.source:
            by_source.setdefault(r.source, []).append(r.id)
    lines = [f"**{src}** — {', '.join(f'`{i}`' for i in ids)}" for src, ids in by_source.items()]
    note = (
        'Guide: "The Machine Learning Practitioner\'s Guide to Fine-Tuning Language Models"; '
        '"measurement" means tunewise\'s own memory estimator.'
    )
    return Section("sources", "Sources", lines or ["No rule fired."], after=[note])


def build_sections(rec) -> list[Section]:
    """The report as data, in reading order."""
    sections = [_headline(rec), _why(rec), _ruled_out(rec), _would_change(rec), _memory(rec), _plan(rec)]
    sections.append(_evaluation(rec))
    sections.append(_checklist(rec))
    sugg = _suggestions(rec)
    if sugg:
        sections.append(sugg)
    sections += [_warnings(rec), _sources(rec)]
    return sections


def report_json(rec) -> dict:
    """`recommendation_json(rec)` (the DESIGN.md contract) plus the full trace and the explanation."""
    out = dict(recommendation_json(rec))
    d = rec.decision
    out.setdefault("trace", [asdict(r) for r in d.trace])
    out.setdefault("excluded", d.excluded)
    out.setdefault("would_change", d.would_change)
    out.setdefault("eval_plan", d.eval_plan)
    out.setdefault("checklist", d.checklist)
    out.setdefault("suggestions", d.suggestions)
    out.setdefault("trust_remote_code", bool(rec.plan.trust_remote_code) if rec.plan else False)
    return out


def render(rec, fmt: str = "text") -> str:
    """The report as a string: "text" (plain, 100 columns), "markdown" (report.md) or "json"."""
    if fmt == "json":
        import json

        return json.dumps(report_json(rec), indent=2, default=str) + "\n"
    if fmt == "markdown":
        return to_markdown(build_sections(rec))
    if fmt == "text":
        import io

        from rich.console import Console

        buf = io.StringIO()
        print_report(
            Console(file=buf, width=100, color_system=None, force_terminal=False, legacy_windows=False), rec
        )
        return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"
    raise UserError(f"unknown report format {fmt!r}", f"use one of: {', '.join(FORMATS)}")


def print_report(console, rec) -> None:
    """Print the report to a rich Console (the only place that writes)."""
    for r in renderables(build_sections(rec)):
        console.print(r)
