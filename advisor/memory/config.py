"""What one training step runs, as the memory estimator sees it: `MemoryConfig` and its checks."""

from __future__ import annotations

from dataclasses import dataclass

from advisor.errors import UserError

GiB = 1024**3
METHODS = ("lora", "qlora", "spectrum", "full")
OPTIMIZERS = ("adamw", "adamw_8bit", "paged_adamw_8bit")
ATTENTION = ("sdpa", "flash", "eager")
DISTRIBUTED = (None, "ddp", "fsdp", "zero3")
STAGES = ("sft", "dpo")
STACKS = ("tunewise", "plain")


@dataclass(frozen=True)
class MemoryConfig:
    method: str  # lora | qlora | spectrum | full
    rank: int = 16
    seq_len: int = 1024
    batch_size: int = 4
    grad_ckpt: bool = True
    liger: bool = False
    spectrum_fraction: float = 0.3
    spectrum_trainable_params: int | None = None  # the scan's actual unfrozen count, when known
    n_gpus: int = 1
    distributed: str | None = None  # None/"ddp" (replicated) | "fsdp" | "zero3" (sharded)
    optimizer: str = "adamw"  # adamw | adamw_8bit | paged_adamw_8bit
    attn: str = "sdpa"  # sdpa | flash | eager
    lora_dropout: float = 0.05
    # "tunewise": the TRL job `tunewise launch` runs (launcher/train.py); "plain": a plain PEFT loop
    # (model(labels=...).loss, no autocast, QLoRA prepared with prepare_model_for_kbit_training).
    stack: str = "tunewise"
    # The job packs (BFD, padding-free): a packed row holds several documents whenever examples are
    # shorter than the sequence, so SDPA gets a block-diagonal mask even at micro-batch 1. False only
    # when every example fills the sequence (the benchmarks' full-length random rows).
    packed_docs: bool = True
    # TRL's padding-free layout (the micro-batch flattened into one row); off: packed rows stay rows
    # (launcher/packing.py), as the job runs them under SDPA and eager attention.
    padding_free: bool = False
    # The step being estimated: "sft" (SFTTrainer) or "dpo" (the job's DPOTrainer: chosen and rejected rows
    # of each pair in one padded batch of 2 x batch_size rows, plus a reference forward; advisor/memory/dpo.py).
    stage: str = "sft"
    # DPO continuing an existing adapter (the DPO stage of an sft+dpo plan): TRL keeps a frozen fp32 "ref" copy
    # of it as the reference. Only read when stage is "dpo" and the method trains adapters.
    dpo_ref_adapter: bool = False
    # FSDP only: offload the parameter shards, their gradients and the optimizer step to the CPU
    # (accelerate's `fsdp_offload_params`). Less GPU memory; every step moves the shards over PCIe.
    cpu_offload: bool = False
    # What the job keeps in which format (advisor/precision.py): bf16-mixed (fp32 master weights for trained
    # base weights) | bf16-compensated (bf16 + Kahan AdamW) | fp32 | fp16-mixed (adapters, no-bf16 GPUs).
    precision: str = "bf16-mixed"


def validate(cfg: MemoryConfig) -> None:
    """Raise UserError naming the first impossible setting."""
    checks = [
        (cfg.method in METHODS, "method", cfg.method, f"one of {', '.join(METHODS)}"),
        (cfg.optimizer in OPTIMIZERS, "optimizer", cfg.optimizer, f"one of {', '.join(OPTIMIZERS)}"),
        (cfg.attn in ATTENTION, "attention", cfg.attn, f"one of {', '.join(ATTENTION)}"),
        (cfg.distributed in DISTRIBUTED, "distributed", cfg.distributed, "ddp, fsdp or zero3"),
        (cfg.stack in STACKS, "stack", cfg.stack, f"one of {', '.join(STACKS)}"),
        (cfg.stage in STAGES, "stage", cfg.stage, f"one of {', '.join(STAGES)}"),
        (cfg.rank >= 1, "rank", cfg.rank, "a positive integer (16 is the usual start)"),
        (cfg.seq_len >= 1, "sequence length", cfg.seq_len, "a positive integer"),
        (cfg.batch_size >= 1, "batch size", cfg.batch_size, "a positive integer"),
        (cfg.n_gpus >= 1, "number of GPUs", cfg.n_gpus, "a positive integer"),
        (0 < cfg.spectrum_fraction <= 1, "spectrum fraction", cfg.spectrum_fraction, "in (0, 1], e.g. 0.3"),
        (0 <= cfg.lora_dropout < 1, "LoRA dropout", cfg.lora_dropout, "in [0, 1)"),
    ]
    for ok, what, value, allowed in checks:
        if not ok:
            raise UserError(f"invalid {what}: {value!r}", f"use {allowed}")
    if cfg.cpu_offload and cfg.distributed != "fsdp":
        raise UserError(
            "CPU offload is modelled for FSDP only", "add --distributed fsdp (and --gpus 2 or more)"
        )
    from advisor.precision import check

    bad = check(cfg.method, cfg.precision, legacy=True)
    if bad:
        raise UserError(
            f"invalid {bad}",
            "bf16-mixed (fp32 master weights) is the default; bf16-compensated for "
            "Spectrum/full when that does not fit; fp32 or fp16-mixed on GPUs without bf16",
        )
    if cfg.stage == "dpo" and cfg.stack != "tunewise":
        raise UserError(
            f"the {cfg.stack!r} stack has no DPO step to estimate (stage 'dpo')",
            "estimate the DPO stage on the tunewise stack (the job's DPOTrainer)",
        )
