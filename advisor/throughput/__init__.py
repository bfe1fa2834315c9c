"""Training speed before launch: tokens/s and step time of a step on a named GPU.

`tokens_per_s(model, cfg, gpu) -> Throughput` (cfg: `advisor.memory.MemoryConfig`); the GPU catalog
(`find_gpu`, `require_gpu`, rules/gpus.yaml); the FLOPs and bytes of a step (`step_work`).
Pure arithmetic, no torch.
"""

from advisor.throughput.flops import StepWork, step_work
from advisor.throughput.gpus import GpuSpec, catalog, default_price, find_gpu, require_gpu
from advisor.throughput.model import Throughput, UnknownThroughput, tokens_per_s

__all__ = [
    "GpuSpec",
    "StepWork",
    "Throughput",
    "UnknownThroughput",
    "catalog",
    "default_price",
    "find_gpu",
    "require_gpu",
    "step_work",
    "tokens_per_s",
]
