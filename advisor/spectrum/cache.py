"""Cache of Spectrum scores, keyed by the weight files' content.

Scores (not the selection) are stored, so a rescan at any `--top-percent` reuses them. A record's
file name is `<names+sizes digest>-<content hash>.json`: the first part only tells whether a scan of
files like these exists (so a first scan on a GPU can hash while it scores instead of before);
a record is used only when the content hash matches. Records live next to the weights when that
directory is writable, else under `$XDG_CACHE_HOME/tunewise/spectrum` (default `~/.cache/...`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

from advisor.errors import UserError
from advisor.files import atomic_write

CACHE_VERSION = 1


def cache_dirs(model_dir: Path) -> list[Path]:
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tunewise" / "spectrum"
    return [model_dir / ".tunewise-spectrum", home]


def files_signature(model_dir: Path, files: list[str]) -> list[list]:
    """File names and sizes: a cheap hint, never a key."""
    return [[f, (model_dir / f).stat().st_size] for f in files]


def _sig_digest(sig: list[list]) -> str:
    return hashlib.sha256(json.dumps(sig).encode()).hexdigest()[:12]


def has_candidate(model_dir: Path, sig: list[list]) -> bool:
    """Whether some record was made for files of these names and sizes (content not checked)."""
    prefix = _sig_digest(sig)
    return any(any(c.glob(f"{prefix}-*.json")) for c in cache_dirs(model_dir) if c.is_dir())


def cache_load(model_dir: Path, sig: list[list], key: str) -> dict | None:
    for c in cache_dirs(model_dir):
        p = c / f"{_sig_digest(sig)}-{key[:32]}.json"
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            continue
        if (
            isinstance(rec, dict)
            and rec.get("key") == key
            and rec.get("cache_version") == CACHE_VERSION
            and _well_formed(rec)
        ):
            return rec
    return None


def _well_formed(rec: dict) -> bool:
    """A record edited by hand or cut short is a cache miss (a rescan), never a traceback later on."""
    modules = rec.get("modules")
    if not isinstance(modules, dict) or not modules or not isinstance(rec.get("device"), str):
        return False
    if not isinstance(rec.get("methods", {}), dict):
        return False
    for row in modules.values():
        if not (
            isinstance(row, dict)
            and isinstance(row.get("type"), str)
            and isinstance(row.get("layer"), int)
            and not isinstance(row.get("layer"), bool)
            and isinstance(row.get("score"), int | float)
            and not isinstance(row.get("score"), bool)
            and math.isfinite(row["score"])
        ):
            return False
    return True


def cache_store(model_dir: Path, sig: list[list], key: str, record: dict) -> Path | None:
    """Write next to the weights when allowed, else under the user cache; a failure only costs a rescan."""
    for c in cache_dirs(model_dir):
        p = c / f"{_sig_digest(sig)}-{key[:32]}.json"
        try:
            return atomic_write(p, json.dumps({**record, "cache_version": CACHE_VERSION}))
        except UserError:
            continue
    return None
