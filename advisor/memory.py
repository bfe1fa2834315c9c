"""Peak GPU memory of one training step, per GPU, before anything is launched.

Interface (used by facts, plan, report, the launcher's summary and `tunewise estimate`):
`estimate(model, MemoryConfig) -> MemoryEstimate` and `fit_search(...)`. Pure arithmetic: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from advisor.models import ModelFacts


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


@dataclass
class MemoryEstimate:
    peak_allocated_gib: float  # what torch.cuda.max_memory_allocated() would report
    device_gib: float  # what the GPU shows in use at peak (allocator reserve + CUDA context)
    breakdown: dict[str, float] = field(default_factory=dict)  # GiB per component
    dominant: str = ""
    advice: list[str] = field(default_factory=list)


def estimate(model: ModelFacts, cfg: MemoryConfig) -> MemoryEstimate:
    raise NotImplementedError("filled in by the memory work (issue 3)")
