"""Facts: the named values the rules' CEL expressions read, plus the raw objects behind them.

`build_facts` turns answers into facts: it resolves the model, detects (or takes) the GPUs,
inspects the dataset and estimates peak memory for each candidate method. Each source is one
small function here, so an upstream interface change touches one place. The values are flat and
normalised for CEL (which never mixes int and double in arithmetic): every number is a float,
and an unknown value is left out, so a rule that reads it is "skipped (missing fact)".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from advisor.answers import Answers
from advisor.decision import Candidate
from advisor.hardware import GPU
from advisor.memory import FitResult as Fit  # a method's memory at the configuration planned for it
from advisor.task_metrics import probe_facts
from advisor.thresholds import load_thresholds

# The one table of fact names. The rule loader rejects a rule that reads any other name.
FACT_DOCS: dict[str, str] = {
    "task": "the task: classification, extraction, question-answering, summarization, chat, code, "
    "reasoning or generation",
    "task_complexity": "simple (classification, extraction), medium (question-answering, "
    "summarization, chat) or complex (code, reasoning, generation)",
    "goals": "list of goals from the answers (tone-style, privacy, low-resource-language, "
    "cheaper-inference, new-capability, output-format)",
    "has_value_goal": "true when a goal is one of the guide's five scenarios where fine-tuning adds value",
    "needs_citations": "answers must cite or be grounded in source documents",
    "knowledge_changes_often": "the knowledge the answers need changes often",
    "clear_task": "a clear task definition and success criteria exist",
    "tried_prompting": "the user has already tried prompt engineering",
    "examples": "training examples in total (instruction examples plus preference pairs)",
    "examples_known": "the number of examples is known (from the dataset or the answers)",
    "sft_examples": "instruction/response examples (from the dataset, or `examples` in the answers)",
    "preference_pairs": "(prompt, chosen, rejected) examples",
    "has_dataset": "a dataset file was given and inspected",
    "data_format": "detected dataset format (alpaca, messages, sharegpt, prompt-completion, preference, text)",
    "data_rows": "rows in the dataset file",
    "data_valid": "usable rows in the dataset file",
    "data_invalid": "rows that could not be used",
    "data_duplicates": "duplicate rows in the dataset",
    "data_p95_tokens": "95th percentile of tokens per example (needs a tokenizer)",
    "data_max_tokens": "tokens in the longest measured example (needs a tokenizer)",
    "data_recommended_max_length": "the data inspector's recommended sequence length (covers the longest measured "
    "row, within the model's context), tokens",
    "data_zero_trainable_rows": "dataset rows left with no trainable token at the plan's max_length (set by the "
    "planner; they are not counted in sft_examples)",
    "preference_zero_trainable_rows": "preference pairs left with no trainable token at the plan's max_length "
    "(set by the planner; not counted in preference_pairs)",
    "model_context": "the model's context length (max_position_embeddings), tokens",
    "model_given": "the user named a model (otherwise the guide's default pick is assumed)",
    "model_name": "the model as named in the answers (or the guide's default pick)",
    "model_family": "the transformers model_type (llama, mistral, qwen2, phi3, gemma2, ...)",
    "model_params_b": "model size in billions of parameters",
    "gpu_count": "number of GPUs (detected, or listed in the answers); 0 means no GPU",
    "gpu_memory_gib": "memory of the largest GPU less any display reserve, GiB (a layout may use it alone; "
    "on a box of equal cards, every card's)",
    "gpu_total_memory_gib": "memory of all GPUs together, GiB",
    "gpu_bf16": "every GPU supports bfloat16",
    "gpu_precision_assumed": "a GPU's bfloat16 support is unknown (its name is not in the table and the answers do "
    "not say `bf16:`): the conservative precision is assumed",
    "gpu_unknown_names": "names of the GPUs whose bfloat16 support is assumed",
    "zero_latency": "adapters must merge into the weights (no inference overhead)",
    "method_requested": "the method the user asked for: auto, lora, qlora, spectrum or full",
    "lora_fits": "LoRA fits the GPU at some micro-batch (1-8) and sequence length (the planned length, or a "
    "shorter one down to 512) by the estimate",
    "qlora_fits": "QLoRA's estimated peak memory fits the GPU",
    "spectrum_fits": "Spectrum's estimated peak memory fits the GPU",
    "full_fits": "full fine-tuning's estimated peak memory fits the GPU (estimated only when asked for)",
    "lora_device_gib": "LoRA's estimated GPU memory in use at peak, GiB",
    "qlora_device_gib": "QLoRA's estimated GPU memory in use at peak, GiB",
    "spectrum_device_gib": "Spectrum's estimated GPU memory in use at peak, GiB",
    "full_device_gib": "full fine-tuning's estimated GPU memory in use at peak, GiB",
    "any_method_fits": "at least one parameter-efficient method (or the requested method) fits the GPU",
    "gpu_usable_gib": "GPU memory a method may use: gpu_memory_gib less the fit margin, GiB",
    "model_requested": "the model named in the answers, when no method fits it anywhere on this box and a "
    "smaller catalog model (model_name) is planned instead",
    "requested_params_b": "size of model_requested in billions of parameters",
    "success_metric": "the success criterion's metric (answers `success.metric`)",
    "success_target": "the success criterion's target value (answers `success.target`)",
    "probe_metric": "the metric `recommend --probe` measured, as reports name it (the success metric, else the "
    "task's headline metric)",
    "probe_score": "few-shot prompting's measured score on a held-out sample of the data (`recommend --probe`)",
    "probe_examples": "held-out examples the probe measured",
    "probe_shots": "examples in the probe's few-shot prompt",
    "probe_meets_target": "the measured few-shot score meets the success target",
    "probe_shortfall": "how far the measured few-shot score falls short of the target (negative: beyond it)",
}

# Values the engine decides and then exposes to later rules (layered evaluation, see engine.py).
DECISION_DOCS: dict[str, str] = {
    "approach": "the decided approach: prompting, rag, fine-tune or rag+fine-tune",
    "fine_tuning": "the decided approach includes fine-tuning",
    "method": "the decided training method (lora, qlora, spectrum, full); set only when fine-tuning",
    "stage": "the decided training stage (sft, dpo, sft+dpo); set only when fine-tuning",
}

TASK_COMPLEXITY = {
    "classification": "simple",
    "extraction": "simple",
    "question-answering": "medium",
    "summarization": "medium",
    "chat": "medium",
    "code": "complex",
    "reasoning": "complex",
    "generation": "complex",
}
VALUE_GOALS = ("tone-style", "privacy", "low-resource-language", "cheaper-inference", "new-capability")
# The guide's recommended initial base models ("Practical Tools and Getting Started"), in order.
DEFAULT_MODELS = ("meta-llama/Llama-3.1-8B", "microsoft/Phi-3-mini-4k-instruct")
PEFT_METHODS = ("lora", "qlora", "spectrum")


@dataclass
class Facts:
    """CEL variables (`values`) and the objects they came from (for the report and the plan)."""

    values: dict[str, Any]
    answers: Answers
    model: Any = None  # advisor.models.ModelFacts | None
    gpus: list[GPU] = field(default_factory=list)
    gpu_note: str | None = None  # why there is no GPU, when there is none
    data: Any = None  # the dataset report from advisor.data.inspect_dataset, or None
    preference_data: Any = None  # the `preference_dataset` file's report, or None
    candidates: dict[str, Candidate] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. "model not given: assumed Llama-3.1-8B"
    unmeasured: str | None = None  # why the data's token lengths are not measured; None when they are


def normalise(value: Any) -> Any:
    """CEL-friendly value: ints become floats (CEL does not mix int and double in arithmetic)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list | tuple):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    return value


def _resolve_model_default(spec: str):
    from advisor.models import resolve_model

    return resolve_model(spec)


def _inspect_default(path: str, tokenizer: str | None = None):
    from advisor.data import inspect_dataset

    return inspect_dataset(path, tokenizer=tokenizer)


def fit_memory(
    model,
    method: str,
    n_gpus: int,
    distributed: str | None,
    seq_len: int,
    gpu_gib: float | None,
    th: dict[str, float],
    stage: str = "sft",
    precision: str = "bf16-mixed",
) -> Fit:
    """Memory of one training step for `method` (`advisor.memory`).

    With a GPU: the longest sequence (`seq_len`, else a shorter one down to the guide's 512,
    `advisor.seqlen.fit_lengths`) and largest micro-batch (up to 8) that fit, accumulation keeping the
    effective batch; when nothing fits, the smallest configuration's figure (so "a GPU of X GiB would do"
    is the minimum).
    Without a GPU: the guide's starting configuration.
    """
    from advisor.memory import MemoryConfig, estimate, fit_search
    from advisor.seqlen import fit_lengths

    start_b, accum = int(th["batch_size_start"]), int(th["grad_accum_start"])
    offload = distributed == "fsdp_offload"  # a layout of advisor.strategy: FSDP with CPU offload
    cfg = MemoryConfig(
        method=method,
        rank=int(th["lora_rank"]),
        seq_len=seq_len,
        batch_size=start_b,
        n_gpus=n_gpus,
        distributed="fsdp" if offload else distributed,
        cpu_offload=offload,
        spectrum_fraction=th["spectrum_top_percent"] / 100,
        stage=stage,
        precision=precision,
    )
    if gpu_gib is None or gpu_gib <= 0:  # no GPU, or one whose memory the display reserve takes entirely
        e = estimate(model, cfg)
        return Fit(
            start_b, accum, seq_len, e.peak_allocated_gib, e.device_gib, False, "no GPU memory to fit against"
        )
    lo = int(th["max_length_min"])
    # The guide's effective batch (4 x 4) is the global one: more GPUs take less accumulation each.
    target = max(1, math.ceil(start_b * accum / max(1, n_gpus)))
    r = fit_search(
        model,
        cfg,
        gpu_gib,
        margin=th["fit_margin"],
        target_effective_batch=target,
        seq_lens=fit_lengths(seq_len, lo),
    )
    return r


def start_max_length(v: dict[str, Any], th: dict[str, float], answers=None, model=None) -> int:
    """The sequence length memory tries first (`advisor.seqlen.choose`): the answers' `max_length`, else one
    that covers the data's measured lengths (or the answers' `tokens_per_example`), within the model's context;
    the guide's starting 1,024 when nothing is known."""
    from advisor.seqlen import choose

    return choose(v, th, answers, model).length


def tokenizer_for(answers: Answers) -> tuple[str | None, str | None]:
    """(where to load the model's tokenizer from, why there is none): a local folder, or a hub id (a catalog
    name's too) whose tokenizer is in the local Hugging Face cache. Never downloads."""
    from advisor.hubcache import find_tokenizer
    from advisor.models import load_catalog

    if not answers.model:
        return None, "no model named, so no tokenizer to count with"
    names = [answers.model]
    hit = load_catalog().get(answers.model.strip().lower())
    if hit is not None and hit.name not in names:
        names.append(hit.name)
    found, where = find_tokenizer(names)
    return (found, None) if found else (None, where)


def _check_max_length(answers: Answers, model) -> None:
    """`max_length` in the answers must fit the model's context.

    Raises:
        UserError: it is longer than the model's context.
    """
    from advisor.errors import UserError
    from advisor.seqlen import context_of

    ctx = context_of(model)
    if answers.max_length and ctx and answers.max_length > ctx:
        raise UserError(
            f"'max_length': {answers.max_length:,} tokens is longer than {model.name}'s context of {ctx:,} tokens",
            f"set max_length to at most {ctx:,}, or leave it out to size it from the data",
        )


def _gpu_facts(answers: Answers, detect_gpus: bool) -> tuple[list[GPU], str | None]:
    """GPUs from the answers override detection; no GPU is a normal outcome with a reason."""
    from advisor.hardware import detect_gpus as nvml_detect
    from advisor.hardware import gpus_from_answers

    if answers.gpus is not None:
        return gpus_from_answers(answers.gpus), None if answers.gpus else "the answers list no GPUs"
    if not detect_gpus:
        return [], "GPU detection turned off (--no-detect) and no gpus in the answers"
    det = nvml_detect()
    return list(det.gpus), det.reason


def _data_facts(report) -> dict[str, Any]:
    """The dataset report (`advisor.data.DataReport`) as facts. The one place that reads its shape."""
    tokens = getattr(report, "token_stats", None) or {}
    fmt = getattr(report, "format", None)
    valid = getattr(report, "valid", None)
    invalid = getattr(report, "invalid_count", None)
    if invalid is None and isinstance(getattr(report, "invalid", None), list):
        invalid = len(report.invalid)
    # Rows the split keeps (valid, exact duplicates dropped) are what training will see.
    usable = getattr(report, "usable_rows", valid)
    pref = getattr(report, "preference_rows", None)
    if not pref and fmt == "preference":
        pref = usable
    out = {
        "has_dataset": True,
        "data_format": fmt,
        "data_rows": getattr(report, "rows", None),
        "data_valid": valid,
        "data_invalid": invalid,
        "data_duplicates": getattr(report, "duplicates", None),
        "data_p95_tokens": tokens.get("p95") if isinstance(tokens, dict) else None,
        "data_max_tokens": tokens.get("max") if isinstance(tokens, dict) else None,
        "data_recommended_max_length": getattr(report, "recommended_max_length", None),
    }
    if usable is not None:
        pref = min(pref or 0, usable)
        out["preference_pairs"] = pref
        out["sft_examples"] = max(0, usable - pref)
    return out


def _preference_facts(report, path: str, v: dict[str, Any]) -> dict[str, Any]:
    """The `preference_dataset` file as facts: its usable pairs, and its measured length where it is longer
    than the SFT data's (one max_length serves both stages).

    Raises:
        UserError: the file does not hold preference pairs.
    """
    from advisor.errors import UserError

    fmt = getattr(report, "format", None)
    if fmt != "preference":
        raise UserError(
            f"preference_dataset {path} holds {fmt or 'no recognisable'} rows, not preference pairs",
            "give a file of prompt/chosen/rejected rows (check it with `tunewise inspect FILE`), or "
            "move this file to `dataset`",
        )
    out: dict[str, Any] = {
        "preference_pairs": getattr(report, "preference_rows", 0) or getattr(report, "usable_rows", 0) or 0
    }
    tokens = getattr(report, "token_stats", None) or {}
    for key, val in (
        ("data_p95_tokens", tokens.get("p95") if isinstance(tokens, dict) else None),
        ("data_max_tokens", tokens.get("max") if isinstance(tokens, dict) else None),
        ("data_recommended_max_length", getattr(report, "recommended_max_length", None)),
    ):
        if val and (v.get(key) is None or val > v[key]):
            out[key] = val
    return out


def _candidates(
    model, gpus: list[GPU], answers: Answers, seq_len: int, th: dict[str, float], fitter: Callable
) -> dict[str, Candidate]:
    """Memory per method at its best layout of the box (`advisor.strategy`): one GPU, or all of them with
    DDP, FSDP or FSDP + CPU offload, or the larger cards alone; in the precision the job runs there
    (advisor/precision.py): fp32 master weights with bf16 compute first, for Spectrum/full a Kahan-compensated
    bf16 optimizer when those fit nowhere; fp32 (Spectrum/full) or fp16 mixed (adapters) on GPUs without bf16.
    When nothing fits, the figure is the cheapest precision's (the least the method needs)."""
    from functools import partial

    from advisor.precision import default_precision, fallbacks
    from advisor.seqlen import context_of
    from advisor.strategy import best_layout

    ctx = context_of(model)
    seq_len = min(seq_len, ctx) if ctx else seq_len  # a fallback model's context may be shorter
    methods = list(PEFT_METHODS) + (["full"] if answers.method == "full" else [])
    if not gpus:
        out = {}
        for m in methods:
            p = default_precision(m, None)
            fit = fitter(model, m, 1, None, seq_len, None, th, precision=p)
            out[m] = Candidate(
                method=m,
                peak_gib=round(fit.peak_gib, 2),
                device_gib=round(fit.device_gib, 2),
                fits=False,
                micro_batch=fit.micro_batch,
                grad_accum=fit.grad_accum,
                seq_len=fit.seq_len,
                note=fit.note,
                precision=p,
            )
        return out
    sizes = [g.usable_gib for g in gpus]
    index = [g.index for g in gpus]
    bf16 = all(g.bf16 for g in gpus)
    out = {}
    for m in methods:
        chosen = None
        for p in fallbacks(m, bf16):
            c = best_layout(model, m, sizes, seq_len, th, partial(fitter, precision=p), index)
            c.precision = p
            if chosen is None or (not chosen.fits and (c.fits or c.device_gib < chosen.device_gib)):
                chosen = c
            if c.fits:
                break
        out[m] = chosen
    return out


def _fit_values(candidates: dict[str, Candidate], answers: Answers, has_gpus: bool) -> dict[str, Any]:
    """The memory facts of the candidates: each method's figure and fit, and whether any fits."""
    v: dict[str, Any] = {}
    for m, c in candidates.items():
        v[f"{m}_device_gib"] = c.device_gib
        if has_gpus:
            v[f"{m}_fits"] = c.fits
    if has_gpus and candidates:
        pool = [m for m in PEFT_METHODS if m in candidates]
        if answers.method not in ("auto",) and answers.method in candidates:
            pool.append(answers.method)
        v["any_method_fits"] = any(candidates[m].fits for m in pool)
    return v


def for_stage(facts: Facts, stage: str, fitter: Callable | None = None) -> Facts:
    """The same facts with every method's memory for `stage`'s step: a plan that is DPO alone never runs the
    SFT step, so its fits, layouts and batch come from the DPO step (chosen and rejected rows and a reference
    forward, advisor/memory_dpo.py). The data is not inspected again."""
    from dataclasses import replace as dc_replace
    from functools import partial

    if facts.model is None or not hasattr(facts.model, "params_total"):
        return facts
    fit = fitter or partial(fit_memory, stage=stage)
    seq_len = start_max_length(facts.values, facts.thresholds, facts.answers, facts.model)
    cands = _candidates(facts.model, facts.gpus, facts.answers, seq_len, facts.thresholds, fit)
    values = dict(facts.values)
    values.update({k: normalise(x) for k, x in _fit_values(cands, facts.answers, bool(facts.gpus)).items()})
    return dc_replace(facts, values=values, candidates=cands)


def _peft_fits(candidates: dict[str, Candidate]) -> bool | None:
    pool = [c for m, c in candidates.items() if m in PEFT_METHODS]
    return any(c.fits for c in pool) if pool else None


def _smaller_model(model, candidates, gpus, answers, seq_len, th, fitter):
    """The largest catalog model that fits when the named one fits no method in any layout: same series
    first, then the same family, then any (`advisor.strategy.fallback_models`). Unchanged when none fits."""
    from advisor.strategy import fallback_models

    for alt in fallback_models(model):
        cands = _candidates(alt, gpus, answers, seq_len, th, fitter)
        if _peft_fits(cands):
            return alt, cands
    return model, candidates


def build_facts(
    answers: Answers,
    *,
    detect_gpus: bool = True,
    model_resolver: Callable | None = None,
    data_inspector: Callable | None = None,
    fitter: Callable | None = None,
    thresholds: dict[str, float] | None = None,
    probe: dict | None = None,
) -> Facts:
    """Collect every fact the rules read. The callables are injectable for tests; `probe` is a `recommend
    --probe` measurement ({metric, value, n, k}, see advisor/task_metrics.py) or None.

    Raises:
        UserError: the model cannot be resolved or the dataset cannot be read.
    """
    th = thresholds if thresholds is not None else {k: v.value for k, v in load_thresholds().items()}
    resolver = model_resolver or _resolve_model_default
    inspector = data_inspector or _inspect_default
    fitter = fitter or fit_memory
    notes: list[str] = []

    v: dict[str, Any] = {
        "task": answers.task,
        "task_complexity": TASK_COMPLEXITY.get(answers.task) if answers.task else None,
        "goals": list(answers.goals),
        "has_value_goal": any(g in VALUE_GOALS for g in answers.goals),
        "needs_citations": answers.needs_citations,
        "knowledge_changes_often": answers.knowledge_changes_often,
        "clear_task": answers.clear_task,
        "tried_prompting": answers.tried_prompting,
        "zero_latency": answers.zero_latency,
        "method_requested": answers.method,
        "has_dataset": False,
        "success_metric": answers.success.metric if answers.success else None,
        "success_target": answers.success.target if answers.success else None,
        **probe_facts(
            probe, *((answers.success.metric, answers.success.target) if answers.success else (None, None))
        ),
        "sft_examples": answers.examples,
        # Preference pairs nobody mentioned are taken as none (the user would know of them).
        "preference_pairs": answers.preference_pairs
        if answers.preference_pairs is not None
        else (0 if answers.examples is not None else None),
    }

    data = pref_data = None
    stated = answers.preference_pairs
    pairs_from = "stated in the answers" if stated is not None else None
    tokenizer, unmeasured = (
        tokenizer_for(answers)
        if answers.dataset or answers.preference_dataset
        else (None, "no dataset given")
    )
    if answers.dataset:
        data = inspector(answers.dataset, tokenizer=tokenizer)
        dv = _data_facts(data)
        counted = dv.pop("preference_pairs", None)
        v.update(dv)
        # A file that holds pairs counts them; one that holds none leaves a stated count as it was.
        if counted:
            v["preference_pairs"], pairs_from = counted, f"counted in {answers.dataset}"
        elif stated is None:
            v["preference_pairs"] = 0
    if answers.preference_dataset:
        pref_data = inspector(answers.preference_dataset, tokenizer=tokenizer)
        v.update(_preference_facts(pref_data, answers.preference_dataset, v))
        pairs_from = f"counted in {answers.preference_dataset}"
    if v["sft_examples"] is None and v["preference_pairs"] and not answers.dataset:
        v["sft_examples"] = 0  # pairs alone: no instruction examples were mentioned, so none (as pairs above)
    if pairs_from and v["preference_pairs"] is not None and (v["preference_pairs"] or stated):
        notes.append(
            f"preference pairs: {int(v['preference_pairs']):,}, {pairs_from}"
            + (
                f" (the answers said {stated:,})"
                if stated is not None and stated != v["preference_pairs"]
                else ""
            )
        )
    if v["sft_examples"] is not None and v["preference_pairs"] is not None:
        v["examples"] = v["sft_examples"] + v["preference_pairs"]
    v["examples_known"] = "examples" in v

    gpus, gpu_note = _gpu_facts(answers, detect_gpus)
    v["gpu_count"] = len(gpus)
    if gpus:
        # The largest card (less any display reserve): a layout may use it alone (advisor.strategy).
        v["gpu_memory_gib"] = max(g.usable_gib for g in gpus)
        v["gpu_total_memory_gib"] = sum(g.usable_gib for g in gpus)
        v["gpu_bf16"] = all(g.bf16 for g in gpus)
        unknown = [g.name for g in gpus if g.compute_capability is None]
        v["gpu_precision_assumed"] = bool(unknown)
        v["gpu_unknown_names"] = sorted(set(unknown))
        v["gpu_usable_gib"] = round(v["gpu_memory_gib"] * (1 - th["fit_margin"]), 2)

    if tokenizer and not v.get("data_max_tokens"):
        unmeasured = "the data inspection measured no row with the tokenizer"
    if unmeasured and tokenizer is None and (data is not None or pref_data is not None):
        notes.append(
            f"token lengths unmeasured ({unmeasured}): max_length is "
            + (
                "from the answers"
                if answers.max_length or answers.tokens_per_example
                else "assumed, not sized to the data; set `tokens_per_example` or `max_length` in the answers"
            )
        )

    model, candidates, seq_len = None, {}, start_max_length(v, th, answers)
    specs = [answers.model] if answers.model else list(DEFAULT_MODELS)
    for spec in specs:
        try:
            model = resolver(spec)
        except NotImplementedError:  # model facts not available in this build: rules skip them
            model = None
            notes.append("model facts unavailable: size-based rules and memory estimates skipped")
            break
        _check_max_length(answers, model)
        seq_len = start_max_length(v, th, answers, model)
        candidates = _candidates(model, gpus, answers, seq_len, th, fitter)
        # Without a named model, take the guide's first pick that fits (Llama-3.1-8B, then Phi-3-mini).
        if answers.model or not gpus or any(c.fits for c in candidates.values()):
            break
    requested = model
    if (
        answers.model
        and gpus
        and model is not None
        and answers.method == "auto"
        and _peft_fits(candidates) is False
    ):
        model, candidates = _smaller_model(model, candidates, gpus, answers, seq_len, th, fitter)
    if not answers.model and model is not None:
        notes.append(f"no model given: assuming the guide's pick {model.name}")
    v["model_given"] = bool(answers.model)
    v["model_name"] = answers.model or (model.name if model else DEFAULT_MODELS[0])
    if model is not requested:  # the named model fits nowhere on this box: a smaller one does
        v["model_requested"] = answers.model
        v["model_name"] = model.name
        v["requested_params_b"] = round(requested.params_total / 1e9, 3)
    if model is not None:
        v["model_family"] = model.family
        v["model_context"] = getattr(model, "max_position_embeddings", None)
        v["model_params_b"] = round(model.params_total / 1e9, 3)
    v.update(_fit_values(candidates, answers, bool(gpus)))

    values = {k: normalise(x) for k, x in v.items() if x is not None}
    return Facts(
        values=values,
        answers=answers,
        model=model,
        gpus=gpus,
        gpu_note=gpu_note,
        data=data,
        preference_data=pref_data,
        candidates=candidates,
        thresholds=th,
        notes=notes,
        unmeasured=unmeasured,
    )
