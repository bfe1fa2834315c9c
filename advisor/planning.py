"""Decision + facts -> TrainingPlan, with a reason for every value (`plan.reasons`).

Values come, in this order, from: the method's sections (LoRA, 4-bit quantisation, Spectrum, DPO);
the rules' `set` effects (each quoting its rule and guide section); the data (sequence length from
the measured token lengths); the memory estimate (micro-batch and accumulation that fit the GPU);
and the hardware (GPU count, bf16). Remaining values keep the TrainingPlan default with a stated
reason.

Spectrum plans leave `spectrum.unfrozen_parameters` empty with `top_percent` set: `recommend --out`
fills the list from a scan (`advisor.spectrum`) when the model is a local directory; otherwise
`tunewise spectrum scan MODEL_DIR` must be run before launching (the plan refuses to load without it,
rather than silently training every weight).
"""

from __future__ import annotations

import math

from advisor.data.report import trained_mean_tokens
from advisor.decision import Decision
from advisor.facts import Facts
from advisor.plan import DataSpec, DPOSpec, EvalSpec, LoraSpec, QuantSpec, SpectrumSpec, TrainingPlan
from advisor.seqlen import account as account_length_cut

PRACTICAL = "Practical Tools and Getting Started"
# Tasks whose answers run long: a 64-token cap would cut a function or a summary off and score it wrong.
LONG_ANSWER_TOKENS = {"code": 512, "summarization": 256, "chat": 256, "generation": 256, "reasoning": 512}
PITFALLS = "Avoiding Critical Pitfalls"

# Values no rule sets: why the default is kept.
DEFAULT_REASONS = {
    "warmup_ratio": "short warm-up (3% of steps) keeps the first updates small while AdamW's moment estimates settle; "
    "not specified by the guide",
    "lr_scheduler": "cosine decay from the starting rate; not specified by the guide",
    "max_grad_norm": "gradient clipping at 1.0 guards against loss spikes; not specified by the guide",
    "optimizer": "AdamW, the optimizer the guide's recommended configurations assume",
    "padding_free": "packed rows stay separate rows of the micro-batch: attention (SDPA) then spans one row "
    "of max_length instead of micro-batch × max_length: micro-batch times less attention work "
    "and mask memory for the same tokens; FlashAttention-2 would take the flattened row instead",
    "liger": "Liger kernels (in the guide's recommended stack) need a GPU and the liger-kernel package; off by default",
    "save_total_limit": "keep the 3 most recent checkpoints to bound disk use",
    "logging_steps": f"log loss every 5 steps so training and validation curves can be watched ({PITFALLS})",
    "seed": "fixed seed so the split and the run can be reproduced",
    "completion_only_loss": "loss only on responses/assistant turns, so the model learns to answer rather than "
    "to repeat prompts",
    "trust_remote_code": "off unless the answers ask for it: model code from the hub is not run by default",
}


def _cast(old, value):
    """Cast a rule value (thresholds are floats) to the type of the field it replaces."""
    if isinstance(old, bool) or isinstance(value, bool):
        return bool(value)
    if isinstance(old, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _set(plan: TrainingPlan, key: str, value) -> bool:
    """Set a possibly dotted field; False when the section does not exist for this method."""
    obj, name = plan, key
    if "." in key:
        sec, name = key.split(".", 1)
        obj = getattr(plan, sec)
        if obj is None:
            return False
    setattr(obj, name, _cast(getattr(obj, name), value))
    return True


def build_plan(decision: Decision, facts: Facts) -> TrainingPlan | None:
    """The resolved training plan, or None when the approach does not include fine-tuning."""
    if decision.method is None or decision.stage is None:
        return None
    v, th, a = facts.values, facts.thresholds, facts.answers
    r: dict[str, str] = {}
    plan = TrainingPlan(
        model=v.get("model_name") or decision.model or "",
        method=decision.method,
        stage=decision.stage,
        model_family=v.get("model_family"),
        trust_remote_code=bool(a.trust_remote_code),
    )
    r["model"] = (
        "named in the answers"
        if v.get("model_given")
        else f"no model given: the guide's recommended initial base model ({PRACTICAL})"
    )
    r["method"] = _method_reason(decision)
    r["stage"] = _stage_reason(decision)

    if plan.method in ("lora", "qlora"):
        plan.lora = LoraSpec(target_modules="all-linear")
        r["lora.target_modules"] = "adapters on every linear layer of the blocks (attention and MLP)"
    if plan.method == "qlora":
        plan.quantization = QuantSpec()
        r["quantization"] = (
            "base weights stored in 4-bit (NF4, double quantisation), computation in 16-bit "
            "(Essential Parameter-Efficient Fine-Tuning Methods)"
        )
    if plan.method == "spectrum":
        plan.spectrum = SpectrumSpec()
        r["spectrum.unfrozen_parameters"] = (
            "filled from a signal-to-noise scan of the weights: `recommend --out` "
            "runs it for a local model directory; otherwise run `tunewise "
            "spectrum scan MODEL_DIR` before launching"
        )
    if "dpo" in plan.stage:
        plan.dpo = DPOSpec()
    plan.evaluation = EvalSpec(
        task=a.task,
        target_metric=a.success.metric if a.success else None,
        target=a.success.target if a.success else None,
        # the cap on each answer; the evaluation trims it to twice the longest reference + 8 tokens
        max_new_tokens=LONG_ANSWER_TOKENS.get(a.task or "", EvalSpec.max_new_tokens),
    )
    r["evaluation"] = "held-out evaluation against prompting, set up before training (Your Learning Path)"

    for key, s in decision.settings.items():
        if _set(plan, key, s["value"]):
            r[key] = f"{s['reason']} [{s['rule']}; {s['source']}]"

    if plan.lora is not None and "lora.alpha" not in decision.settings:
        plan.lora.alpha = int(plan.lora.r * th.get("lora_alpha_ratio", 2))
        r["lora.alpha"] = f"alpha = {th.get('lora_alpha_ratio', 2):g} x rank = {plan.lora.alpha} ({PITFALLS})"
    if plan.quantization is not None and v.get("gpu_bf16") is False:
        plan.quantization.compute_dtype = "float16"
        r["quantization.compute_dtype"] = "the GPU has no bfloat16 support: 16-bit compute in float16"
    if v.get("gpu_bf16") is False:
        plan.bf16 = False
        r["bf16"] = "the GPU has no bfloat16 support (compute capability below 8.0)"
    else:
        r.setdefault("bf16", "the GPU computes in bfloat16, the 16-bit format the guide names for QLoRA")

    _attention(plan, facts, r)
    _precision(plan, decision, facts, r)
    _sequence_length(plan, facts, r)
    _data(plan, facts, r)
    _hardware_and_batch(plan, decision, facts, r)
    account_length_cut(plan, decision, facts, r)  # after memory's cut: the rows it costs (advisor/seqlen.py)
    _examples_per_step(plan, decision, facts, r)
    _dpo_batch(plan, facts, r)
    _dpo_prediction(plan, facts, r)
    _dpo_only(plan, r)
    _schedule(plan, v, facts, r)
    _speed(plan, facts, r)
    for key, why in DEFAULT_REASONS.items():
        r.setdefault(key, why)
    plan.reasons = dict(sorted(r.items()))
    return plan


def _method_reason(d: Decision) -> str:
    fired = [
        t
        for t in d.trace
        if t.id in d.fired
        and "method" in t.then.get("recommend", {})
        and t.then["recommend"]["method"] == (d.method_by_rules or d.method)
    ]
    best = max(fired, key=lambda t: t.priority, default=None)
    base = f"{best.message} [{best.id}; {best.source}]" if best else "chosen by the rules"
    if d.method_by_rules and d.method != d.method_by_rules:
        return f"asked for in the answers (the rules would choose {d.method_by_rules}: {base})"
    return base


def _stage_reason(d: Decision) -> str:
    fired = [t for t in d.trace if t.id in d.fired and t.then.get("recommend", {}).get("stage") == d.stage]
    best = max(fired, key=lambda t: t.priority, default=None)
    return f"{best.message} [{best.id}; {best.source}]" if best else "chosen by the rules"


def _attention(plan: TrainingPlan, facts: Facts, r: dict) -> None:
    """Per family: never an attention implementation transformers refuses for the model's class."""
    from advisor.attention import choose_attention

    m = facts.model
    choice = choose_attention(
        getattr(m, "family", None) or plan.model_family, getattr(m, "attn_logit_softcapping", None)
    )
    plan.attn_implementation = choice.implementation
    r["attn_implementation"] = choice.reason


def _precision(plan: TrainingPlan, d: Decision, facts: Facts, r: dict) -> None:
    """The precision the memory figures were made for (the candidate's), with why."""
    from advisor.precision import default_precision, reason

    bf16 = facts.values.get("gpu_bf16")
    cand = d.candidates.get(plan.method)
    plan.precision = (
        cand.precision
        if cand is not None and cand.precision
        else default_precision(plan.method, None if bf16 is None else bool(bf16))
    )
    first = default_precision(plan.method, None if bf16 is None else bool(bf16))
    r["precision"] = reason(
        plan.method,
        plan.precision,
        bf16_gpu=None if bf16 is None else bool(bf16),
        fell_back=plan.precision != first,
    )


def _sequence_length(plan: TrainingPlan, facts: Facts, r: dict) -> None:
    """The length memory tries first (advisor/seqlen.py): the answers' `max_length`, else one covering the
    measured rows (or the answers' `tokens_per_example`), within the model's context; the guide's start else.
    A rule's `set` keeps its reason only when nothing better is known."""
    from advisor.seqlen import choose

    choice = choose(facts.values, facts.thresholds, facts.answers, facts.model, facts.unmeasured)
    plan.max_length = choice.length
    r["max_length"] = choice.reason


def _data(plan: TrainingPlan, facts: Facts, r: dict) -> None:
    v = facts.values
    cap = int(plan.data.validation_max_rows) if plan.data.validation_max_rows else None  # TW408's cap
    plan.data = DataSpec(
        source=facts.answers.dataset,
        format=v.get("data_format"),
        validation_fraction=plan.data.validation_fraction,
        validation_max_rows=cap,
    )
    n = v.get("sft_examples") if "sft" in plan.stage else v.get("preference_pairs")
    if cap and n and round(n * plan.data.validation_fraction) > cap:
        r["data.validation_max_rows"] = (
            f"{cap:,}: {plan.data.validation_fraction:.0%} of {int(n):,} would hold out "
            f"{round(n * plan.data.validation_fraction):,} rows; {cap:,} estimate the validation loss as well and "
            f"keep each evaluation short (Data Preparation Best Practices; the cap is tunewise's)"
        )
    pref = facts.answers.preference_dataset
    if pref and plan.stage == "dpo" and not plan.data.source:
        plan.data.source, plan.data.format = pref, "preference"
        r["data.source"] = (
            "the preference file named in the answers (`preference_dataset`): this plan is DPO alone"
        )
    else:
        r["data.source"] = "the dataset named in the answers" if plan.data.source else "no dataset given yet"
    if pref and plan.dpo is not None and plan.stage == "sft+dpo":
        plan.dpo.source = pref
        r["dpo.source"] = (
            "the preference file named in the answers (`preference_dataset`): SFT trains on `dataset`, "
            "then DPO on these pairs, split 80/20 like it (Modern Alignment and Instruction Tuning)"
        )
    if v.get("data_format") == "text":
        plan.completion_only_loss = False
        r["completion_only_loss"] = "plain-text data has no prompt/response split: loss on every token"
    elif v.get("data_format") in ("messages", "sharegpt") and chat_template_markers(plan.model) is False:
        r["completion_only_loss"] = (
            "loss only on the assistant turns. The model's chat template has no {% generation %} markers, which "
            "TRL's assistant-only loss needs: unless TRL knows a patched copy of this template, the job trains "
            "each assistant turn as a prompt-completion row (the conversation before it as the prompt), which "
            "masks the same tokens without markers (launcher/chatdata.py)"
        )


def chat_template_markers(model: str | None) -> bool | None:
    """Whether a local model folder's chat template marks the assistant's turns with {% generation %}; None
    when there is no local template to read (a hub id, or a folder without one). Reads the files only."""
    import json
    from pathlib import Path

    if not model or not Path(model).is_dir():
        return None
    d = Path(model)
    template = None
    if (d / "chat_template.jinja").is_file():
        template = (d / "chat_template.jinja").read_text(encoding="utf-8", errors="replace")
    elif (d / "tokenizer_config.json").is_file():
        try:
            template = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8")).get(
                "chat_template"
            )
        except (ValueError, OSError):
            return None
        if isinstance(template, list):  # named templates: the default one
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    if not isinstance(template, str) or not template:
        return None
    return "generation" in template and "endgeneration" in template


def _hardware_and_batch(plan: TrainingPlan, d: Decision, facts: Facts, r: dict) -> None:
    v, th = facts.values, facts.thresholds
    n = int(v.get("gpu_count", 0))
    cand = d.candidates.get(plan.method)
    plan.gpu_indices = list(cand.gpu_indices) if cand and cand.gpu_indices else None
    used = len(plan.gpu_indices) if plan.gpu_indices else n
    plan.n_gpus = max(1, used)
    plan.distributed = cand.distributed if cand and used > 1 else None
    plan.cpu_offload = bool(cand and cand.cpu_offload and plan.distributed == "fsdp")
    given = facts.gpus and facts.gpus[0].source == "answers"
    r["n_gpus"] = (
        f"{n} GPU(s) {'listed in the answers' if given else 'detected'}"
        if n
        else "no GPU here: planned for one GPU"
    )
    if plan.gpu_indices:
        r["n_gpus"] = r["gpu_indices"] = (
            f"{used} of the {n} GPUs (indices {', '.join(map(str, plan.gpu_indices))}): the larger card(s) alone "
            f"fit a longer sequence or larger micro-batch than all {n} at the smallest card's memory "
            "(measurement: memory estimate)"
        )
    if plan.distributed:
        r["distributed"] = _distributed_reason(plan, d)
    if plan.cpu_offload:
        r["cpu_offload"] = (
            f"no layout without offload fits: FSDP keeps the parameter shards, their gradients and the "
            f"optimizer step in host RAM (about {cand.host_gib or 0:g} GiB for all processes). "
            "Every step moves each layer's shard over PCIe in the forward and again in the backward "
            "and runs AdamW on the CPU: expect a much slower step than on-GPU FSDP (not measured "
            f"here). The guide's FSDP + QLoRA route for very large models ({PRACTICAL})"
        )
    start_b, start_acc = int(th.get("batch_size_start", 4)), int(th.get("grad_accum_start", 4))
    if "micro_batch_size" not in d.settings:
        plan.micro_batch_size, plan.grad_accum = start_b, start_acc
    r.setdefault(
        "micro_batch_size",
        f"the guide's starting batch size {plan.micro_batch_size} (range 4-8; {PRACTICAL})",
    )
    if cand is None:
        return
    plan.predicted_peak_gib, plan.predicted_device_gib = cand.peak_gib, cand.device_gib
    if not (cand.fits and cand.micro_batch):
        what = (
            "no GPU to check against" if not facts.gpus else "does not fit the GPU at any tried configuration"
        )
        r["predicted_peak_gib"] = (
            f"estimated {cand.device_gib:g} GiB in use at peak for {plan.method} ({what}; measurement)"
        )
        return
    plan.micro_batch_size, plan.grad_accum = cand.micro_batch, cand.grad_accum or plan.grad_accum
    tokens = plan.micro_batch_size * (cand.seq_len or plan.max_length)
    if cand.seq_len and cand.seq_len < plan.max_length:
        wanted = r.get("max_length", "")
        r["max_length"] = (
            f"{cand.seq_len:,}: the longest length that fits the GPU (measurement: memory estimate); "
            f"{plan.max_length:,} does not fit even at micro-batch 1"
            + (f" (wanted: {wanted})" if wanted else "")
        )
        plan.max_length = cand.seq_len
    usable = v.get("gpu_usable_gib", 0)
    if plan.gpu_indices:
        usable = round(
            min(g.usable_gib for g in facts.gpus if g.index in plan.gpu_indices)
            * (1 - th.get("fit_margin", 0.0)),
            2,
        )
    if plan.micro_batch_size < start_b:
        r["micro_batch_size"] = (
            f"{plan.micro_batch_size}: the guide's starting batch {start_b} does not fit the "
            f"{usable:g} GiB usable; accumulation is raised to keep the effective batch "
            "(measurement: memory estimate)"
        )
    else:
        r["micro_batch_size"] = (
            f"{plan.micro_batch_size}: the largest micro-batch up to "
            f"{int(th.get('batch_size_max', 8))} (the guide's 4-8) that fits the {usable:g} GiB "
            "usable (measurement: memory estimate)"
        )
    gpus = f" x {plan.n_gpus} GPUs" if plan.n_gpus > 1 else ""
    r["grad_accum"] = (
        f"{plan.grad_accum}: {plan.micro_batch_size} x {plan.grad_accum}{gpus} = effective batch "
        f"{plan.effective_batch}, the guide's start of batch {start_b} x accumulation {start_acc} "
        f"= {start_b * start_acc} ({PRACTICAL})"
    )
    r["predicted_peak_gib"] = (
        f"estimated {cand.device_gib:g} GiB in use at peak ({cand.peak_gib:g} GiB allocated) "
        f"at {plan.micro_batch_size} x {cand.seq_len or plan.max_length:,} = {tokens:,} "
        "tokens per step (measurement)"
    )


def _examples_per_step(plan: TrainingPlan, d: Decision, facts: Facts, r: dict) -> None:
    """Micro-batch and accumulation from the examples one optimizer step should average (advisor/batching.py):
    packed rows hold several examples each, and small data needs enough optimizer steps to learn. Memory
    bounds the micro-batch only (the fit search's largest); a smaller micro-batch is re-estimated."""
    from advisor.batching import describe, examples_per_row, plan_step

    if plan.max_steps:
        return
    v = facts.values
    sft = "sft" in plan.stage
    n = v.get("sft_examples") if sft else v.get("preference_pairs")
    mean = trained_mean_tokens(facts.data, plan.max_length, plan.completion_only_loss) if sft else None
    epochs = plan.dpo.epochs if plan.stage == "dpo" and plan.dpo is not None else plan.epochs
    cand = d.candidates.get(plan.method)
    fit_micro = (
        cand.micro_batch if cand is not None and cand.fits and cand.micro_batch else plan.micro_batch_size
    )
    per_row = examples_per_row(plan.max_length, mean, plan.packing and sft)
    b = plan_step(
        train_examples=plan.train_examples(int(n)) if n else None,
        epochs=float(epochs),
        per_row=per_row,
        fit_micro=fit_micro,
        n_gpus=plan.n_gpus,
        th=facts.thresholds,
    )
    plan.micro_batch_size, plan.grad_accum = b.micro_batch, b.grad_accum
    memory = (
        f"the memory estimate allows a micro-batch of up to {fit_micro} at {plan.max_length:,} tokens "
        "(measurement: memory estimate)"
        if cand is not None and cand.fits and cand.micro_batch
        else f"no GPU memory to fit against: the micro-batch stays at most the guide's {fit_micro}"
    )
    r["micro_batch_size"], r["grad_accum"] = describe(
        b, packing=plan.packing and sft, max_length=plan.max_length, n_gpus=plan.n_gpus, memory=memory
    )
    examples = b.rows_per_step * per_row
    if examples > b.high and plan.n_gpus > 1 and b.micro_batch == 1 and b.grad_accum == 1:
        each = f" (each a packed row of ~{per_row:.1f} examples)" if per_row > 1 else ""
        d.warnings.append(
            f"Effective batch {b.rows_per_step} ({plan.micro_batch_size} x {plan.grad_accum} x {plan.n_gpus} GPUs)"
            f"{each} is ~{examples:.0f} examples per step, above the guide's range (batch 4-8 x accumulation 2-4, "
            f"at most {b.high}): with so many GPUs each step averages more examples than the guide's starting "
            "settings assume; raise the learning rate with care or train on fewer GPUs."
        )
    if plan.stage == "sft+dpo" and plan.dpo is not None and per_row > 1:
        # DPO pairs are not packed: that stage keeps the guide's examples per step at the fitted micro-batch.
        dpo_b = plan_step(
            train_examples=plan.train_examples(int(v["preference_pairs"]))
            if v.get("preference_pairs")
            else None,
            epochs=float(plan.dpo.epochs),
            per_row=1.0,
            fit_micro=fit_micro,
            n_gpus=plan.n_gpus,
            th=facts.thresholds,
        )
        plan.dpo.micro_batch_size, plan.dpo.grad_accum = dpo_b.micro_batch, dpo_b.grad_accum
    if plan.micro_batch_size != fit_micro and cand is not None and cand.fits:
        _re_estimate(plan, cand, facts, r)


def _re_estimate(plan: TrainingPlan, cand, facts: Facts, r: dict) -> None:
    """The step's memory at the micro-batch the plan now runs (smaller than the fit search's largest); the
    chosen method's candidate takes the same figures, so the memory table shows what the job runs."""
    from advisor.memory import estimate
    from advisor.models import ModelFacts

    if not isinstance(facts.model, ModelFacts):
        return
    cfg = _stage_config(plan, facts, "sft" if "sft" in plan.stage else "dpo")
    e = estimate(facts.model, cfg)
    plan.predicted_peak_gib, plan.predicted_device_gib = (
        round(e.peak_allocated_gib, 2),
        round(e.device_gib, 2),
    )
    cand.micro_batch, cand.grad_accum = plan.micro_batch_size, plan.grad_accum
    cand.peak_gib, cand.device_gib = plan.predicted_peak_gib, plan.predicted_device_gib
    tokens = plan.micro_batch_size * plan.max_length
    r["predicted_peak_gib"] = (
        f"estimated {plan.predicted_device_gib:g} GiB in use at peak ({plan.predicted_peak_gib:g} GiB allocated) "
        f"at {plan.micro_batch_size} x {plan.max_length:,} = {tokens:,} tokens per micro-batch (measurement)"
    )


def _dpo_only(plan: TrainingPlan, r: dict) -> None:
    """A plan that is DPO alone runs the DPO stage's settings: its learning rate and epochs are the plan's (so
    every format shows what the job runs), and the SFT-only settings (packing, completion-only loss) are off."""
    if plan.stage != "dpo" or plan.dpo is None:
        return
    plan.learning_rate, plan.epochs = plan.dpo.learning_rate, plan.dpo.epochs
    why = r.get("dpo.learning_rate") or r.get("dpo") or "the DPO stage's settings"
    r["learning_rate"] = f"{plan.learning_rate:g}: the DPO stage's rate (this plan is DPO alone); {why}"
    r["epochs"] = f"{plan.epochs:g}: the DPO stage's epochs (this plan is DPO alone)"
    plan.packing = plan.completion_only_loss = plan.padding_free = False
    for key in ("packing", "completion_only_loss", "padding_free"):
        r[key] = "SFT only: DPO scores whole (prompt, chosen, rejected) rows, unpacked"
    r["gradient_checkpointing"] = (
        "on: recompute activations in the backward (less memory for the DPO step's "
        f"chosen and rejected rows, ~20-30% slower) ({PRACTICAL})"
    )
    r["early_stopping_patience"] = (
        f"stop after {plan.early_stopping_patience} evaluations without a lower "
        f"validation loss; the best checkpoint is kept ({PITFALLS})"
    )


def _distributed_reason(plan: TrainingPlan, d: Decision) -> str:
    """Why this layout: what the strategy search (advisor.strategy) found for the method."""
    cand = d.candidates.get(plan.method)
    what = (
        "data parallel (DDP): each GPU holds a full copy and the largest micro-batch fits that way"
        if plan.distributed == "ddp"
        else f"sharded (FSDP): each GPU holds 1/{plan.n_gpus} of the weights, gradients and optimizer states"
    )
    tried = "; ".join(cand.tried) if cand and cand.tried else ""
    return (
        f"{what}. Layouts ranked by the longest sequence, then the largest micro-batch, then GPUs used "
        f"(DDP before FSDP before FSDP + offload){': ' + tried if tried else ''} (measurement: memory "
        f"estimate; {PRACTICAL})"
    )


def _schedule(plan: TrainingPlan, v: dict, facts: Facts, r: dict) -> None:
    n = v.get("sft_examples") if "sft" in plan.stage else v.get("preference_pairs")
    if n:
        train = plan.train_examples(n)
        sft = "sft" in plan.stage
        mean = trained_mean_tokens(facts.data, plan.max_length, plan.completion_only_loss) if sft else None
        seqs = plan.sequences_per_epoch(train, mean)  # the report's step arithmetic counts the same way
        steps = max(1, math.ceil(seqs / plan.effective_batch))
        frac = facts.thresholds.get("eval_every_epoch_fraction", 0.05)
        small = max(1, min(plan.eval_steps, steps // 2 or 1))
        plan.eval_steps = max(small, math.ceil(steps * frac))
        plan.save_steps = plan.eval_steps
        packed = (
            f"{train:,} training rows × {mean:,.0f} mean tokens packed into {plan.max_length:,}-token rows "
            f"≈ {seqs:,} sequences"
            if seqs != train
            else f"{train:,} training rows"
        )
        cadence = (
            f"every {plan.eval_steps:,} = {frac:.0%} of an epoch, not more often on large data"
            if plan.eval_steps > small
            else f"every {plan.eval_steps}"
        )
        r["eval_steps"] = (
            f"{packed} / effective batch {plan.effective_batch} = {steps:,} steps per "
            f"epoch; evaluate {cadence} so early stopping can react ({PITFALLS})"
        )
    else:
        r["eval_steps"] = f"evaluate every {plan.eval_steps} steps to watch validation loss ({PITFALLS})"
    r["save_steps"] = "checkpoint at every evaluation so the best one can be kept"


def _speed(plan: TrainingPlan, facts: Facts, r: dict) -> None:
    """How long the run takes on the planned GPUs (advisor/throughput/forecast.py), or why that is unknown."""
    from advisor.throughput.forecast import forecast_reason, plan_forecast, speed_spec

    fc = plan_forecast(plan, facts)
    plan.speed = speed_spec(fc)
    r["speed"] = forecast_reason(fc)


def _stage_config(plan: TrainingPlan, facts: Facts, stage: str):
    """The estimator's settings for the plan's `stage` step at the batch that stage runs (for DPO after SFT, with
    the frozen copy of the SFT adapter TRL keeps as the reference); Spectrum at the plan's top percent."""
    from dataclasses import replace

    from advisor.memory import config_for_plan

    return replace(
        config_for_plan(plan, stage), spectrum_fraction=facts.thresholds.get("spectrum_top_percent", 30) / 100
    )


def _dpo_prediction(plan: TrainingPlan, facts: Facts, r: dict) -> None:
    """The DPO step's memory at the batch DPO runs, kept in the plan (`dpo.predicted_*`) for the job's summary
    to compare its DPO stage with. A plan that is DPO alone never runs the SFT step the method's candidate
    figure is for: its own predicted peak is this one."""
    from advisor.memory import estimate
    from advisor.models import ModelFacts

    if plan.dpo is None or not isinstance(facts.model, ModelFacts):
        return
    cfg = _stage_config(plan, facts, "dpo")
    e = estimate(facts.model, cfg)
    plan.dpo.predicted_peak_gib, plan.dpo.predicted_device_gib = (
        round(e.peak_allocated_gib, 2),
        round(e.device_gib, 2),
    )
    if plan.stage != "dpo":
        return
    plan.predicted_peak_gib, plan.predicted_device_gib = (
        plan.dpo.predicted_peak_gib,
        plan.dpo.predicted_device_gib,
    )
    mb = cfg.batch_size
    r["predicted_peak_gib"] = (
        f"estimated {plan.predicted_device_gib:g} GiB in use at peak "
        f"({plan.predicted_peak_gib:g} GiB allocated) for the DPO step: {mb} pairs "
        f"({2 * mb} rows: chosen and rejected) x {plan.max_length:,} tokens with its "
        "reference forward (measurement: memory estimate)"
    )


def _dpo_batch(plan: TrainingPlan, facts: Facts, r: dict) -> None:
    """The DPO stage's step at the plan's micro-batch: twice the rows (chosen and rejected) and a reference
    forward (advisor/memory/dpo.py). When it does not fit the GPU, DPO gets its own micro-batch and the
    accumulation that keeps its effective batch (`dpo.micro_batch_size`, `dpo.grad_accum`). The reason goes
    under `dpo.micro_batch_size`, so the report's DPO row states it."""
    from advisor.memory import estimate, fit_search
    from advisor.models import ModelFacts

    if plan.dpo is None or not isinstance(facts.model, ModelFacts) or not facts.gpus:
        return
    th = facts.thresholds
    gpus = [g for g in facts.gpus if plan.gpu_indices is None or g.index in plan.gpu_indices] or facts.gpus
    gpu_gib = min(g.usable_gib for g in gpus)
    margin = th.get("fit_margin", 0.10)
    usable = gpu_gib * (1 - margin)
    cfg = _stage_config(plan, facts, "dpo")
    mb, accum = plan.stage_batch("dpo")
    e = estimate(facts.model, cfg)
    shape = f"{mb} pairs ({2 * mb} rows: chosen and rejected) x {plan.max_length:,} tokens"
    if e.device_gib <= usable:
        r["dpo.micro_batch_size"] = (
            f"the DPO step at the SFT micro-batch, {shape}, with its reference forward: estimated "
            f"{e.device_gib:.1f} GiB in use of {usable:.1f} GiB usable; the same micro-batch {mb} x "
            f"accumulation {accum} (measurement: memory estimate)"
        )
        return
    fit = fit_search(
        facts.model,
        cfg,
        gpu_gib,
        margin=margin,
        target_effective_batch=mb * accum,
        seq_lens=(plan.max_length,),
    )
    plan.dpo.micro_batch_size, plan.dpo.grad_accum = fit.micro_batch, fit.grad_accum
    head = (
        f"the DPO step at the SFT micro-batch, {shape}, with its reference forward, needs an estimated "
        f"{e.device_gib:.1f} GiB, more than the {usable:.1f} GiB usable"
    )
    if fit.fits:
        r["dpo.micro_batch_size"] = (
            f"{head}: DPO runs micro-batch {fit.micro_batch} x accumulation {fit.grad_accum} "
            f"(effective batch {fit.micro_batch * fit.grad_accum}, as SFT), {fit.device_gib:.1f} GiB "
            "(measurement: memory estimate)"
        )
    else:
        r["dpo.micro_batch_size"] = (
            f"{head}, and even micro-batch 1 needs {fit.device_gib:.1f} GiB: DPO runs micro-batch 1 x "
            f"accumulation {fit.grad_accum} and may run out of memory; shorten max_length or use "
            "qlora (measurement: memory estimate)"
        )
