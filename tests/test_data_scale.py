"""Bounded memory: inspecting 6x more rows must not grow peak RSS anywhere near the file's growth.

A smaller-scale version of `bench/inspect_speed.py` (which measures 100,000 and 1,000,000 rows).
No timing assertions: the 2-core test machine is shared.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, resource, sys
from advisor.data import inspect_dataset
r = inspect_dataset(sys.argv[1])
print(json.dumps({"rows": r.rows, "duplicates": r.duplicates,
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""
FILLER = "the storage bucket in this region answers slowly after the quota was raised " * 6


def _generate(path: Path, rows: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            j = i - 1 if i % 100 == 99 else i  # 1% exact duplicates
            f.write(
                json.dumps({"prompt": f"Ticket {j}: {FILLER}", "completion": f"Reply {j}: {FILLER}"}) + "\n"
            )


def _peak(path: Path) -> dict:
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        timeout=300,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_peak_memory_grows_far_slower_than_the_file(tmp_path):
    small, big = tmp_path / "small.jsonl", tmp_path / "big.jsonl"
    _generate(small, 20_000)
    _generate(big, 120_000)
    a, b = _peak(small), _peak(big)
    assert (a["rows"], b["rows"], b["duplicates"]) == (20_000, 120_000, 1_200)
    file_growth_kib = (big.stat().st_size - small.stat().st_size) / 1024
    rss_growth_kib = b["peak_kib"] - a["peak_kib"]
    # Holding the rows would cost more than the file itself; hashes cost ~40 bytes a row.
    assert rss_growth_kib < 0.15 * file_growth_kib, (rss_growth_kib, file_growth_kib)
