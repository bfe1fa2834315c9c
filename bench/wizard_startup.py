"""Time from launching `tunewise wizard` to its first question on screen, through a real pty.

Run: .venv/bin/python bench/wizard_startup.py [RUNS]
Also times `tunewise --help`. Prints one line per measurement and the median.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import pexpect

ENV = dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", HF_HUB_OFFLINE="1")


def first_question() -> float:
    t0 = time.perf_counter()
    child = pexpect.spawn(sys.executable, ["-m", "advisor", "wizard", "--no-detect"], env=ENV,
                          dimensions=(40, 100), encoding="utf-8", timeout=30)
    child.expect("What should the model do")
    dt = time.perf_counter() - t0
    child.sendcontrol("c")
    child.expect(pexpect.EOF)
    child.close()
    return dt


def help_time() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "advisor", "--help"], env=ENV, capture_output=True, check=True)
    return time.perf_counter() - t0


def main(runs: int) -> None:
    for name, fn in (("wizard first question", first_question), ("tunewise --help", help_time)):
        fn()  # warm the file cache
        times = [fn() for _ in range(runs)]
        print(f"{name}: " + ", ".join(f"{t:.3f}" for t in times) + f" s; median {statistics.median(times):.3f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
