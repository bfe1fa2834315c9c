"""Safetensors access for the Spectrum scan: find the weight files, list tensors, read one at a time.

Nothing here loads a whole model. Shapes come from the files' headers; tensor data is read one
tensor at a time (with a small read-ahead so disk and compute overlap), and the cache key is a hash
of the files' bytes. torch and safetensors are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from advisor.errors import UserError

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
HASH_CHUNK = 64 << 20  # bytes per hashed chunk; chunks are hashed in parallel threads

# Tensor names that only appear in quantized checkpoints (GPTQ/AWQ, bitsandbytes, FP8 block scales):
# their "weights" are not the matrices the score is defined on.
QUANT_MARKERS = (
    ".qweight",
    ".qzeros",
    ".scales",
    ".weight_scale",
    ".weight_scale_inv",
    ".SCB",
    ".absmax",
    ".quant_map",
    ".quant_state",
    ".g_idx",
)
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header describes it."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype code: BF16, F16, F32, I8, ...
    file: str  # file name inside the model directory

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class LayerMatrix:
    """A 2-D weight inside a numbered layer: `<prefix>.<layer>.<type>.weight`."""

    module: str  # parameter name without `.weight`, e.g. model.layers.3.self_attn.q_proj
    prefix: str  # e.g. model.layers
    layer: int
    type: str  # e.g. self_attn.q_proj (phi3: self_attn.qkv_proj, mlp.gate_up_proj)
    info: TensorInfo


def weight_files(model_dir: str | Path) -> tuple[Path, list[str]]:
    """The directory and its safetensors files (index order), or UserError saying what is missing."""
    d = Path(model_dir).expanduser()
    if not d.exists():
        raise UserError(f"model directory {d} does not exist", "pass a local directory holding *.safetensors")
    if not d.is_dir():
        raise UserError(f"{d} is not a directory", "pass the model's directory, not a file inside it")
    index = d / INDEX_NAME
    if index.exists():
        try:
            data = json.loads(index.read_text(encoding="utf-8"))
            weight_map = data["weight_map"]
            if not isinstance(weight_map, dict) or not weight_map:
                raise TypeError("weight_map is empty or not a mapping")
            files = sorted({str(f) for f in weight_map.values()})
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
            raise UserError(
                f"{index}: not a valid safetensors index ({type(e).__name__}: {e})",
                "re-download the model or remove the broken index file",
            ) from None
        missing = [f for f in files if not (d / f).is_file()]
        if missing:
            raise UserError(
                f"{index} names {len(missing)} missing shard(s): {', '.join(missing[:3])}",
                "finish downloading the model (all shards the index lists)",
            )
        return d, files
    if (d / SINGLE_NAME).is_file():
        return d, [SINGLE_NAME]
    found = sorted(p.name for p in d.glob("*.safetensors"))
    if len(found) == 1:
        return d, found
    if not found:
        raise UserError(
            f"no safetensors weights in {d}",
            "download the model's *.safetensors files (pytorch_model.bin is not read)",
        )
    raise UserError(
        f"{d} holds {len(found)} safetensors files but no {INDEX_NAME}",
        f"add the index, or keep only the model's weights ({', '.join(found[:3])} ...)",
    )


def list_tensors(model_dir: str | Path) -> list[TensorInfo]:
    """Every tensor's name, shape and dtype, parsed from the files' headers (no torch, no data read).

    A safetensors file starts with an 8-byte little-endian header length, then that many bytes of
    JSON mapping each tensor name to its dtype, shape and byte range.
    """
    d, files = weight_files(model_dir)
    out: list[TensorInfo] = []
    for f in files:
        p = d / f
        try:
            with open(p, "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                if not 2 <= n <= min(p.stat().st_size - 8, 1 << 30):
                    raise ValueError(f"header length {n} does not fit the file")
                header = json.loads(fh.read(n))
            for name, meta in header.items():
                if name != "__metadata__":
                    out.append(TensorInfo(name, tuple(int(x) for x in meta["shape"]), str(meta["dtype"]), f))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise UserError(
                f"{p}: not a readable safetensors file ({type(e).__name__}: {e})", "re-download this file"
            ) from None
    return out


def layer_matrices(tensors: list[TensorInfo]) -> list[LayerMatrix]:
    """The 2-D float weights inside numbered layers (attention and MLP projections).

    The layer index is the first purely numeric part of the name; the type is everything after it
    (so Phi-3's fused `self_attn.qkv_proj` and `mlp.gate_up_proj` are types of their own). Norms are
    1-D and skipped; so are embeddings and `lm_head`, which sit outside the layers. When a model has
    more than one layer stack (a vision tower next to the decoder), types are qualified with the
    stack's prefix so the two never share a ranking.
    """
    quant = [t.name for t in tensors if t.name.endswith(QUANT_MARKERS) or ".quant_state." in t.name]
    if quant:
        raise UserError(
            f"quantized checkpoint (e.g. tensor {quant[0]}): the score needs the original weights",
            "scan the bf16/fp16 release of this model; a LoRA/QLoRA run can still use this one",
        )
    found: list[LayerMatrix] = []
    for t in tensors:
        if len(t.shape) != 2 or not t.name.endswith(".weight"):
            continue
        parts = t.name[: -len(".weight")].split(".")
        idx = next((i for i, p in enumerate(parts) if p.isdigit()), None)
        if idx is None or idx == len(parts) - 1:
            continue
        if t.dtype not in FLOAT_DTYPES:
            raise UserError(
                f"tensor {t.name} has dtype {t.dtype}, not a float type",
                "scan the bf16/fp16 release of this model",
            )
        found.append(
            LayerMatrix(
                ".".join(parts), ".".join(parts[:idx]), int(parts[idx]), ".".join(parts[idx + 1 :]), t
            )
        )
    prefixes = {m.prefix for m in found}
    if len(prefixes) > 1:
        found = [LayerMatrix(m.module, m.prefix, m.layer, f"{m.prefix}/{m.type}", m.info) for m in found]
    return found


def read_matrices(
    model_dir: Path, matrices: list[LayerMatrix], *, ahead: int = 2
) -> Iterator[tuple[LayerMatrix, object]]:
    """Yield `(matrix, torch tensor)` one at a time, reading up to `ahead` tensors in advance.

    A reader thread queues at most `ahead` tensors (plus the one it is handing over), so peak
    memory is a few matrices whatever the model's size, while the disk works during the scoring.
    """
    from safetensors import safe_open

    by_file: dict[str, list[LayerMatrix]] = {}
    for m in matrices:
        by_file.setdefault(m.info.file, []).append(m)
    q: queue.Queue = queue.Queue(maxsize=max(1, ahead))
    stop = threading.Event()

    def reader() -> None:
        try:
            for f, ms in by_file.items():
                with safe_open(str(model_dir / f), framework="pt") as fh:
                    for m in ms:
                        if stop.is_set():
                            return
                        q.put((m, fh.get_tensor(m.info.name)))
            q.put(None)
        except BaseException as e:  # hand the error to the consumer instead of dying silently
            q.put(e)

    th = threading.Thread(target=reader, name="spectrum-reader", daemon=True)
    th.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise UserError(
                    f"reading weights from {model_dir} failed ({type(item).__name__}: {item})",
                    "re-download the model files",
                ) from None
            yield item
    finally:
        stop.set()
        while th.is_alive():  # drain so a blocked put() can see the stop flag
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
        th.join()


def content_key(
    model_dir: Path,
    files: list[str],
    *,
    extra: str = "",
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> str:
    """SHA-256 tree hash of the weight files' bytes (64 MiB chunks hashed in parallel threads).

    The key changes whenever any byte of any weight file (or the index) changes; size and mtime
    are not used. hashlib releases the GIL on large buffers, so threads scale with cores.
    """
    jobs: list[tuple[Path, int, int]] = []
    for f in files:
        p = model_dir / f
        size = p.stat().st_size
        jobs += [(p, off, min(HASH_CHUNK, size - off)) for off in range(0, size, HASH_CHUNK)] or [(p, 0, 0)]
    total = sum(n for _, _, n in jobs)
    done = 0

    def digest(job: tuple[Path, int, int]) -> bytes:
        p, off, n = job
        fd = os.open(p, os.O_RDONLY)
        try:
            h = hashlib.sha256()
            pos, end = off, off + n
            while pos < end:  # pread in 8 MiB pieces keeps each thread's buffer small
                buf = os.pread(fd, min(8 << 20, end - pos), pos)
                if not buf:
                    raise UserError(f"{p} shrank while being read", "wait for the download to finish")
                h.update(buf)
                pos += len(buf)
            return h.digest()
        finally:
            os.close(fd)

    top = hashlib.sha256(extra.encode())
    index = model_dir / INDEX_NAME
    if index.exists():
        top.update(index.read_bytes())
    with ThreadPoolExecutor(max_workers=workers or min(16, os.cpu_count() or 1)) as ex:
        for (p, off, n), dg in zip(jobs, ex.map(digest, jobs), strict=True):
            top.update(f"{p.name}:{off}:{n}:".encode())
            top.update(dg)
            done += n
            if progress:
                progress(done, total)
    return top.hexdigest()
