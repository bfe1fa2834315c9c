"""The training-plan table of the report: every value, why it was chosen, and the arithmetic.

The reasons come from `TrainingPlan.reasons` (filled by the plan builder, citing the guide or a
measurement); derived quantities (sequences and tokens per step, steps per epoch) are computed here
and shown with their arithmetic so a reader can check them.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from advisor.plan import TrainingPlan
from advisor.report.sections import show_path

NO_REASON = "default (no reason recorded)"


def _n(x: float) -> str:
    """1,024 / 0.0002 / 2e-4 as a person writes them."""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if x.is_integer() and abs(x) >= 1:
            return f"{int(x):,}"
        return f"{x:g}"
    return str(x)


class _Reasons:
    """Looks up `plan.reasons` and remembers which keys the table used, so none is left out."""

    def __init__(self, plan: TrainingPlan):
        self.plan = plan
        self.used: set[str] = set()
        self.shown: set[str] = set()  # reason texts already printed in an earlier row

    def __call__(self, *keys: str) -> str:
        """Reasons for these keys; "section.*" takes every key of that section."""
        seen: list[str] = []
        expanded = []
        for k in keys:
            expanded += (
                sorted(x for x in self.plan.reasons if x.startswith(k[:-1])) if k.endswith(".*") else [k]
            )
        for k in expanded:
            r = self.plan.reasons.get(k)
            self.used.add(k)
            if r and r not in seen:
                seen.append(r)
        if not seen:
            return NO_REASON
        parts: list[str] = []
        for x in seen:
            part = _back_reference(x) if x in self.shown else None
            part = part or _sentence(x)
            if part not in parts:
                parts.append(part)
        self.shown.update(seen)
        return "; ".join(parts)

    def rest(self) -> list[list[str]]:
        """Rows for reasons the table has no place for (the value read from the plan)."""
        rows = []
        for key, why in self.plan.reasons.items():
            if key in self.used:
                continue
            obj, name = self.plan, key
            if "." in key:
                sec, name = key.split(".", 1)
                obj = getattr(self.plan, sec, None)
            value = getattr(obj, name, None) if obj is not None else None
            shown = (
                ", ".join(map(str, value))
                if isinstance(value, list)
                else _n(value)
                if value is not None
                else "—"
            )
            rows.append([key.replace("_", " ").replace(".", ": "), shown or "—", _sentence(why)])
        return rows


def _sentence(s: str) -> str:
    return s.rstrip(".")


def _back_reference(reason: str) -> str | None:
    """A rule's reason shared by several rows is written out once; later rows point back to it by the
    rule's id. Reasons without a rule id are short and are repeated instead (None)."""
    rule = re.search(r"\[(TW\d+[\w-]*)", reason)
    return f"see above ({rule.group(1)})" if rule else None


def _path(p: str | None) -> str:
    return show_path(p) if p and Path(p).is_absolute() else (p or "")


def _split_size(examples: int | None, plan: TrainingPlan) -> tuple[int | None, str]:
    if examples is None:
        return None, ""
    if plan.own_validation:
        return examples, f"{examples:,} training examples (validation from its own file)"
    share = 1 - plan.data.validation_fraction
    n_train = plan.train_examples(examples)
    if n_train != examples - (examples - math.floor(examples * share)):
        return n_train, (
            f"{examples:,} less a validation split capped at {plan.data.validation_max_rows:,} rows "
            f"= {n_train:,} training examples"
        )
    return n_train, f"{share:.0%} of {examples:,} = {n_train:,} training examples"


def step_arithmetic(plan: TrainingPlan, data, examples: int | None, why=None) -> list[list[str]]:
    """Rows for sequences/tokens per optimizer step and the number of steps."""
    why = why or _Reasons(plan)
    gpus = max(1, plan.n_gpus)
    per_step = plan.effective_batch
    gpu_part = f" × {gpus} GPUs" if gpus > 1 else ""
    rows = [
        [
            "Sequences per optimizer step",
            _n(per_step),
            f"{plan.micro_batch_size} × {plan.grad_accum}{gpu_part} = {per_step:,} "
            f"(micro-batch × accumulation{' × GPUs' if gpus > 1 else ''})",
        ]
    ]
    from advisor.data.report import trained_mean_tokens

    mean = trained_mean_tokens(data, plan.max_length, plan.completion_only_loss)
    if plan.packing and mean and "sft" in plan.stage:
        per_row = max(1.0, plan.max_length / mean)
        rows.append(
            [
                "Examples per optimizer step",
                f"~{per_step * per_row:,.0f}",
                f"{per_step:,} packed rows × ~{per_row:.1f} examples a row ({plan.max_length:,} / "
                f"{mean:,.0f} mean tokens); the guide's batch 4-8 × accumulation 2-4 counts examples: 8-32",
            ]
        )
    tokens = per_step * plan.max_length
    rows.append(
        [
            "Tokens per optimizer step",
            _n(tokens),
            f"{per_step:,} × {plan.max_length:,} = {tokens:,} "
            + (
                "(packing fills each sequence to the limit)"
                if plan.packing
                else "(at most; short examples are padded, not packed)"
            ),
        ]
    )
    n_train, split = _split_size(examples, plan)
    if n_train is None or plan.max_steps:
        if plan.max_steps:
            rows.append(["Optimizer steps", _n(plan.max_steps), why("max_steps")])
        return rows
    seqs = plan.sequences_per_epoch(n_train, mean)
    if plan.packing and mean:
        how = (
            f"{split}; packed: {n_train:,} × {mean:,.0f} mean tokens / {plan.max_length:,} "
            f"≈ {seqs:,} sequences"
        )
    else:
        how = split + (
            "; without token counts, one example per sequence (an upper bound with packing)"
            if plan.packing
            else ""
        )
    per_epoch = max(1, math.ceil(seqs / per_step))
    stage = " (SFT stage)" if plan.stage == "sft+dpo" else ""
    total = math.ceil(per_epoch * plan.epochs)
    rows.append(
        [f"Steps per epoch{stage}", _n(per_epoch), f"{how}; ⌈{seqs:,} / {per_step:,}⌉ = {per_epoch:,}"]
    )
    rows.append(
        [
            f"Total steps{stage} (at most)",
            _n(total),
            f"{per_epoch:,} × {_n(plan.epochs)} epochs = {total:,}; early stopping may end sooner"
            if plan.early_stopping_patience
            else f"{per_epoch:,} × {_n(plan.epochs)} epochs = {total:,}",
        ]
    )
    return rows


def speed_rows(plan: TrainingPlan, why) -> list[list[str]]:
    """Predicted time (and cost, where a price is known) of the run, or why it is unknown."""
    from advisor.throughput.forecast import cost_text, time_range

    sp = plan.speed
    if sp is None:
        return [["Predicted time", "unknown", why("speed")]]
    tps = ", ".join(f"{k.upper()} {v:,.0f}" for k, v in sp.tokens_per_s.items())
    rows = [
        ["Predicted time", f"{time_range(sp.run_s)} on {sp.n_gpus} × {sp.gpu} ({tps} tokens/s)", why("speed")]
    ]
    cost = cost_text(sp)
    rows.append(
        [
            "Predicted cost",
            cost.split(" at ", 1)[0] if cost else "unknown",
            ("at " + cost.split(" at ", 1)[1])
            if cost
            else "no price per GPU-hour: set `gpu_hour_price` in the answers (the dated default table has none for "
            "this card)",
        ]
    )
    return rows


def plan_rows(
    plan: TrainingPlan, data=None, examples: int | None = None
) -> tuple[list[list[str]], list[str]]:
    """(rows of Setting | Value | Why, notes below the table)."""
    p = plan
    why = _Reasons(p)
    rows = [
        ["Model", f"`{_path(p.model)}`", why("model")],
        ["Method", p.method, why("method")],
        ["Stage", p.stage, why("stage")],
    ]
    # the data row is always shown: "no dataset yet" is worth saying
    src = f"`{_path(p.data.source)}`" if p.data.source else "no dataset yet"
    share = p.data.validation_fraction
    split = "; validation from its own file" if p.own_validation else f"; {1 - share:.0%}/{share:.0%} split"
    if not p.data.validation and getattr(p.data, "validation_max_rows", None):
        split += f" (validation at most {p.data.validation_max_rows:,} rows)"
    rows.append(
        [
            "Data",
            src + (f" ({p.data.format})" if p.data.format else "") + split,
            why("data", "data.*", "split", "validation"),
        ]
    )
    rows.append(["Max sequence length", _n(p.max_length), why("max_length")])
    rows.append(["Micro-batch size", _n(p.micro_batch_size), why("micro_batch_size", "batch_size")])
    rows.append(["Gradient accumulation", _n(p.grad_accum), why("grad_accum")])
    rows += step_arithmetic(p, data, examples, why)
    rows.append(["Learning rate", _n(p.learning_rate), why("learning_rate")])
    rows.append(["Epochs", _n(p.epochs), why("epochs")])
    rows.append(
        [
            "Schedule",
            f"{p.lr_scheduler}, warm-up {p.warmup_ratio:.0%} of steps",
            why("lr_scheduler", "warmup_ratio"),
        ]
    )
    if p.lora:
        lo = p.lora
        alpha_note = f" ({lo.alpha // lo.r} × {lo.r})" if lo.r and lo.alpha % lo.r == 0 else ""
        targets = lo.target_modules if isinstance(lo.target_modules, str) else ", ".join(lo.target_modules)
        rows.append(
            ["LoRA rank / alpha", f"{lo.r} / {lo.alpha}{alpha_note}", why("lora", "lora.r", "lora.alpha")]
        )
        rows.append(["LoRA dropout", _n(lo.dropout), why("lora.dropout")])
        rows.append(["LoRA targets", targets, why("lora.target_modules", "lora.*")])
    if p.quantization:
        q = p.quantization
        rows.append(
            [
                "Quantization",
                f"4-bit {q.quant_type}"
                + (", double quantization" if q.double_quant else "")
                + f", {q.compute_dtype} compute",
                why("quantization", "quantization.*"),
            ]
        )
    if p.spectrum:
        s = p.spectrum
        n = len(s.unfrozen_parameters)
        value = f"top {_n(s.top_percent)}% of layers by SNR" + (
            f"; {n} patterns unfrozen" if n else "; scan not run yet"
        )
        rows.append(["Spectrum", value, why("spectrum", "spectrum.*")])
    if p.dpo:
        rows.append(
            [
                "DPO",
                f"beta {_n(p.dpo.beta)}, learning rate {_n(p.dpo.learning_rate)}, "
                f"{_n(p.dpo.epochs)} epoch(s)",
                why("dpo", "dpo.*"),
            ]
        )
    rows.append(["Gradient checkpointing", _n(p.gradient_checkpointing), why("gradient_checkpointing")])
    rows.append(["Packing", _n(p.packing), why("packing")])
    rows.append(["Loss on completions only", _n(p.completion_only_loss), why("completion_only_loss")])
    rows.append(["Precision", p.precision or ("bf16" if p.bf16 else "fp32/fp16"), why("precision", "bf16")])
    rows.append(["Optimizer", p.optimizer, why("optimizer")])
    rows.append(["Gradient clipping", f"max norm {_n(p.max_grad_norm)}", why("max_grad_norm")])
    rows.append(
        [
            "Attention / kernels",
            p.attn_implementation + (", Liger kernels" if p.liger else ""),
            why("attn_implementation", "liger"),
        ]
    )
    if p.weight_decay:
        rows.append(["Weight decay", _n(p.weight_decay), why("weight_decay")])
    stop = f"patience {p.early_stopping_patience} evaluations" if p.early_stopping_patience else "off"
    rows.append(
        [
            "Evaluation / early stopping",
            f"every {p.eval_steps} steps; {stop}",
            why("eval_steps", "early_stopping_patience"),
        ]
    )
    rows.append(
        [
            "Checkpoints",
            f"every {p.save_steps} steps, keep {p.save_total_limit}",
            why("save_steps", "save_total_limit"),
        ]
    )
    rows.append(
        [
            "GPUs",
            f"{p.n_gpus}" + (f" ({p.distributed})" if p.distributed else ""),
            why("n_gpus", "distributed"),
        ]
    )
    if p.predicted_peak_gib is not None:
        rows.append(
            [
                "Predicted peak memory",
                f"{p.predicted_peak_gib:,.1f} GiB allocated per GPU",
                why("predicted_peak_gib"),
            ]
        )
    rows += speed_rows(p, why)
    rows.append(
        ["Logging / seed", f"every {p.logging_steps} steps; seed {p.seed}", why("logging_steps", "seed")]
    )
    if p.evaluation is not None:
        rows.append(["Held-out evaluation", _evaluation(p), why("evaluation")])
    why("trust_remote_code")  # stated below the table
    rows += why.rest()
    notes = [
        f"trust_remote_code: {'on' if p.trust_remote_code else 'off'}. "
        "The run directory's `plan.yaml` holds exactly these values; edit it there to change the run."
    ]
    return rows, notes


def _evaluation(p: TrainingPlan) -> str:
    """What `tunewise eval` will measure at the end of the job (launcher/evaluation)."""
    from advisor.task_metrics import label, task_metrics

    e = p.evaluation
    if not e.enabled:
        return "off at the end of the job (`tunewise eval RUN_DIR` runs it)"
    names = list(dict.fromkeys([*task_metrics(e.task), *([e.target_metric] if e.target_metric else [])]))
    if not e.run_tests:
        names = [m for m in names if m != "tests_pass"]
    tests_note = (
        " (where the rows carry tests; the model's code runs on this machine, `evaluation.run_tests`)"
    )
    shown = [label(m) + (tests_note if m == "tests_pass" else "") for m in names]
    text = (
        f"{', '.join(shown)} on up to {e.max_examples:,} held-out examples: fine-tuned vs "
        f"the base model zero-shot and {e.few_shot}-shot, 95% intervals"
    )
    if e.target_metric and e.target is not None:
        text += f"; target {label(e.target_metric)} {'≤' if e.target_metric == 'perplexity' else '≥'} {e.target:g}"
    return text
