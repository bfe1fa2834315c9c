"""Benchmark `inspect_dataset` on generated JSONL: wall time, rows/s and peak memory (RSS).

    .venv/bin/python bench/inspect_speed.py --rows 100000 1000000

Each size is generated once (about 1 KB a row, chat rows in `messages` format with 1% exact
duplicates, 1% near-duplicates and 0.5% broken rows), then inspected in a fresh child process so
the peak RSS (`resource.getrusage`) belongs to that inspection alone. The child also reports its
RSS right after importing the package, so the growth due to the data is visible. No tokenizer.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
from pathlib import Path

WORDS = (
    "cloud storage bucket region latency invoice quota replica backup restore token account user "
    "deploy cluster node network firewall rule policy billing support ticket error timeout retry "
    "database snapshot volume encryption key rotate audit log metric alert dashboard"
).split()


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def generate(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    recent: list[str] = []
    last: dict | None = None
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            r = rng.random()
            if r < 0.005:
                f.write('{"messages": [{"role": "user", "content": "broken\n')
                continue
            if r < 0.015 and recent:
                f.write(rng.choice(recent))
                continue
            q = " ".join(_sentence(rng, rng.randint(8, 20)) for _ in range(rng.randint(1, 3)))
            a = " ".join(_sentence(rng, rng.randint(8, 24)) for _ in range(rng.randint(3, 8)))
            row = {
                "messages": [
                    {"role": "system", "content": "You are Acme Cloud's support assistant."},
                    {"role": "user", "content": f"#{i} {q}"},
                    {"role": "assistant", "content": a},
                ]
            }
            if r < 0.025 and last is not None:  # the previous row shouting: same words, new case/punctuation
                row = {
                    "messages": [
                        {**m, "content": m["content"].upper().replace(".", "!")} for m in last["messages"]
                    ]
                }
            last = row
            line = json.dumps(row) + "\n"
            f.write(line)
            recent = (recent + [line])[-50:]


CHILD = """
import resource, sys, time, json
t0 = time.perf_counter()
from advisor.data import inspect_dataset
u0 = resource.getrusage(resource.RUSAGE_SELF)
base = u0.ru_maxrss
t1 = time.perf_counter()
r = inspect_dataset(sys.argv[1])
t2 = time.perf_counter()
u1 = resource.getrusage(resource.RUSAGE_SELF)
peak = u1.ru_maxrss
cpu = (u1.ru_utime + u1.ru_stime) - (u0.ru_utime + u0.ru_stime)
print(json.dumps({"rows": r.rows, "valid": r.valid, "invalid": r.invalid_count, "duplicates": r.duplicates,
                  "near": r.near_duplicates, "seconds": t2 - t1, "cpu": cpu, "base_kib": base, "peak_kib": peak}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000])
    ap.add_argument("--dir", default=None, help="where to generate the files (default: a temp dir)")
    args = ap.parse_args()
    root = Path(__file__).resolve().parents[1]
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="inspect-bench-"))
    print(f"# {platform.platform()}, python {platform.python_version()}, {os.cpu_count()} CPUs")
    print(
        "# wall = elapsed seconds (the machine is shared: see load); cpu = user+sys seconds of the inspection"
    )
    print(
        f"{'rows':>10} {'MB':>8} {'wall s':>8} {'cpu s':>7} {'rows/s':>9} {'RSS base MiB':>13} "
        f"{'RSS peak MiB':>13} {'invalid':>8} {'dups':>7} {'near':>7} {'load':>5}"
    )
    for n in args.rows:
        path = workdir / f"bench-{n}.jsonl"
        if not path.exists():
            generate(path, n)
        size_mb = path.stat().st_size / 1e6
        load = os.getloadavg()[0]
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(path)],
            capture_output=True,
            text=True,
            check=True,
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
        ).stdout
        m = json.loads(out.strip().splitlines()[-1])
        print(
            f"{m['rows']:>10,} {size_mb:>8.1f} {m['seconds']:>8.2f} {m['cpu']:>7.2f} "
            f"{m['rows'] / m['seconds']:>9,.0f} {m['base_kib'] / 1024:>13.1f} {m['peak_kib'] / 1024:>13.1f} "
            f"{m['invalid']:>8,} {m['duplicates']:>7,} {m['near']:>7,} {load:>5.1f}",
            flush=True,
        )
        if not args.dir:
            path.unlink()


if __name__ == "__main__":
    main()
