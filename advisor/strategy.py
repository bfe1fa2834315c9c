"""Where and how a method runs on the GPUs of the box, and which model when the named one cannot.

The search follows what a practitioner tries when a method does not fit (the guide's own order:
a lighter method, then sharding, then offload, then a smaller model):

1. every layout of the box: all GPUs with DDP (a full copy each), FSDP (sharded), or FSDP with the
   shards, gradients and optimizer in host RAM (CPU offload, for LoRA and QLoRA: the guide's FSDP with
   QLoRA on dual consumer GPUs); and, on a box of unequal cards, the larger cards alone;
2. each method (LoRA, QLoRA, Spectrum) keeps its best layout (`rank_key`), the rules then pick the
   method from what fits (facts `<method>_fits`);
3. when no method fits the named model anywhere, the largest catalog model that fits, same series
   first (Llama-3.1-70B -> Llama-3.1-8B), then the same architecture family, then any.

Layouts are ranked by the longest sequence (up to the planned length), then the largest micro-batch
at it, then a throughput proxy: more GPUs in use, then DDP before FSDP before FSDP + offload (less
traffic per step). Offload is a last resort: it is chosen only when no layout without it fits, since
every step moves the weight shards over PCIe and runs the optimizer on the CPU. The proxy is an
ordering, not a measured speed; it agrees with the throughput model's scaling assumptions
(rules/throughput.yaml: DDP at 90% and FSDP at 75% of n x one GPU, so at an equal micro-batch more GPUs
are faster and DDP beats FSDP), which has no figure for offload (its time is "unknown").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from advisor.decision import Candidate

MODES = ("ddp", "fsdp", "fsdp_offload")
MODE_LABEL = {None: "one GPU", "ddp": "DDP", "fsdp": "FSDP", "fsdp_offload": "FSDP + CPU offload"}
_MODE_RANK = {None: 0, "ddp": 0, "fsdp": 1, "fsdp_offload": 2}
# Offload is tried for adapter methods only (the guide's FSDP + QLoRA recipe): their host-side state is the
# frozen base's shards. Spectrum and full would put fp32 trainable copies and AdamW's moments in host RAM
# too, several times the model's size.
OFFLOAD_METHODS = ("lora", "qlora")


@dataclass(frozen=True)
class Layout:
    """A set of the box's GPUs (positions in the GPU list) and how they share the work."""

    indices: tuple[int, ...]
    mode: str | None  # None (one GPU) | ddp | fsdp | fsdp_offload
    gpu_gib: float  # the smallest card of the set: every process must fit it

    @property
    def n(self) -> int:
        return len(self.indices)

    def label(self) -> str:
        cards = f"{self.n} × {self.gpu_gib:g} GiB" if self.n > 1 else f"one {self.gpu_gib:g} GiB GPU"
        return cards if self.mode is None else f"{MODE_LABEL[self.mode]} on {cards}"


def layouts(memory_gib: list[float]) -> list[Layout]:
    """Every layout worth trying on GPUs of these sizes: all of them in each mode, then the larger
    cards alone whenever dropping the smaller ones raises the memory every process gets."""
    order = sorted(range(len(memory_gib)), key=lambda i: (-memory_gib[i], i))
    out: list[Layout] = []
    floor = None
    for k in range(len(order), 0, -1):
        idx = tuple(sorted(order[:k]))
        low = min(memory_gib[i] for i in idx)
        if floor is not None and low <= floor:
            continue  # the same smallest card: fewer GPUs only lose throughput
        floor = low
        for mode in [None] if k == 1 else MODES:
            out.append(Layout(idx, mode, low))
    return out


def rank_key(c: Candidate, layout: Layout) -> tuple:
    """Higher is better: fits; no offload; sequence length; micro-batch; GPUs used; lighter mode."""
    offload = layout.mode == "fsdp_offload"
    return (
        c.fits,
        not (c.fits and offload),
        c.seq_len or 0,
        c.micro_batch or 0,
        layout.n,
        -_MODE_RANK[layout.mode],
    )


def best_layout(
    model,
    method: str,
    memory_gib: list[float],
    seq_len: int,
    th: dict,
    fitter: Callable,
    gpu_index: list[int] | None = None,
) -> Candidate:
    """The method's best layout on the box (or, when none fits, the plain layout closest to fitting)."""
    tried: list[str] = []
    best: tuple | None = None
    closest: tuple | None = None
    for lay in layouts(memory_gib):
        if lay.mode == "fsdp_offload" and method not in OFFLOAD_METHODS:
            continue
        distributed = None if lay.mode is None else lay.mode
        fit = fitter(model, method, lay.n, distributed, seq_len, lay.gpu_gib, th)
        mode = None if lay.n == 1 else ("fsdp" if lay.mode == "fsdp_offload" else lay.mode)
        cand = Candidate(
            method=method,
            peak_gib=round(fit.peak_gib, 2),
            device_gib=round(fit.device_gib, 2),
            fits=fit.fits,
            distributed=mode,
            micro_batch=fit.micro_batch,
            grad_accum=fit.grad_accum,
            seq_len=fit.seq_len,
            note=fit.note,
            cpu_offload=lay.mode == "fsdp_offload",
            host_gib=round(getattr(fit, "host_gib", 0.0) * lay.n, 1) or None,
        )
        if lay.n < len(memory_gib):
            cand.gpu_indices = [gpu_index[i] if gpu_index else i for i in lay.indices]
        verdict = (
            f"fits at {fit.micro_batch} × {fit.seq_len:,} tokens"
            if fit.fits
            else f"does not fit (1 × {fit.seq_len:,} tokens)"
        )
        tried.append(f"{lay.label()}: {fit.device_gib:.1f} GiB per GPU, {verdict}")
        key = rank_key(cand, lay)
        if best is None or key > best[0]:
            best = (key, cand)
        if not fit.fits and lay.mode != "fsdp_offload":
            short = fit.device_gib / max(lay.gpu_gib, 1e-9)
            if closest is None or short < closest[0]:
                closest = (short, cand)
    chosen = best[1] if best[1].fits or closest is None else closest[1]
    chosen.tried = tried
    return chosen


_SIZE = re.compile(r"[-_]?\d+(\.\d+)?[bBmM]\b.*$")


def series(name: str) -> str:
    """A model's series without its size: meta-llama/Llama-3.1-70B -> meta-llama/llama-3.1."""
    return _SIZE.sub("", name).lower()


def fallback_models(model) -> list:
    """Catalog models smaller than `model`, in the order to try: same series, same family, any other;
    largest first within each."""
    from advisor.models import load_catalog

    seen, pool = set(), []
    for m in load_catalog().values():
        if m.name not in seen and m.params_total < model.params_total:
            seen.add(m.name)
            pool.append(m)

    def tier(m) -> int:
        if series(m.name) == series(model.name):
            return 0
        return 1 if m.family == model.family else 2

    return sorted(pool, key=lambda m: (tier(m), -m.params_total, m.name))
