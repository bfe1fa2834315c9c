"""GPU detection through NVML (package `nvidia-ml-py`, import name `pynvml`).

Never `torch.cuda` here: the advisor must not import torch. No GPU (no driver, no library, zero
devices) is a normal outcome and yields an empty list with the reason kept for the report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

GiB = 1024**3


@dataclass(frozen=True)
class GPU:
    """One GPU as the advisor sees it. `source` is "nvml" (detected) or "answers" (given)."""

    name: str
    memory_gib: float
    free_gib: float | None = None
    compute_capability: tuple[int, int] | None = None
    index: int = 0
    source: str = "nvml"
    # Memory a desktop session holds on a card that also drives a display (never available to training).
    display_reserve_gib: float = 0.0

    @property
    def bf16(self) -> bool:
        """bf16 needs Ampere (8.0) or newer. An unknown capability (a GPU name from the answers that the
        table below does not know) is assumed NOT to have it: the conservative precision (fp16 mixed for
        adapters, fp32 for updated weights) runs on every GPU, bf16 fails on pre-Ampere ones."""
        return self.compute_capability is not None and self.compute_capability >= (8, 0)

    @property
    def usable_gib(self) -> float:
        """Memory training may use: the card's memory less the display reserve."""
        return max(0.0, self.memory_gib - self.display_reserve_gib)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bf16"] = self.bf16
        d["usable_gib"] = self.usable_gib
        if self.compute_capability is not None:
            d["compute_capability"] = ".".join(map(str, self.compute_capability))
        return d


@dataclass(frozen=True)
class Detection:
    gpus: list[GPU]
    driver: str | None = None
    cuda_driver_version: str | None = None
    reason: str | None = None  # why the list is empty, when it is


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def detect_gpus() -> Detection:
    """Probe NVML for every visible GPU. Never raises for "no GPU"."""
    try:
        import pynvml
    except ImportError:
        return Detection([], reason="nvidia-ml-py is not installed")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return Detection([], reason=f"no NVIDIA driver found ({_s(e)})")
    try:
        driver = _s(pynvml.nvmlSystemGetDriverVersion())
        try:
            v = pynvml.nvmlSystemGetCudaDriverVersion()
            cuda = f"{v // 1000}.{(v % 1000) // 10}"
        except pynvml.NVMLError:
            cuda = None
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            try:
                cc = tuple(pynvml.nvmlDeviceGetCudaComputeCapability(h))
            except pynvml.NVMLError:
                cc = None
            try:  # a card driving a display: what the desktop holds now is not ours to train with
                display = bool(pynvml.nvmlDeviceGetDisplayActive(h))
            except pynvml.NVMLError:
                display = False
            reserve = round(max(0.0, (mem.total - mem.free) / GiB), 2) if display else 0.0
            gpus.append(
                GPU(
                    name=_s(pynvml.nvmlDeviceGetName(h)),
                    memory_gib=round(mem.total / GiB, 2),
                    free_gib=round(mem.free / GiB, 2),
                    compute_capability=cc,
                    index=i,
                    display_reserve_gib=reserve,
                )
            )
        reason = None if gpus else "the NVIDIA driver reports no devices"
        return Detection(gpus, driver=driver, cuda_driver_version=cuda, reason=reason)
    except pynvml.NVMLError as e:
        return Detection([], reason=f"NVML error: {_s(e)}")
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


# Compute capability by GPU name, for GPUs given in the answers (no driver to ask). Vendor spec
# sheets; first match wins, so more specific names come first. Unknown names: None (assumed to have no
# bf16: the conservative precision; the answers' `bf16: true` says otherwise).
_CAPABILITY_BY_NAME: list[tuple[str, tuple[int, int]]] = [
    ("B200", (10, 0)),
    ("B100", (10, 0)),
    ("H200", (9, 0)),
    ("H100", (9, 0)),
    ("GH200", (9, 0)),
    ("L40", (8, 9)),
    ("L4", (8, 9)),
    ("RTX 40", (8, 9)),
    ("RTX 6000 ADA", (8, 9)),
    ("A100", (8, 0)),
    ("A800", (8, 0)),
    ("A30", (8, 0)),
    ("A10", (8, 6)),
    ("A40", (8, 6)),
    ("A6000", (8, 6)),
    ("A5000", (8, 6)),
    ("A4000", (8, 6)),
    ("RTX 30", (8, 6)),
    ("T4", (7, 5)),
    ("RTX 20", (7, 5)),
    ("TITAN RTX", (7, 5)),
    ("QUADRO RTX", (7, 5)),
    ("V100", (7, 0)),
    ("P100", (6, 0)),
    ("P40", (6, 1)),
    ("P4", (6, 1)),
    ("GTX 10", (6, 1)),
    ("K80", (3, 7)),
]


def capability_from_name(name: str) -> tuple[int, int] | None:
    """The compute capability a GPU's marketing name implies, or None when the name is not known."""
    upper = name.upper()
    for key, cc in _CAPABILITY_BY_NAME:
        if key in upper:
            return cc
    return None


def gpus_from_answers(items) -> list[GPU]:
    """GPUs the user listed in the answers file (override detection). The compute capability (and so
    bf16 support) is inferred from the name where it is a known GPU, e.g. a T4 has no bf16."""
    out = []
    for i, g in enumerate(items):
        cc = capability_from_name(g.name)
        bf16 = getattr(g, "bf16", None)
        if bf16 is not None:  # stated in the answers: wins over the name table
            cc = (8, 0) if bf16 else (7, 5)
        reserve = getattr(g, "reserve_gib", None)
        if reserve is None:
            reserve = DISPLAY_RESERVE_GIB if getattr(g, "display", False) else 0.0
        out.append(
            GPU(
                name=g.name,
                memory_gib=float(g.memory_gib),
                index=i,
                source="answers",
                compute_capability=cc,
                display_reserve_gib=float(reserve),
            )
        )
    return out


# What a desktop session (display server, compositor, a browser) typically holds on the card that drives
# the screen, when the answers say `display: true` without a `reserve_gib`. Not measured by tunewise: an
# assumption at the high end of what nvidia-smi shows on desktops; NVML detection measures it instead.
DISPLAY_RESERVE_GIB = 1.5
