"""Time from launching `tunewise wizard` to its first question on screen, through a real pty.

Run: .venv/bin/python bench/wizard_startup.py [RUNS]
Also times `tunewise --help`. Prints wall-clock times and the median, and the child's CPU time
(user + sys, from getrusage after it exits, so it includes the short exit after Ctrl-C): on a
shared, loaded machine the CPU time is the steadier figure.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time

import pexpect

ENV = dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", HF_HUB_OFFLINE="1")


def first_question() -> float:
    t0 = time.perf_counter()
    child = pexpect.spawn(
        sys.executable,
        ["-m", "tunewise", "wizard", "--no-detect"],
        env=ENV,
        dimensions=(40, 100),
        encoding="utf-8",
        timeout=30,
    )
    child.expect("What should the model do")
    dt = time.perf_counter() - t0
    child.sendcontrol("c")
    child.expect(pexpect.EOF)
    child.close()
    return dt


def help_time() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tunewise", "--help"], env=ENV, capture_output=True, check=True)
    return time.perf_counter() - t0


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main(runs: int) -> None:
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for name, fn in (("wizard first question", first_question), ("tunewise --help", help_time)):
        fn()  # warm the file cache
        times, cpus = [], []
        for _ in range(runs):
            c0 = _child_cpu()
            times.append(fn())
            cpus.append(_child_cpu() - c0)
        print(
            f"{name}: wall "
            + ", ".join(f"{t:.3f}" for t in times)
            + f" s; median {statistics.median(times):.3f} s; child CPU median {statistics.median(cpus):.3f} s"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
