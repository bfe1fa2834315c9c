"""How long a plan's run takes and what it costs, before launch: the throughput model applied to the
plan's stages, steps and GPUs, and a price per GPU-hour.

    SFT steps = ⌈packed sequences / effective batch⌉ × epochs (or the plan's max_steps)
    DPO steps = ⌈training pairs / DPO's effective batch⌉ × DPO epochs
    time      = Σ steps × predicted optimizer-step time + evaluations (forward only, every eval_steps)
    cost      = time × GPUs × price per GPU-hour

Every time comes as (predicted, shortest, longest): the fit's spread (rules/throughput.yaml). Model
loading, saving and the end-of-run evaluation are not counted; early stopping can only shorten the run.
Anything the forecast cannot know (no GPU named, a card missing from the catalog, no example count)
makes it "unknown" with the reason, never a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from advisor.errors import UserError


@dataclass
class StageTime:
    stage: str  # sft | dpo
    steps: int
    step_s: float  # one optimizer step on all GPUs
    tokens_per_s: float
    eval_s: float  # the evaluations during the stage
    seconds: tuple[float, float, float]  # predicted, shortest, longest (training + evaluation)
    how: str  # the arithmetic, for the report
    assumptions: list[str] = field(default_factory=list)


@dataclass
class Forecast:
    gpu: str | None
    n_gpus: int
    stages: list[StageTime] = field(default_factory=list)
    unknown: str | None = None  # why there is no time, when there is none
    assumptions: list[str] = field(default_factory=list)
    price: tuple[float, str] | None = None  # USD per GPU-hour, where it comes from

    @property
    def seconds(self) -> tuple[float, float, float] | None:
        if self.unknown or not self.stages:
            return None
        return tuple(sum(s.seconds[i] for s in self.stages) for i in range(3))  # type: ignore[return-value]

    @property
    def cost(self) -> tuple[float, float, float] | None:
        """(predicted, lowest, highest) USD for the run on all its GPUs, when a price is known."""
        if self.seconds is None or self.price is None:
            return None
        return tuple(s / 3600 * self.n_gpus * self.price[0] for s in self.seconds)  # type: ignore[return-value]

    def to_dict(self) -> dict:
        d = {
            "gpu": self.gpu,
            "n_gpus": self.n_gpus,
            "unknown": self.unknown,
            "seconds": _r(self.seconds),
            "assumptions": list(self.assumptions),
            "stages": [
                {
                    "stage": s.stage,
                    "steps": s.steps,
                    "step_s": round(s.step_s, 3),
                    "tokens_per_s": round(s.tokens_per_s, 1),
                    "eval_s": round(s.eval_s, 1),
                    "seconds": _r(s.seconds),
                    "how": s.how,
                }
                for s in self.stages
            ],
            "usd_per_gpu_hour": self.price[0] if self.price else None,
            "price_source": self.price[1] if self.price else None,
            "cost_usd": _r(self.cost, 2),
        }
        return d


def duration(seconds: float) -> str:
    """Seconds for people: "40 s", "12 min", "3 h 05 min", "2 d 4 h"."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    m = round(s / 60)
    if m < 60:
        return f"{m} min"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m:02d} min"
    d, h = divmod(h, 24)
    return f"{d} d {h} h"


def time_range(run_s: list[float] | tuple) -> str:
    """ "2 h 05 min (1 h 49 min to 2 h 27 min)" from [predicted, shortest, longest]."""
    return f"{duration(run_s[0])} ({duration(run_s[1])} to {duration(run_s[2])})"


def cost_text(spec) -> str | None:
    """ "$4.10 ($3.60 to $4.80) at $3.00 per GPU-hour (source)" for a SpeedSpec with a price, else None."""
    if not spec or not spec.cost_usd:
        return None
    lo, hi = spec.cost_usd[1], spec.cost_usd[2]
    return (
        f"${spec.cost_usd[0]:,.2f} (${lo:,.2f} to ${hi:,.2f}) at ${spec.usd_per_gpu_hour:,.2f} per GPU-hour "
        f"× {spec.n_gpus} GPU{'s' if spec.n_gpus > 1 else ''}, {spec.price_source}"
    )


def _r(t, nd: int = 0):
    return None if t is None else [round(x, nd) for x in t]


def price_per_gpu_hour(answer: float | None, gpu_name: str | None) -> tuple[float, str] | None:
    """The user's `gpu_hour_price`, else the dated table's figure for the card, else None."""
    if answer is not None:
        return float(answer), "gpu_hour_price in the answers"
    from advisor.throughput.gpus import default_price, find_gpu

    spec = find_gpu(gpu_name) if gpu_name else None
    return default_price(spec) if spec else None


def forecast(
    plan,
    model,
    gpu_name: str | None,
    *,
    sft_examples: int | None,
    preference_pairs: int | None,
    mean_tokens: float | None = None,
    bf16: bool = True,
    price: float | None = None,
) -> Forecast:
    """The plan's run time on `gpu_name` (× plan.n_gpus) and its cost; `price` is the answers' gpu_hour_price."""
    from advisor.models import ModelFacts

    out = Forecast(gpu=gpu_name, n_gpus=max(1, plan.n_gpus))
    if not gpu_name:
        out.unknown = "no GPU to time it on: list the one you will train on under `gpus:` in the answers"
        return out
    if not isinstance(model, ModelFacts):
        out.unknown = "the model's shapes are unknown, so the step's work cannot be counted"
        return out
    try:
        stages = []
        if "sft" in plan.stage:
            stages.append(_stage(plan, model, gpu_name, "sft", sft_examples, mean_tokens, bf16))
        if "dpo" in plan.stage:
            stages.append(_stage(plan, model, gpu_name, "dpo", preference_pairs, None, bf16))
    except UserError as e:
        out.unknown = e.message + (f" ({e.hint})" if e.hint else "")
        return out
    missing = [s for s in stages if isinstance(s, str)]
    if missing:
        out.unknown = missing[0]
        return out
    out.stages = stages
    out.assumptions = sorted({a for s in stages for a in s.assumptions})
    out.price = price_per_gpu_hour(price, gpu_name)
    return out


def _stage(
    plan, model, gpu_name: str, stage: str, examples: int | None, mean_tokens: float | None, bf16: bool
):
    from advisor.memory import config_for_plan
    from advisor.throughput.model import tokens_per_s

    what = "training examples" if stage == "sft" else "preference pairs"
    cfg = config_for_plan(plan, stage)
    if plan.method == "spectrum":
        cfg = replace(cfg, spectrum_fraction=(plan.spectrum.top_percent if plan.spectrum else 30) / 100)
    mb, accum = plan.stage_batch(stage)
    per_step = mb * accum * max(1, plan.n_gpus)
    epochs = plan.dpo.epochs if stage == "dpo" and plan.dpo else plan.epochs
    per_epoch = None
    if plan.max_steps:
        steps, how = plan.max_steps, f"max_steps {plan.max_steps:,}"
    elif not examples:
        return (
            f"no count of {what} for the {stage.upper()} stage: give `dataset` or `examples` in the answers"
        )
    else:
        train = plan.train_examples(examples)
        seqs = plan.sequences_per_epoch(train, mean_tokens) if stage == "sft" else train
        unit = "sequences" if stage == "sft" else "pairs"
        per_epoch = max(1, math.ceil(seqs / per_step))
        steps = math.ceil(per_epoch * epochs)
        rows = 2 if stage == "dpo" else 1  # a pair is a chosen and a rejected row
        how = (
            f"{seqs * rows * plan.max_length:,} tokens per epoch; ⌈{seqs:,} {unit} / {per_step:,} per step⌉ × "
            f"{epochs:g} epoch{'s' if epochs != 1 else ''} = {steps:,} steps"
        )

    t = tokens_per_s(model, cfg, gpu_name, grad_accum=accum, mean_doc_tokens=mean_tokens, bf16=bf16)
    train_s = steps * t.step_s
    eval_s = _eval_seconds(plan, model, cfg, t, steps, examples, mean_tokens, stage)
    mid = train_s + eval_s
    epoch = f"; one epoch {duration(mid * per_epoch / steps)}" if per_epoch and epochs != 1 else ""
    return StageTime(
        stage=stage,
        steps=steps,
        step_s=t.step_s,
        tokens_per_s=t.tokens_per_s,
        eval_s=eval_s,
        seconds=(mid, mid * t.tokens_per_s / t.tokens_per_s_high, mid * t.tokens_per_s / t.tokens_per_s_low),
        how=f"{how} × {t.step_s:.2f} s per step ({t.tokens_per_s:,.0f} tokens/s on "
        f"{t.n_gpus} × {t.gpu})"
        + (f" + {eval_s / 60:,.0f} min of evaluation" if eval_s >= 30 else "")
        + (
            " (an upper bound: without token counts each example counts as a whole sequence)"
            if stage == "sft" and plan.packing and not mean_tokens and not plan.max_steps
            else ""
        )
        + epoch,
        assumptions=list(t.assumptions),
    )


def _eval_seconds(plan, model, cfg, t, steps: int, examples: int | None, mean_tokens, stage: str) -> float:
    """Evaluations during training: every eval_steps, a forward pass over the validation rows (no backward,
    no recomputation), timed at the training step's rate per FLOP."""
    from advisor.throughput.flops import step_work

    if not examples or plan.own_validation or not plan.eval_steps:
        return 0.0  # a separate validation file's size is not known here
    n_val = examples - plan.train_examples(examples)
    rows = plan.sequences_per_epoch(n_val, mean_tokens) if stage == "sft" else n_val
    work = step_work(model, cfg, mean_doc_tokens=mean_tokens)
    forward_share = (work.parts["forward"] + work.parts.get("reference_forward", 0)) / work.flops
    per_row_s = t.step_s / (t.tokens_per_step / (plan.max_length * (2 if stage == "dpo" else 1)))
    return (steps // plan.eval_steps) * rows * per_row_s * forward_share


def speed_spec(fc: Forecast):
    """The plan's record of a known forecast (`TrainingPlan.speed`), or None."""
    from advisor.plan import SpeedSpec

    if fc.seconds is None:
        return None
    return SpeedSpec(
        gpu=fc.gpu or "",
        tokens_per_s={s.stage: round(s.tokens_per_s, 1) for s in fc.stages},
        step_s={s.stage: round(s.step_s, 4) for s in fc.stages},
        steps={s.stage: s.steps for s in fc.stages},
        stage_s={s.stage: [round(x, 1) for x in s.seconds] for s in fc.stages},
        run_s=[round(x, 1) for x in fc.seconds],
        n_gpus=fc.n_gpus,
        usd_per_gpu_hour=fc.price[0] if fc.price else None,
        price_source=fc.price[1] if fc.price else None,
        cost_usd=[round(x, 2) for x in fc.cost] if fc.cost else None,
    )


def plan_forecast(plan, facts) -> Forecast:
    """The forecast for a plan from the facts it was built from (GPU, model, data, answers)."""
    v = facts.values
    from advisor.data.report import trained_mean_tokens

    mean = trained_mean_tokens(facts.data, plan.max_length, plan.completion_only_loss)
    gpu = facts.gpus[0].name if facts.gpus else None
    return forecast(
        plan,
        facts.model,
        gpu,
        sft_examples=v.get("sft_examples"),
        preference_pairs=v.get("preference_pairs"),
        mean_tokens=mean,
        bf16=v.get("gpu_bf16") is not False,
        price=getattr(facts.answers, "gpu_hour_price", None),
    )


def forecast_reason(fc: Forecast) -> str:
    """The plan's reason for `speed`: the arithmetic per stage, the range and its source, the assumptions."""
    if fc.unknown:
        return f"time unknown: {fc.unknown}"
    parts = [f"{s.stage.upper()}: {s.how}" for s in fc.stages]
    text = (
        "; ".join(parts) + "; the range is the throughput model's spread (its largest blind-check error, "
        "bench/results/throughput-accuracy-2026-12-06.txt; measurement), widened where an assumption below says"
    )
    if fc.assumptions:
        text += "; assumed: " + "; ".join(fc.assumptions)
    return text


def rescale_speed(old, new, model) -> None:
    """After a change to a plan (the OOM ladder's step down), move `new.speed` by what the throughput model
    says the change costs, stage by stage (a ratio, so what the old forecast knew carries over); None when
    it cannot be redone, with the reason in `new.reasons["speed"]`."""
    from dataclasses import replace as dc_replace

    from advisor.memory import config_for_plan
    from advisor.throughput.model import tokens_per_s

    sp = old.speed
    if sp is None:
        return
    try:
        ratios = {}
        for stage in sp.step_s:
            before = tokens_per_s(
                model, config_for_plan(old, stage), sp.gpu, grad_accum=old.stage_batch(stage)[1]
            )
            after = tokens_per_s(
                model, config_for_plan(new, stage), sp.gpu, grad_accum=new.stage_batch(stage)[1]
            )
            ratios[stage] = after.step_s / before.step_s  # same tokens per optimizer step before and after
    except UserError as e:
        new.speed = None
        new.reasons["speed"] = (
            f"time unknown: the plan changed and its forecast could not be redone ({e.message})"
        )
        return
    stage_s = {k: [x * ratios[k] for x in v] for k, v in sp.stage_s.items()}
    run_s = [round(sum(v[i] for v in stage_s.values()), 1) for i in range(3)] if stage_s else sp.run_s
    scale = run_s[0] / sp.run_s[0] if sp.run_s and sp.run_s[0] else 1.0
    new.speed = dc_replace(
        sp,
        step_s={k: round(v * ratios[k], 4) for k, v in sp.step_s.items()},
        tokens_per_s={k: round(v / ratios[k], 1) for k, v in sp.tokens_per_s.items()},
        stage_s={k: [round(x, 1) for x in v] for k, v in stage_s.items()},
        run_s=run_s,
        cost_usd=[round(c * scale, 2) for c in sp.cost_usd] if sp.cost_usd else None,
    )
    new.reasons["speed"] = (
        old.reasons.get("speed", "") + "; then moved by the throughput model for the step "
        "down after running out of memory: "
        + ", ".join(f"{k.upper()} step × {r:.2f}" for k, r in ratios.items())
    )


def carry_speed(old, new) -> None:
    """The OOM ladder's step down (`old` -> `new` TrainingPlans): move the forecast with the plan
    (`rescale_speed`), or make it unknown when the model's config cannot be read here."""
    from advisor.models import resolve_model

    if old.speed is None:
        return
    try:
        model = resolve_model(old.model)
    except UserError as e:
        new.speed = None
        new.reasons["speed"] = (
            f"time unknown: the plan changed and its forecast could not be redone ({e.message})"
        )
        return
    rescale_speed(old, new, model)
