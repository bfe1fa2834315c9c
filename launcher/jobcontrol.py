"""Who may train a run directory, and how a job is stopped: the run lock and stop requests.

The lock is `RUN_DIR/.launch.lock`, an advisory `flock`. A launcher takes it exclusively for a moment
(so a second launcher is refused), then holds it shared, and so does every process of the job: the
launcher's child inherits the launcher's descriptor, and each training process (every rank of a
multi-process job) opens the file and takes a shared lock of its own. A later launch wants the lock
exclusively, so it is refused while *any* process of the job is alive, even after the launcher was
killed with `kill -9`; the kernel releases each share when its process ends, however it ends.

The file is opened with O_NOFOLLOW: a symlink planted in its place is refused, never written through.
No heavy imports; the training script installs `StopRequest` before it imports torch.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import threading
import time
from pathlib import Path

from advisor.errors import UserError
from launcher.safefiles import open_regular

LOCK_FILE = ".launch.lock"
LAUNCHED_BY = "TUNEWISE_LAUNCHER_PID"  # set by the launcher in the job's environment
INHERITED_FD = "TUNEWISE_LOCK_FD"  # the launcher's lock descriptor, as the job's first process inherits it
_held: list[int] = []  # the job's lock descriptors, kept open for the life of the process


def _busy(run_dir: Path, fd: int) -> UserError:
    try:
        pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        pid = ""
    return UserError(
        f"{run_dir} is already being trained by another `tunewise launch` or its job"
        + (f" (started by pid {pid})" if pid.isdigit() else "")
        + "; every process of a job holds the run's lock until it ends",
        "wait for it to finish, or stop it (Ctrl-C in its terminal, or `kill -TERM` its pid: it saves "
        "a checkpoint) and launch again to resume",
    )


def open_lock(run_dir: Path) -> int:
    """Open RUN_DIR/.launch.lock without following a symlink; a symlink or special file is refused."""
    return open_regular(Path(run_dir) / LOCK_FILE, os.O_RDWR, verb="open")


def acquire(run_dir: Path) -> int:
    """Take the run's lock for a new launch (or a job started by hand): exclusive for a moment, so
    no process of an earlier job is alive, then shared for as long as the returned descriptor (or a
    child that inherits it) lives. Raises `UserError` when the run is busy."""
    fd = open_lock(run_dir)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # another launcher slipping in here is refused by it
    except BlockingIOError:
        err = _busy(run_dir, fd)
        os.close(fd)
        raise err from None
    return fd


def hold_for_job(run_dir: Path) -> None:
    """In each training process: hold the run's lock (shared) until this process ends.

    Started by the launcher (or as one rank of several), the launcher already checked that the run
    is free, so a shared lock is enough; started by hand, the job checks like a launcher does."""
    try:  # the launcher's descriptor, inherited: keep it, but out of any process this one starts
        os.set_inheritable(int(os.environ.get(INHERITED_FD, "")), False)
    except (ValueError, OSError):
        pass
    by_launcher = bool(os.environ.get(LAUNCHED_BY)) or int(os.environ.get("WORLD_SIZE", "1")) > 1
    if not by_launcher:
        _held.append(acquire(run_dir))
        return
    fd = open_lock(run_dir)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        err = _busy(run_dir, fd)
        os.close(fd)
        raise err from None
    _held.append(fd)


def release() -> None:
    """Give up this process's share of the lock (the training script returning inside a longer-lived
    process, such as a test; a process that ends releases it anyway)."""
    while _held:
        os.close(_held.pop())


class StopRequest:
    """SIGTERM or Ctrl-C: ask the job to save a checkpoint and stop, at any moment (even while torch
    is still being imported). A repeated SIGTERM (a launcher, Slurm and torchrun may each send one)
    changes nothing; only a second Ctrl-C in a terminal running the job directly stops it hard."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def request(self, why: str) -> None:
        if not self.requested:
            self.requested = why
            print(f"\n[tunewise] {why}: saving a checkpoint after this step, then stopping", flush=True)

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.requested and signum == signal.SIGINT and self.requested == "SIGINT":
            raise KeyboardInterrupt  # Ctrl-C twice, by hand: the user really means it
        if self.requested:
            print(
                f"[tunewise] {name} again: already stopping (the checkpoint is being saved)",
                file=sys.stderr,
                flush=True,
            )
            return
        self.request(name)

    def watch_launcher(self) -> None:
        """A job started by `tunewise launch` stops (saving first) when its launcher is gone, however the
        launcher ended; every rank watches, so no worker of a multi-process job is left behind."""
        try:
            pid = int(os.environ.get(LAUNCHED_BY, ""))
        except ValueError:
            return

        def watch():
            while not self.requested:
                if not _alive(pid):
                    self.request("the launcher ended")
                    return
                time.sleep(1.0)

        threading.Thread(target=watch, name="tunewise-launcher-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (the launcher ended but was not reaped yet) is gone for our purpose.
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def group_alive(pgid: int) -> bool:
    """True while any process of the job's process group is alive."""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def group_members(pgid: int) -> list[int]:
    """PIDs in process group `pgid` (Linux /proc), zombies left out."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[0] != b"Z" and int(fields[2]) == pgid:
            out.append(int(entry))
    return out


def job_members(launcher_pid: int) -> list[int]:
    """PIDs of the live processes a launcher started, wherever they are now: torchrun starts each worker
    in a session of its own, and a worker whose parent died is re-parented, so neither the process
    group nor the process tree finds them all. Each carries TUNEWISE_LAUNCHER_PID in its environment."""
    marker = f"\0{LAUNCHED_BY}={launcher_pid}\0".encode()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = b"\0" + f.read()
            if marker not in env:
                continue
            with open(f"/proc/{entry}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
        except (OSError, IndexError):
            continue
        out.append(int(entry))
    return out
