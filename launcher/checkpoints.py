"""Which checkpoint a resume may use: the newest *complete* one.

A save cut short (kill -9 or a second Ctrl-C during the save, a full disk) leaves a `checkpoint-N`
folder that looks like the newest one but lacks `trainer_state.json` or holds a truncated
`optimizer.pt` or adapter. Resuming from it fails every time, so such a folder is set aside as
`incomplete-checkpoint-N` (kept, never deleted) and the resume uses the newest complete one, or
starts from scratch when there is none.

A checkpoint is complete when every file a resume reads is there and whole:
- `trainer_state.json` parses as a JSON object;
- `optimizer.pt`, `scheduler.pt` and each `rng_state*.pth` are whole torch archives (a zip file's
  central directory is at its very end, so a truncated file has none);
- each `*.safetensors` file is exactly as long as its header says;
- the completion record `tunewise_complete.json`, written last (atomically) by `MarkComplete`,
  lists each file with its size, and the sizes still match.
Checkpoints written by an older tunewise have no record; they are checked by structure alone.
No heavy imports: this runs in the launcher as well as in the job.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zipfile
from pathlib import Path

RECORD = "tunewise_complete.json"
_CKPT = re.compile(r"^checkpoint-(\d+)$")
_TORCH_FILES = ("optimizer.pt", "scheduler.pt")


def checkpoints(out_dir: Path) -> list[Path]:
    """`checkpoint-N` folders under `out_dir`, newest (highest N) first."""
    if not out_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in out_dir.iterdir()
        if (m := _CKPT.match(p.name)) and p.is_dir() and not p.is_symlink()
    ]
    return [p for _, p in sorted(found, reverse=True)]


def problem(ckpt: Path) -> str | None:
    """Why `ckpt` cannot be resumed from, or None when it is complete."""
    state = ckpt / "trainer_state.json"
    try:
        if not isinstance(json.loads(state.read_text(encoding="utf-8")), dict):
            return "trainer_state.json is not a JSON object"
    except FileNotFoundError:
        return "trainer_state.json is missing (the save was cut off)"
    except (OSError, ValueError):
        return "trainer_state.json is damaged"
    record = ckpt / RECORD
    if record.is_file():
        try:
            sizes = json.loads(record.read_text(encoding="utf-8"))["files"]
            for name, size in sizes.items():
                f = ckpt / name
                if not f.is_file():
                    return f"{name} is missing (the save was cut off)"
                if f.stat().st_size != size:
                    return f"{name} is truncated ({f.stat().st_size} of {size} bytes)"
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return f"{RECORD} is damaged"
    for name in _TORCH_FILES:
        f = ckpt / name
        if name == "optimizer.pt" and not f.exists() and _sharded_optimizer(ckpt):
            continue
        if not f.is_file():
            return f"{name} is missing (the save was cut off)"
        if not zipfile.is_zipfile(f):
            return f"{name} is truncated or damaged"
    rng = sorted(ckpt.glob("rng_state*.pth"))
    if not rng:
        return "rng_state.pth is missing (the save was cut off)"
    for f in rng:
        if not zipfile.is_zipfile(f):
            return f"{f.name} is truncated or damaged"
    weights = sorted(ckpt.glob("*.safetensors"))
    if not weights and not any(ckpt.glob("pytorch_model*.bin")) and not any(ckpt.glob("pytorch_model_fsdp*")):
        return "no model or adapter weights (the save was cut off)"
    for f in weights:
        why = _safetensors_problem(f)
        if why:
            return f"{f.name} {why}"
    return None


def _sharded_optimizer(ckpt: Path) -> bool:
    """FSDP (`optimizer_0/`) and DeepSpeed (`global_step*/`) save the optimizer as a folder of shards."""
    return any(p.is_dir() for p in (*ckpt.glob("optimizer_*"), *ckpt.glob("global_step*")))


def _safetensors_problem(path: Path) -> str | None:
    """A safetensors file is an 8-byte header length, a JSON header, then the tensor bytes the header
    places; a file of any other length was cut off (or padded)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                return "is truncated"
            (n,) = struct.unpack("<Q", raw)
            if n > min(size - 8, 100 << 20):
                return "is truncated"
            header = json.loads(f.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return "is damaged"
    return None if size == 8 + n + end else "is truncated"


def newest_complete(out_dir: Path, *, set_aside: bool = True) -> tuple[Path | None, list[str]]:
    """The newest complete checkpoint in `out_dir` and one note per newer one that was skipped (and,
    with `set_aside`, renamed `incomplete-checkpoint-N` so the trainer never writes into it or
    mistakes it for a checkpoint)."""
    notes = []
    for ckpt in checkpoints(out_dir):
        why = problem(ckpt)
        if why is None:
            return ckpt, notes
        moved = ""
        if set_aside:
            target = _free_name(ckpt.with_name(f"incomplete-{ckpt.name}"))
            try:
                os.rename(ckpt, target)
                moved = f"; kept as {target.name}"
            except OSError:
                pass
        notes.append(f"skipped {ckpt.name}: {why}{moved}")
    return None, notes


def _free_name(p: Path) -> Path:
    n, cand = 1, p
    while cand.exists() or cand.is_symlink():
        n += 1
        cand = p.with_name(f"{p.name}.{n}")
    return cand


def write_record(ckpt: Path) -> None:
    """Record every file of a finished save with its size: written last, through a temporary file
    and a rename, so the record exists only once the checkpoint is whole."""
    files = {
        str(p.relative_to(ckpt)): p.stat().st_size
        for p in sorted(ckpt.rglob("*"))
        if p.is_file() and not p.is_symlink() and p.name != RECORD
    }
    tmp = ckpt / f".{RECORD}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"files": files}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, ckpt / RECORD)
