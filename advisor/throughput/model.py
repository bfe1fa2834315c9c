"""Tokens per second and step time of a training step on a named GPU, before anything is launched.

    step time = tensor FLOPs / (dense 16-bit peak × achieved efficiency) + memory-bound bytes / bandwidth

FLOPs and bytes: `advisor.throughput.flops`. Peak and bandwidth: the GPU catalog (rules/gpus.yaml).
The achieved efficiency is the only fitted number, one per stack and kind of method (rules/throughput.yaml:
fitted by bench/throughput_accuracy.py on the committed H200 measurements, with the points it was fitted
on, the points left out as a blind check, and the spread the range is drawn with). Several GPUs: the
strategy's scaling factor, an assumption until measured.

Interface for the planner, the report, `tunewise estimate` and the strategy ranking:
`tokens_per_s(model, cfg, gpu) -> Throughput` (cfg: `advisor.memory.MemoryConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from advisor.errors import UserError
from advisor.memory import validate
from advisor.models import ModelFacts
from advisor.throughput.flops import StepWork, step_work
from advisor.throughput.gpus import GpuSpec, _data_path, require_gpu

MEASURED_ON = "H200"  # the card every efficiency was fitted on


class UnknownThroughput(UserError):
    """The model has no basis for this case (a card without catalog figures, fp32 training)."""


@dataclass(frozen=True)
class Throughput:
    """What the step's speed is predicted to be, for the whole job (all GPUs)."""

    gpu: str  # catalog name
    n_gpus: int
    tokens_per_s: float
    tokens_per_s_low: float  # the fit's spread
    tokens_per_s_high: float
    step_s: float  # one optimizer step: micro-batch × accumulation on every GPU
    tokens_per_step: int
    flops_per_token: float
    efficiency: float
    efficiency_key: str
    spread: float
    compute_share: float  # of a micro-batch's time, the tensor math (the rest: memory-bound traffic)
    assumptions: list[str] = field(default_factory=list)

    def seconds(self, tokens: float) -> tuple[float, float, float]:
        """(predicted, shortest, longest) seconds to train on `tokens` token positions."""
        return tokens / self.tokens_per_s, tokens / self.tokens_per_s_high, tokens / self.tokens_per_s_low

    def to_dict(self) -> dict:
        return {
            "gpu": self.gpu,
            "n_gpus": self.n_gpus,
            "tokens_per_s": round(self.tokens_per_s, 1),
            "tokens_per_s_range": [round(self.tokens_per_s_low, 1), round(self.tokens_per_s_high, 1)],
            "step_s": round(self.step_s, 4),
            "tokens_per_step": self.tokens_per_step,
            "flops_per_token": round(self.flops_per_token),
            "efficiency": round(self.efficiency, 4),
            "efficiency_key": self.efficiency_key,
            "spread": self.spread,
            "compute_share": round(self.compute_share, 3),
            "assumptions": list(self.assumptions),
        }


@lru_cache(maxsize=1)
def fit() -> dict:
    """rules/throughput.yaml: the fitted efficiencies, the spread and the multi-GPU scaling assumptions."""
    import yaml

    return yaml.safe_load(_data_path("throughput.yaml").read_text(encoding="utf-8"))


def efficiency_key(cfg) -> str:
    """Which fitted efficiency a step takes: per stack, adapters (LoRA/QLoRA) or dense (Spectrum/full);
    the plain stack's QLoRA apart (its kbit preparation runs the stream, attention and head in fp32)."""
    if cfg.stack == "plain" and cfg.method == "qlora":
        return "plain:qlora"
    return f"{cfg.stack}:{'adapters' if cfg.method in ('lora', 'qlora') else 'dense'}"


def step_seconds(
    work: StepWork, gpu: GpuSpec, efficiency: float, *, grad_accum: int = 1, bf16: bool = True
) -> tuple[float, float]:
    """(seconds of one micro-batch, the tensor math's share of it) on one GPU at `efficiency`."""
    compute = work.flops / (gpu.peak_tflops(bf16) * 1e12 * efficiency)
    memory = (work.dequant_bytes + work.optimizer_bytes / grad_accum) / (gpu.bandwidth_gbs * 1e9)
    return compute + memory, compute / (compute + memory)


def tokens_per_s(
    model: ModelFacts,
    cfg,
    gpu: GpuSpec | str,
    *,
    grad_accum: int = 1,
    mean_doc_tokens: float | None = None,
    bf16: bool = True,
    efficiency: float | None = None,
) -> Throughput:
    """Predicted tokens/s and step time of `cfg`'s step on `gpu` (a catalog row or any GPU name).

    `grad_accum`: micro-batches per optimizer step (the optimizer's traffic is paid once per step).
    `mean_doc_tokens`: the data's mean example length (FlashAttention-2's varlen attention only).
    `bf16`: the card trains in bf16 (else fp16 mixed precision; Spectrum and full then run fp32, which
    the model does not cover). `efficiency`: override the fitted one (the benchmark's fit uses this).
    Raises UnknownThroughput (a UserError) for a card missing from the catalog.
    """
    validate(cfg)
    if getattr(cfg, "cpu_offload", False):
        raise UnknownThroughput(
            "unknown throughput: FSDP with CPU offload moves every weight shard over PCIe in the "
            "forward and the backward and runs AdamW on the CPU, which the throughput model does "
            "not cover",
            "time a few steps with `tunewise launch RUN_DIR --max-steps 5`",
        )
    spec = gpu if isinstance(gpu, GpuSpec) else _require(gpu)
    bf16 = bf16 and spec.bf16_tflops is not None
    if not bf16 and cfg.method in ("spectrum", "full"):
        raise UnknownThroughput(
            f"unknown throughput: {cfg.method} trains in fp32 on a {spec.name} (no bfloat16), "
            "and the throughput model covers 16-bit tensor math only",
            "use a bfloat16 card (Ampere or newer), or an adapter method (lora, qlora)",
        )
    data = fit()
    key = efficiency_key(cfg)
    eff = efficiency if efficiency is not None else float(data["efficiency"][key]["value"])
    work = step_work(model, cfg, mean_doc_tokens=mean_doc_tokens)
    micro_s, share = step_seconds(work, spec, eff, grad_accum=grad_accum, bf16=bf16)
    n = max(1, cfg.n_gpus)
    scaling, assumptions = 1.0, []
    if n > 1:
        strategy = cfg.distributed or "ddp"
        s = data["scaling"][strategy]
        scaling = float(s["value"])
        assumptions.append(
            f"{n} GPUs ({strategy}) at {scaling:.0%} of {n} × one GPU's speed: {s['why']} "
            "(an assumption, not measured)"
        )
    faster = faster_on(spec, bf16)
    if spec.name != MEASURED_ON:
        assumptions.append(
            f"the efficiency was fitted on an {MEASURED_ON}; assumed the same on the {spec.name}"
            + (
                f", where the run may be up to {faster:.2g}× faster (a published figure for a slower "
                "card was; docs/throughput.md)"
                if faster > 1
                else ""
            )
        )
    for note in (
        data["efficiency"][key].get("assumed_for", {}).get(cfg.method, []) if efficiency is None else []
    ):
        assumptions.append(note)
    slower = 1.0
    if cfg.stack == "tunewise" and not cfg.liger:
        slower = float(data["without_liger"]["slower_by_up_to"])
        assumptions.append(
            f"the job's efficiency was measured with Liger kernels on; without them the step may be "
            f"up to {slower:g}× slower (what Liger gave the plain stack)"
        )
    if cfg.stage == "dpo":
        assumptions.append("no DPO step was measured on a GPU: the SFT step's efficiency is assumed")
    if not bf16:
        assumptions.append(f"fp16 mixed precision at the {spec.name}'s fp16 tensor peak (no bfloat16)")
    step_s = micro_s * grad_accum / scaling
    tokens_step = work.tokens * grad_accum * n
    rate = tokens_step / step_s
    spread = float(data["spread"]["value"])
    return Throughput(
        gpu=spec.name,
        n_gpus=n,
        tokens_per_s=rate,
        tokens_per_s_low=rate * (1 - spread) / slower,
        tokens_per_s_high=rate * max(1 + spread, faster),
        step_s=step_s,
        tokens_per_step=tokens_step,
        flops_per_token=work.flops_per_token,
        efficiency=eff,
        efficiency_key=key,
        spread=spread,
        compute_share=share,
        assumptions=assumptions,
    )


def faster_on(spec: GpuSpec, bf16: bool = True) -> float:
    """How much faster than predicted a run on an unmeasured card may be: 1 at the measured card's peak or
    above, `faster_by_up_to` at the evidence card's peak or below, linear in between (rules/throughput.yaml)."""
    from advisor.throughput.gpus import find_gpu

    if spec.name == MEASURED_ON:
        return 1.0
    o = fit()["other_gpus"]
    top, low = find_gpu(MEASURED_ON).peak_tflops(), find_gpu(o["evidence_card"]).peak_tflops()
    share = min(1.0, max(0.0, (top - spec.peak_tflops(bf16)) / (top - low)))
    return 1.0 + (float(o["faster_by_up_to"]) - 1.0) * share


def _require(name: str) -> GpuSpec:
    try:
        return require_gpu(name)
    except UserError as e:
        raise UnknownThroughput(e.message, e.hint) from None
