"""Functional correctness for code tasks: run the data's own tests on the model's answer (pass@1).

As HumanEval and MBPP score a completion: the code is taken from the answer (its first fenced Python block,
else the whole text), the row's tests (Python `assert` statements) appended, and the program run by the
current interpreter in a subprocess: isolated mode (`python -I`), in a fresh temporary directory that is
also its working directory, HOME and TMPDIR, no input, output captured, killed with its process group after
`TIMEOUT_S`. Exit status 0 is a pass. One greedy answer per prompt, so the per-example value is 0 or 1 and
the mean is pass@1.

This executes model-written code on this machine. The temporary directory keeps a well-behaved program's
files in one place and removes them; it is not a sandbox (a program can still reach absolute paths and the
network). `evaluation.run_tests: false` in plan.yaml turns it off.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

TIMEOUT_S = 10.0  # per example: a correct answer to a MBPP/HumanEval-sized problem runs in well under 1 s
WORKERS = (
    2  # programs at a time (threads waiting on subprocesses): the small machines CI runs on have 2 cores
)
PROGRAM = "solution.py"

# A fenced block: ```python / ```py / ```python3 / ``` then the code, up to the closing fence or the end of
# the answer (a generation cut by the token budget leaves the fence open).
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = ("python", "py", "python3")


def extract_code(answer: str) -> str:
    """The code of an answer: its first fenced Python block, else its first untagged fenced block, else all
    of it."""
    blocks = _FENCE.findall(answer)
    for tag, body in blocks:
        if tag.lower() in _PYTHON_TAGS:
            return body
    for tag, body in blocks:
        if not tag:
            return body
    return answer


def program(answer: str, tests: list[str]) -> str:
    """The script that is run: the answer's code, then the tests."""
    return extract_code(answer).rstrip() + "\n\n\n" + "\n".join(tests) + "\n"


def run_program(source: str, timeout: float | None = None) -> tuple[bool, str]:
    """(passed, why) for one program; why is "passed", "exit N: <last line of stderr>" or "timeout" (after
    `timeout` seconds, `TIMEOUT_S` when not given)."""
    timeout = TIMEOUT_S if timeout is None else timeout
    with tempfile.TemporaryDirectory(prefix="tunewise-tests-") as tmp:
        path = Path(tmp) / PROGRAM
        path.write_text(source, encoding="utf-8")
        env = {"PATH": os.environ.get("PATH", ""), "HOME": tmp, "TMPDIR": tmp, "PYTHONHASHSEED": "0"}
        proc = subprocess.Popen(
            [sys.executable, "-I", PROGRAM],
            cwd=tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: a timeout kills whatever it started too
        )
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return False, "timeout"
        finally:
            if proc.poll() is None:  # interrupted (Ctrl-C): leave nothing running
                _kill_group(proc)
                proc.wait()
        if proc.returncode == 0:
            return True, "passed"
        last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        return False, f"exit {proc.returncode}: {last[0][:200]}"


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def tests_pass(
    answers: list[str], tests: list[list[str]], *, timeout: float | None = None, workers: int = WORKERS
) -> np.ndarray:
    """1.0 where an answer passes its row's tests, else 0.0 (a timeout or crash fails that example only).
    `timeout`: seconds per example, `TIMEOUT_S` when not given."""
    sources = [program(a, t) for a, t in zip(answers, tests, strict=True)]
    limit = TIMEOUT_S if timeout is None else timeout
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(lambda s: run_program(s, limit), sources))
    return np.array([float(ok) for ok, _ in results])
