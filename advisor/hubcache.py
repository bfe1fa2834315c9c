"""Where a model's tokenizer is on this machine: its local folder, or the local Hugging Face hub cache.

Read-only and never online: the planner measures the data with a hub model's tokenizer only when it is
already cached (advisor/facts.py); otherwise the lengths are reported unmeasured.
"""

from __future__ import annotations

import os
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache as the hub client finds it (read when called, so a test's HF_HOME counts)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def find_tokenizer(names: list[str]) -> tuple[str | None, str]:
    """(a folder holding tokenizer files, where it was found) for the first of `names` that has one: a
    local folder, or a hub id whose tokenizer is in the local Hugging Face cache (never downloaded); (None,
    why not) otherwise."""
    for name in names:
        if not name:
            continue
        p = Path(name).expanduser()
        try:
            local = p.is_dir()
        except OSError:  # a name too long for the file system: not a folder
            local = False
        if local:
            if any((p / f).is_file() for f in TOKENIZER_FILES):
                return str(p), "the model's folder"
            continue
        if name.count("/") != 1 or name.startswith((".", "/", "~")):
            continue
        snapshot = _cached_snapshot(name)
        if snapshot:
            return snapshot, "the local Hugging Face cache"
    shown = ", ".join(n for n in names if n) or "no model named"
    return None, f"no tokenizer for {shown} in a local folder or the Hugging Face cache"


def _cached_snapshot(repo: str) -> str | None:
    """The cached snapshot folder of hub repo `repo` that holds tokenizer files (main's first)."""
    folder = hub_cache_dir() / ("models--" + repo.replace("/", "--"))
    snaps = folder / "snapshots"
    try:
        main = (folder / "refs" / "main").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        main = None
    try:
        found = sorted(snaps.iterdir(), key=lambda d: (d.name != main, -d.stat().st_mtime))
    except OSError:
        return None
    for d in found:
        if any((d / f).is_file() for f in TOKENIZER_FILES):
            return str(d)
    return None
