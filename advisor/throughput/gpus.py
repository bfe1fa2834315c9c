"""The GPU catalog the throughput model divides by: dense 16-bit tensor peak, bandwidth, memory, price.

Data: `rules/gpus.yaml`, one row per card with the vendor document each number comes from. A name is
matched against each row's patterns in order (NVML names such as "NVIDIA H100 80GB HBM3" and catalog
names such as "H100" alike). No row matches: `find_gpu` returns None and `require_gpu` raises a
UserError naming the cards it knows; never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from advisor.errors import UserError


@dataclass(frozen=True)
class GpuSpec:
    name: str  # the catalog's name for the card
    bf16_tflops: float | None  # dense tensor-core peak; None: no bfloat16 on this card
    fp16_tflops: float
    bandwidth_gbs: float  # memory bandwidth, GB/s
    memory_gb: float
    source: str  # the vendor document the numbers come from
    patterns: tuple[str, ...] = ()

    def peak_tflops(self, bf16: bool = True) -> float:
        """The 16-bit tensor peak the job's math runs at: bf16 where the card has it, else fp16."""
        return self.bf16_tflops if bf16 and self.bf16_tflops else self.fp16_tflops


def _data_path(name: str) -> Path:
    here = Path(__file__).resolve().parents[2] / "rules" / name
    if here.is_file():
        return here
    from importlib.resources import files  # installed wheel: rules/ ships as advisor._rules

    return Path(str(files("advisor._rules") / name))


@lru_cache(maxsize=1)
def _raw() -> dict:
    import yaml

    return yaml.safe_load(_data_path("gpus.yaml").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def catalog() -> tuple[GpuSpec, ...]:
    """Every card in rules/gpus.yaml, in matching order."""
    return tuple(
        GpuSpec(
            name=r["name"],
            bf16_tflops=r["bf16_tflops"],
            fp16_tflops=float(r["fp16_tflops"]),
            bandwidth_gbs=float(r["bandwidth_gbs"]),
            memory_gb=float(r["memory_gb"]),
            source=r["source"],
            patterns=tuple(r["match"]),
        )
        for r in _raw()["gpus"]
    )


def find_gpu(name: str) -> GpuSpec | None:
    """The catalog row a GPU name (NVML's or the catalog's; any case) stands for, or None."""
    upper = " ".join(str(name).upper().replace("-", " ").replace("_", " ").split())
    for spec in catalog():
        if spec.name.upper().replace("-", " ") == upper:
            return spec
    for spec in catalog():
        if any(re.search(p.replace("-", " "), upper) for p in spec.patterns):
            return spec
    return None


def require_gpu(name: str) -> GpuSpec:
    """`find_gpu`, or a UserError naming the known cards (the throughput model never guesses a card)."""
    spec = find_gpu(name)
    if spec is None:
        raise UserError(
            f"unknown throughput for GPU {name!r}: it is not in the GPU catalog (rules/gpus.yaml)",
            f"name one of: {', '.join(s.name for s in catalog())}, or add its row with the "
            "spec sheet's dense BF16/FP16 TFLOPS and memory bandwidth",
        )
    return spec


def default_price(spec: GpuSpec) -> tuple[float, str] | None:
    """(USD per GPU-hour, where the figure comes from) from the dated table, or None for a card it lacks."""
    prices = _raw().get("prices") or {}
    usd = (prices.get("usd_per_gpu_hour") or {}).get(spec.name)
    if usd is None:
        return None
    return float(usd), f"{prices['source']} (dated {prices['date']}; a market midpoint, not a quote)"
