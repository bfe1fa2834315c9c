"""Exact and near duplicates by hashing, in a few bytes per row (no row is kept in memory).

Each valid row gets two 64-bit hashes: of its normalised JSON (exact) and of its words after
lowercasing and dropping punctuation and extra whitespace (near). The hashes go into compact arrays;
duplicates are resolved once at the end with a stable sort, so "repeats line N" always names the
first occurrence. 64-bit BLAKE2 hashes make a false match among a million rows about 1 in 10^7.
"""

from __future__ import annotations

import hashlib
import json
import re
from array import array
from dataclasses import dataclass

_PUNCT = re.compile(r"[^\w\s]+")


def _h64(text: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little", signed=True
    )


def _strings(value) -> list[str]:
    """Every string in a normalised row, in order (roles included, so turns stay distinct)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k in sorted(value) for s in _strings(value[k])]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def row_hashes(row: dict) -> tuple[int, int]:
    """(exact, near) hashes of a normalised row."""
    exact = _h64(json.dumps(row, sort_keys=True, ensure_ascii=False))
    words = _PUNCT.sub(" ", "\x1f".join(_strings(row)).lower()).split()
    return exact, _h64(" ".join(words))


class HashLog:
    """Per valid row: record index, line, exact and near hash (32 bytes a row)."""

    def __init__(self) -> None:
        self.index = array("q")
        self.line = array("q")
        self.exact = array("q")
        self.near = array("q")

    def add(self, index: int, line: int, row: dict) -> None:
        e, n = row_hashes(row)
        self.index.append(index)
        self.line.append(line)
        self.exact.append(e)
        self.near.append(n)

    def __len__(self) -> int:
        return len(self.index)


@dataclass
class Duplicates:
    """Positions (into a HashLog) of exact and near duplicates and of what they repeat."""

    exact_pos: list[int]  # positions of rows that repeat an earlier row exactly
    exact_of: list[int]  # ... and the position of that earlier row
    near_pos: list[int]  # positions of rows that nearly (not exactly) repeat an earlier row
    near_of: list[int]


def _first_occurrence(keys):
    """For each element, the position of the first element with the same key (~40 bytes a row at peak)."""
    import numpy as np

    n = len(keys)
    order = np.argsort(keys, kind="stable")
    s = keys[order]
    starts = np.empty(n, dtype=bool)
    starts[0] = True
    np.not_equal(s[1:], s[:-1], out=starts[1:])
    del s
    group_start = np.arange(n)
    group_start[~starts] = 0
    np.maximum.accumulate(group_start, out=group_start)
    first = np.empty_like(order)
    first[order] = order[group_start]
    return first


def find_duplicates(log: HashLog) -> Duplicates:
    import numpy as np

    if len(log) == 0:
        return Duplicates([], [], [], [])
    pos = np.arange(len(log))
    first = _first_occurrence(np.frombuffer(log.exact, dtype=np.int64))
    is_exact = first != pos
    ep = np.nonzero(is_exact)[0]
    exact_of = first[ep].tolist()
    del first
    first = _first_occurrence(np.frombuffer(log.near, dtype=np.int64))
    npos = np.nonzero((first != pos) & ~is_exact)[0]
    return Duplicates(ep.tolist(), exact_of, npos.tolist(), first[npos].tolist())


def find_leaks(train: HashLog, val: HashLog) -> list[tuple[int, int]]:
    """(validation position, train position) for validation rows whose exact or near hash is in train."""
    import numpy as np

    if len(train) == 0 or len(val) == 0:
        return []
    out: dict[int, int] = {}
    for t_arr, v_arr in ((train.exact, val.exact), (train.near, val.near)):
        t = np.frombuffer(t_arr, dtype=np.int64)
        v = np.frombuffer(v_arr, dtype=np.int64)
        order = np.argsort(t, kind="stable")
        st = t[order]
        at = np.searchsorted(st, v)
        hit = (at < len(st)) & (st[np.minimum(at, len(st) - 1)] == v)
        for vp in np.nonzero(hit)[0].tolist():
            out.setdefault(vp, int(order[at[vp]]))
    return sorted(out.items())
