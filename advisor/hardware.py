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


def gpus_from_answers(items) -> list[GPU]:
    """GPUs the user listed in the answers file (override detection)."""
    return [GPU(name=g.name, memory_gib=float(g.memory_gib), index=i, source="answers") for i, g in enumerate(items)]
