"""Peak GPU memory of one training step, per GPU, before anything is launched.

Interface (used by facts, plan, report, the launcher's summary and `tunewise estimate`):
`estimate(model, MemoryConfig) -> MemoryEstimate` and `fit_search(...)`. Pure arithmetic: no torch.

The model follows the step as PyTorch runs it (docs/memory.md has the derivation and the accuracy
table), for one of two stacks: the TRL job tunewise launches (default) or a plain PEFT loop. Resident: weights, adapters, gradients, optimizer states. On top, the largest of four moments:
the loss backward (all saved activations + the fp32 logits, their gradient and log-softmax output),
the first layer's backward (saved activations + one recomputed layer + its gradient working set), the
end of backward (every gradient), and the optimizer step. Every byte count below comes from what
autograd saves (checked on CPU with saved-tensor hooks in tests/test_memory_autograd.py); the only
fitted numbers are the CUDA context and the allocator reserve, which only the device figure uses.
`MemoryConfig.stage="dpo"` estimates the job's DPO step instead (advisor/memory/dpo.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from advisor.errors import UserError
from advisor.memory.config import GiB, MemoryConfig, validate
from advisor.memory.dpo import dpo_step_parts
from advisor.memory.parts import Parts, param_bytes, sft_step_parts
from advisor.models import ModelFacts, resolve_model

# Device figure = peak allocated + what PyTorch's caching allocator keeps but has not handed out + the
# CUDA context. Both measured on the H200 (bench/calibration/): the context (driver, cuBLAS/cuDNN
# handles) showed 0.51 GiB before loading and ~0.75 GiB more than peak reserved at the end; the reserve
# is the cached free space left by the loss's large fp32 blocks (~30% of them) plus a base.
CUDA_CONTEXT_GIB = 0.75
RESERVE_BASE_GIB = 0.25
RESERVE_FRACTION_OF_LOSS_BLOCKS = 0.30


@dataclass
class MemoryEstimate:
    peak_allocated_gib: float  # what torch.cuda.max_memory_allocated() would report
    device_gib: float  # what the GPU shows in use at peak (allocator reserve + CUDA context)
    breakdown: dict[str, float] = field(default_factory=dict)  # GiB per component
    dominant: str = ""
    advice: list[str] = field(default_factory=list)
    overhead: dict[str, float] = field(default_factory=dict)  # device_gib - peak: reserve, context, paged
    phase: str = ""  # the moment of the step where the peak happens
    trainable_params: int = 0
    host_offload_gib: float = 0.0  # per GPU process, in host RAM, under FSDP CPU offload
    precision: str = "bf16-mixed"
    bytes_per_param: dict[str, float] = field(default_factory=dict)  # advisor.memory.parts.param_bytes

    def to_dict(self) -> dict:
        return {
            "peak_allocated_gib": self.peak_allocated_gib,
            "device_gib": self.device_gib,
            "breakdown": self.breakdown,
            "dominant": self.dominant,
            "advice": self.advice,
            "overhead": self.overhead,
            "phase": self.phase,
            "trainable_params": self.trainable_params,
            "host_offload_gib": self.host_offload_gib,
            "precision": self.precision,
            "bytes_per_param": self.bytes_per_param,
        }


@dataclass(frozen=True)
class FitResult:
    micro_batch: int
    grad_accum: int
    seq_len: int
    peak_gib: float
    device_gib: float
    fits: bool
    note: str = ""
    host_gib: float = 0.0  # host RAM per process under FSDP CPU offload


def config_for_plan(plan, stage: str = "sft") -> MemoryConfig:
    """The estimator's settings for what a `TrainingPlan` will run in `stage` (method, adapter, the stage's
    batch, sequence, checkpointing, kernels, GPUs); Spectrum's scanned trainable count, when known, is the
    caller's. The DPO stage runs its own batch, and after SFT it keeps a frozen copy of the SFT adapter."""
    attn = {"flash_attention_2": "flash", "eager": "eager"}.get(plan.attn_implementation, "sdpa")
    lora = plan.lora if plan.method in ("lora", "qlora") else None
    return MemoryConfig(
        method=plan.method,
        rank=lora.r if lora else 16,
        seq_len=plan.max_length,
        batch_size=plan.stage_batch(stage)[0],
        grad_ckpt=plan.gradient_checkpointing,
        liger=plan.liger,
        n_gpus=plan.n_gpus,
        distributed=plan.distributed_mode,
        attn=attn,
        lora_dropout=lora.dropout if lora else 0.0,
        padding_free=plan.flat_packing,
        stage=stage,
        cpu_offload=plan.cpu_offload,
        precision=plan_precision(plan),
        dpo_ref_adapter=stage == "dpo" and plan.stage == "sft+dpo",
    )


def plan_precision(plan) -> str:
    """The precision a plan runs at on its GPU (a plan from before `precision`: from its bf16 flag)."""
    from advisor.precision import default_precision

    return plan.precision or default_precision(plan.method, plan.bf16)


def estimate(model: ModelFacts, cfg: MemoryConfig, *, gpu_gib: float | None = None) -> MemoryEstimate:
    """Predict peak allocated and device memory for one training step; `gpu_gib` adds fit advice."""
    est = _estimate(model, cfg)
    est.advice = _advice(model, cfg, est, gpu_gib)
    return est


def step_parts(m: ModelFacts, cfg: MemoryConfig) -> Parts:
    """The step's resident parts and moments: SFT, or DPO (`cfg.stage`, advisor/memory/dpo.py)."""
    return dpo_step_parts(m, cfg) if cfg.stage == "dpo" else sft_step_parts(m, cfg)


def _estimate(model: ModelFacts, cfg: MemoryConfig) -> MemoryEstimate:
    validate(cfg)
    p: Parts = step_parts(model, cfg)
    peak_bytes = sum(p.at_peak.values())
    peak = peak_bytes / GiB
    reserve = RESERVE_BASE_GIB + RESERVE_FRACTION_OF_LOSS_BLOCKS * p.loss_blocks / GiB
    overhead = {"allocator_reserve": round(reserve, 3), "cuda_context": CUDA_CONTEXT_GIB}
    if p.paged_bytes:
        overhead["paged_optimizer_states"] = round(p.paged_bytes / GiB, 3)
    breakdown = {k: round(v / GiB, 3) for k, v in p.at_peak.items() if v > 0}
    dominant = max(breakdown, key=breakdown.get) if breakdown else ""
    return MemoryEstimate(
        peak_allocated_gib=round(peak, 3),
        device_gib=round(peak + sum(overhead.values()), 3),
        breakdown=breakdown,
        dominant=dominant,
        overhead=overhead,
        phase=p.phase,
        trainable_params=p.trainable_params,
        host_offload_gib=round(p.host_bytes / GiB, 3),
        precision=cfg.precision,
        bytes_per_param=param_bytes(cfg),
    )


def _as_method(cfg: MemoryConfig, method: str) -> MemoryConfig:
    """The same settings for another method, at the precision that method would run at beside this one."""
    from advisor.precision import check

    if check(method, cfg.precision, legacy=True) is None:
        return replace(cfg, method=method)
    return replace(
        cfg,
        method=method,
        precision="fp16-mixed" if cfg.precision in ("fp32", "fp16-mixed") else "bf16-mixed",
    )


def _advice(model: ModelFacts, cfg: MemoryConfig, est: MemoryEstimate, gpu_gib: float | None) -> list[str]:
    out = []
    if not cfg.liger:
        saved = est.peak_allocated_gib - _estimate(model, replace(cfg, liger=True)).peak_allocated_gib
        if saved >= 0.1:
            why = (
                "its RMSNorm and SwiGLU kernels keep less for backward"
                if cfg.stack == "tunewise"
                else "fused linear cross-entropy never builds the fp32 logits"
            )
            out.append(f"--liger saves {saved:.1f} GiB ({why})")
    if not cfg.grad_ckpt:
        saved = est.peak_allocated_gib - _estimate(model, replace(cfg, grad_ckpt=True)).peak_allocated_gib
        if saved >= 0.1:
            out.append(
                f"gradient checkpointing (drop --no-grad-ckpt) saves {saved:.1f} GiB for ~30% more compute"
            )
    if cfg.method == "lora" and est.breakdown.get("weights", 0) > 0.5 * est.peak_allocated_gib:
        q = _estimate(model, _as_method(cfg, "qlora")).peak_allocated_gib
        if q < est.peak_allocated_gib - 0.5:
            out.append(
                f"--method qlora stores the weights in 4 bits: {q:.1f} GiB peak instead of "
                f"{est.peak_allocated_gib:.1f} GiB"
            )
    if cfg.method in ("full", "spectrum"):
        # Trainable weights carry gradients and AdamW's two moments: a frozen base with adapters drops them.
        lo = _estimate(model, _as_method(cfg, "lora")).peak_allocated_gib
        if lo < est.peak_allocated_gib - 0.5:
            out.append(
                f"--method lora trains adapters on frozen weights (no gradients or optimizer states for "
                f"the base): {lo:.1f} GiB peak instead of {est.peak_allocated_gib:.1f} GiB"
            )
    if gpu_gib:
        fits = est.device_gib <= gpu_gib
        best = _largest_batch(model, cfg, gpu_gib, limit=max(64, cfg.batch_size))
        if fits:
            spare = gpu_gib - est.device_gib
            msg = f"batch {cfg.batch_size} fits a {gpu_gib:g} GiB GPU with {spare:.1f} GiB to spare"
            if best and best[0] > cfg.batch_size:
                msg += f"; batch {best[0]} would still fit ({best[1]:.1f} GiB to spare)"
            out.append(msg)
        elif best:
            out.append(
                f"does not fit {gpu_gib:g} GiB at batch {cfg.batch_size}; batch {best[0]} fits with "
                f"{best[1]:.1f} GiB to spare (raise gradient accumulation to keep the effective batch)"
            )
        else:
            levers = ["shorten sequences"] + [
                x
                for x, off in (("add --liger", not cfg.liger), ("drop --no-grad-ckpt", not cfg.grad_ckpt))
                if off
            ]
            if cfg.method != "qlora":
                levers.append("use --method qlora")
            levers += _layout_levers(cfg)
            out.append(
                f"does not fit {gpu_gib:g} GiB even at batch 1 with sequence length {cfg.seq_len}: "
                + ", ".join(levers[:-1])
                + " or "
                + levers[-1]
            )
    return out


def _layout_levers(cfg: MemoryConfig) -> list[str]:
    """What more GPUs can do for this layout. Under DDP every GPU holds a full copy, so more of them never
    lower the memory per GPU: sharding does; then CPU offload (adapter methods); then more shards."""
    if cfg.n_gpus == 1:
        return ["shard across several GPUs (--gpus 2 --distributed fsdp)"]
    if cfg.distributed in (None, "ddp"):
        return [f"shard across the {cfg.n_gpus} GPUs (--distributed fsdp): DDP keeps a full copy on each"]
    out = []
    if cfg.distributed == "fsdp" and not cfg.cpu_offload and cfg.method in ("lora", "qlora"):
        out.append("--cpu-offload (shards, gradients and optimizer in host RAM; much slower steps)")
    out.append(f"more GPUs than {cfg.n_gpus} to shard across")
    return out


def _largest_batch(
    model: ModelFacts, cfg: MemoryConfig, gpu_gib: float, *, limit: int
) -> tuple[int, float] | None:
    """The largest batch (≤ limit) whose device figure fits `gpu_gib`, with the GiB to spare."""
    best = None
    b = 1
    while b <= limit:
        dev = _estimate(model, replace(cfg, batch_size=b)).device_gib
        if dev > gpu_gib:
            break
        best = (b, gpu_gib - dev)
        b += 1
    return best


def fit_search(
    model: ModelFacts,
    cfg: MemoryConfig,
    gpu_gib: float,
    *,
    margin: float = 0.10,
    target_effective_batch: int = 16,
    seq_lens: tuple[int, ...] = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768),
) -> FitResult:
    """The longest sequence (≤ cfg.seq_len) and then the largest micro-batch that fit `gpu_gib` with
    `margin` kept free, and the gradient accumulation that keeps the effective batch.

    Micro-batches are powers of two up to 8 (the guide's "batch size 4–8 with gradient accumulation
    2–4", Practical Tools and Getting Started), so micro-batch × accumulation = the target exactly.
    The sequence length comes first: truncating examples changes what the model learns, a smaller
    micro-batch with more accumulation does not.
    """
    if gpu_gib <= 0:
        raise UserError(f"invalid GPU memory: {gpu_gib!r} GiB", "give the GPU's memory in GiB, e.g. 24")
    if not 0 <= margin < 1:
        raise UserError(f"invalid safety margin: {margin!r}", "use a fraction in [0, 1), e.g. 0.10")
    usable = gpu_gib * (1 - margin)
    wanted = sorted({s for s in seq_lens if s < cfg.seq_len} | {cfg.seq_len}, reverse=True)
    cap = max(1, min(8, target_effective_batch))
    batches = [b for b in (8, 4, 2, 1) if b <= cap]

    def dev(seq: int, b: int) -> MemoryEstimate:
        return _estimate(model, replace(cfg, seq_len=seq, batch_size=b))

    for seq in wanted:
        for b in batches:
            e = dev(seq, b)
            if e.device_gib <= usable:
                accum = max(1, math.ceil(target_effective_batch / b))
                note = (
                    f"micro-batch {b} × accumulation {accum} = effective batch {b * accum} at {seq} tokens; "
                    f"{e.device_gib:.1f} of {gpu_gib:g} GiB ({margin:.0%} kept free)"
                )
                if seq < cfg.seq_len:
                    note += f"; {cfg.seq_len} tokens does not fit even at micro-batch 1"
                return FitResult(
                    b, accum, seq, e.peak_allocated_gib, e.device_gib, True, note, e.host_offload_gib
                )
    e = dev(wanted[-1], 1)
    return FitResult(
        1,
        max(1, target_effective_batch),
        wanted[-1],
        e.peak_allocated_gib,
        e.device_gib,
        False,
        f"does not fit: {e.device_gib:.1f} GiB needed at micro-batch 1 and {wanted[-1]} tokens, "
        f"{usable:.1f} of {gpu_gib:g} GiB usable; use qlora, --liger, more GPUs or a smaller model",
        e.host_offload_gib,
    )


def carry_prediction(old, new) -> None:
    """Keep summary.json's measured-vs-predicted comparison like for like after the launcher's OOM ladder
    steps a plan down (`old` -> `new`, both `TrainingPlan`s): the new prediction is the old one moved by what
    the estimator says the change saves (a difference, so what the old figure knew that a plan does not say,
    such as Spectrum's scanned trainable count, carries over). Unknown (null) when there was no prediction
    or the model's config cannot be read here. The launcher calls this; it never runs the estimator itself."""
    # (the plan's own prediction, for its first step; the DPO stage's after SFT, kept in `dpo`)
    pairs = [(old, new, "dpo" if old.stage == "dpo" else "sft")]
    if old.dpo is not None and new.dpo is not None and old.stage != "dpo":
        pairs.append((old.dpo, new.dpo, "dpo"))
    for _, now, _ in pairs:
        now.predicted_peak_gib = now.predicted_device_gib = None
    try:
        facts = resolve_model(old.model)
    except UserError:
        return
    for was, now, stage in pairs:
        if was.predicted_peak_gib is None:
            continue
        before, after = (
            estimate(facts, config_for_plan(old, stage)),
            estimate(facts, config_for_plan(new, stage)),
        )
        now.predicted_peak_gib = round(
            was.predicted_peak_gib + after.peak_allocated_gib - before.peak_allocated_gib, 3
        )
        if was.predicted_device_gib is not None:
            now.predicted_device_gib = round(
                was.predicted_device_gib + after.device_gib - before.device_gib, 3
            )
