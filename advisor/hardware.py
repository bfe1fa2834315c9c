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

    @property
    def bf16(self) -> bool:
        """bf16 needs Ampere (8.0) or newer; unknown capability (a GPU from the answers) is assumed
        to support it, since every GPU the guide's stack targets does."""
        return self.compute_capability is None or self.compute_capability >= (8, 0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bf16"] = self.bf16
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
            gpus.append(GPU(name=_s(pynvml.nvmlDeviceGetName(h)), memory_gib=round(mem.total / GiB, 2),
                            free_gib=round(mem.free / GiB, 2), compute_capability=cc, index=i))
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
# sheets; first match wins, so more specific names come first. Unknown names: None (assumed modern).
_CAPABILITY_BY_NAME: list[tuple[str, tuple[int, int]]] = [
    ("B200", (10, 0)), ("B100", (10, 0)), ("H200", (9, 0)), ("H100", (9, 0)), ("GH200", (9, 0)),
    ("L40", (8, 9)), ("L4", (8, 9)), ("RTX 40", (8, 9)), ("RTX 6000 ADA", (8, 9)),
    ("A100", (8, 0)), ("A800", (8, 0)), ("A30", (8, 0)), ("A10", (8, 6)), ("A40", (8, 6)), ("A6000", (8, 6)),
    ("A5000", (8, 6)), ("A4000", (8, 6)), ("RTX 30", (8, 6)),
    ("T4", (7, 5)), ("RTX 20", (7, 5)), ("TITAN RTX", (7, 5)), ("QUADRO RTX", (7, 5)), ("V100", (7, 0)),
    ("P100", (6, 0)), ("P40", (6, 1)), ("P4", (6, 1)), ("GTX 10", (6, 1)), ("K80", (3, 7)),
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
    return [GPU(name=g.name, memory_gib=float(g.memory_gib), index=i, source="answers",
                compute_capability=capability_from_name(g.name)) for i, g in enumerate(items)]
