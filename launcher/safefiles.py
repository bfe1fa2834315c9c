"""Writing inside a run directory without following links planted there.

A run directory may be shared, copied from elsewhere or prepared by someone else. A `train.log` or
`metrics.jsonl` that is a symlink to `~/.bashrc` must not be appended to, and an `output/` that links
out of the directory must not receive checkpoints. Appends open with O_NOFOLLOW; whole files are
replaced by `rundir.atomic_write` (a rename replaces a link, never writes through it); the launcher
checks the names it will write before the job starts (`refuse_links`).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from advisor.errors import UserError

# What the launcher and the job write in a run directory (files and folders), relative to it.
WRITTEN = (
    ".launch.lock",
    "train.log",
    "metrics.jsonl",
    "summary.json",
    "fingerprint.json",
    "plan.yaml",
    "report.md",
    "output",
    "output/sft",
    "output/dpo",
    "adapter",
    "model",
    "eval.json",
)


def refuse_links(run_dir: Path) -> None:
    """`UserError` when a name the job writes is a symlink, or is not what it should be (a FIFO or a
    device where a file goes would hang or swallow the writes)."""
    for name in WRITTEN:
        p = Path(run_dir) / name
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise UserError(f"cannot check {p}: {e.strerror or e}", "check the run directory") from None
        if stat.S_ISLNK(st.st_mode):
            raise UserError(
                f"{p} is a symlink; tunewise never writes through a link in a run directory "
                f"(it points to {os.readlink(p)})",
                f"remove the link (`rm {p}`) and launch again",
            )
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise UserError(f"{p} is neither a file nor a folder", f"remove it (`rm {p}`) and launch again")


def open_regular(path: str | Path, flags: int, *, verb: str = "write") -> int:
    """`os.open(path, flags)` (created if missing) that never follows a symlink and refuses anything but a
    regular file: a link or special file planted in a run directory is a `UserError`, never written through."""
    path = Path(path)
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UserError(
                f"{path} is a symlink; tunewise never writes through a link in a run directory",
                f"remove it (`rm {path}`) and launch again",
            ) from None
        raise UserError(
            f"cannot {verb} {path}: {e.strerror or e}", "check the directory is writable"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"{path} is not a regular file", f"remove it (`rm {path}`) and launch again")
    os.set_blocking(fd, True)
    return fd


def open_append(path: str | Path) -> int:
    """A descriptor to append to `path` (created if missing), refusing a symlink or a special file."""
    return open_regular(path, os.O_WRONLY | os.O_APPEND)


def append_line(path: str | Path, line: str) -> None:
    """Append one line (one write, so a reader never sees two rows interleaved)."""
    fd = open_append(path)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
    finally:
        os.close(fd)
