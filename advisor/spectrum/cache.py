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
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("key") == key and rec.get("cache_version") == CACHE_VERSION \
                and isinstance(rec.get("modules"), dict):
            return rec
    return None


def cache_store(model_dir: Path, sig: list[list], key: str, record: dict) -> Path | None:
    """Write next to the weights when allowed, else under the user cache; a failure only costs a rescan."""
    for c in cache_dirs(model_dir):
        p = c / f"{_sig_digest(sig)}-{key[:32]}.json"
        try:
            return atomic_write(p, json.dumps({**record, "cache_version": CACHE_VERSION}))
        except UserError:
            continue
    return None
