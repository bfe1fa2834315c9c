"""Files written whole or not at all: every file tunewise writes goes through here.

The content goes to a temporary file in the target's folder, is flushed to disk, and is renamed over the
target only when complete, so a reader, a crash or a full disk never leaves half a file under the real
name (the previous file, if any, stays). A failure is a `UserError` naming the file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from advisor.errors import UserError

DEFAULT_FIX = "check that the folder is writable and the disk has free space"


@contextmanager
def atomic_file(
    path: str | Path, *, binary: bool = False, mode: int | None = None, fix: str = DEFAULT_FIX
) -> Iterator[IO]:
    """Open a temporary file beside `path` for writing; on a clean exit it replaces `path` atomically.
    `mode` sets the file's permission bits; `fix` is the advice of the error raised when writing fails.
    An exception raised by the caller's own code inside the block passes through unchanged (the
    temporary file is removed); only this helper's file operations become a `UserError`."""
    path = Path(path)
    tmp = None
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            f = os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"}))
        except OSError as e:
            raise _write_error(path, e, fix) from None
        with f:
            yield f
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as e:
                raise _write_error(path, e, fix) from None
        try:
            if mode is not None:
                os.chmod(tmp, mode)
            os.replace(tmp, path)
        except OSError as e:
            raise _write_error(path, e, fix) from None
        tmp = None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _write_error(path: Path, e: OSError, fix: str) -> UserError:
    return UserError(f"cannot write {path}: {e.strerror or e}", fix)


def atomic_write(
    path: str | Path, content: str | bytes, *, mode: int | None = None, fix: str = DEFAULT_FIX
) -> Path:
    """Write `content` (text as UTF-8, or bytes) to `path` whole or not at all; returns the path."""
    with atomic_file(path, binary=isinstance(content, bytes), mode=mode, fix=fix) as f:
        try:
            f.write(content)
        except OSError as e:
            raise _write_error(Path(path), e, fix) from None
    return Path(path)
