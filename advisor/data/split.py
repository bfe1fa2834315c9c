"""`write_split`: a deterministic train/validation split, normalised to TRL's native formats.

The guide's data section asks for roughly 80% training / 20% validation, stratified when there is
something to stratify on ("Data Preparation Best Practices"). Invalid rows and exact duplicates are
left out; near-duplicates are kept but always land on the same side as the row they repeat, so the
validation loss is not flattered by rows the model trained on. Files appear atomically.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from advisor.data.dedup import find_duplicates, find_leaks
from advisor.data.formats import NORMALISED
from advisor.data.preflight import _inspect, checked_rows
from advisor.data.report import DataReport
from advisor.errors import CheckFailed, UserError
from advisor.files import atomic_file

TRAIN_FILE = "train.jsonl"
VALIDATION_FILE = "validation.jsonl"


@dataclass
class SplitResult:
    """Where the split went and what it holds. `format` is the normalised (TRL) format."""

    train: Path
    validation: Path
    format: str  # messages | prompt-completion | preference | text
    train_rows: int
    validation_rows: int
    dropped_invalid: int
    dropped_duplicates: int
    dropped_leaked: int = 0  # rows of a given validation file that repeat training rows
    stratified: bool = False
    label_column: str | None = None
    source_format: str | None = None  # the detected format of the input
    seed: int = 42
    val_fraction: float = 0.2
    report: DataReport | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("report")
        d["train"], d["validation"] = str(self.train), str(self.validation)
        return d


def write_split(
    path,
    out_dir,
    *,
    column_map: dict[str, str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 42,
    validation: str | None = None,
    val_max_rows: int | None = None,
) -> SplitResult:
    """Split `path` into `out_dir/train.jsonl` and `out_dir/validation.jsonl`.

    Args:
        path: the training data (any format `inspect_dataset` reads).
        out_dir: directory to write into (created if missing).
        column_map: canonical name -> the user's column.
        val_fraction: share of rows held out for validation (0 < f < 1).
        seed: the split's seed; the same data and seed always give the same files.
        validation: a separate validation file to use instead of splitting (leaked rows dropped).
        val_max_rows: at most this many validation rows (large datasets); None = `val_fraction` alone.

    Raises:
        UserError: bad input (see `inspect_dataset`), or a bad `val_fraction`.
        CheckFailed: the data has no usable rows.
    """
    if not 0 < val_fraction < 1:
        raise UserError(f"val_fraction must be between 0 and 1, got {val_fraction}", "use e.g. 0.2 for 80/20")
    report, (s, v) = _inspect(path, column_map=column_map, validation=validation)
    if not report.usable:
        first = report.warnings[0] if report.warnings else "no rows"
        raise CheckFailed(
            f"{path} has no usable rows to split: {first}",
            f"run `tunewise inspect {path}` to see every problem",
        )
    fmt = NORMALISED[s.format]
    dup_idx = {s.hashes.index[p] for p in s.dups.exact_pos}
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {out}: {e.strerror}", "choose a writable directory") from e
    result = SplitResult(
        out / TRAIN_FILE,
        out / VALIDATION_FILE,
        fmt,
        0,
        0,
        report.invalid_count,
        len(dup_idx),
        source_format=s.format,
        seed=seed,
        val_fraction=val_fraction,
        label_column=s.label_column,
        report=report,
    )
    if v is None:
        val_idx = _choose_validation(s, dup_idx, val_fraction, seed, val_max_rows)
        result.stratified = s.label_column is not None
        with atomic_file(result.train) as ft, atomic_file(result.validation) as fv:
            for rec, chk in checked_rows(s.source, column_map)[1]:
                if chk is None or chk.row is None or rec.index in dup_idx:
                    continue
                line = _line(chk)
                if rec.index in val_idx:
                    fv.write(line)
                    result.validation_rows += 1
                else:
                    ft.write(line)
                    result.train_rows += 1
        return result
    # A validation file was given: train on all of `path`, validate on what of `validation` is new.
    v_dups = find_duplicates(v.hashes)
    drop_v = {v.hashes.index[p] for p in v_dups.exact_pos}
    leaked = {v.hashes.index[vp] for vp, _ in find_leaks(s.hashes, v.hashes)} - drop_v
    result.dropped_leaked = len(leaked)
    drop_v |= leaked
    with atomic_file(result.train) as ft:
        for rec, chk in checked_rows(s.source, column_map)[1]:
            if chk is not None and chk.row is not None and rec.index not in dup_idx:
                ft.write(_line(chk))
                result.train_rows += 1
    with atomic_file(result.validation) as fv:
        for rec, chk in checked_rows(v.source, column_map)[1]:
            if chk is not None and chk.row is not None and rec.index not in drop_v:
                fv.write(_line(chk))
                result.validation_rows += 1
    return result


def _line(chk) -> str:
    """A split row: the normalised row, and the row's tests (code tasks) under `tests` when it has some."""
    row = chk.row if chk.tests is None else {**chk.row, "tests": chk.tests}
    return json.dumps(row, ensure_ascii=False) + "\n"


def _choose_validation(s, dup_idx: set[int], frac: float, seed: int, cap: int | None = None) -> set[int]:
    """Record indices for validation: per label, a seeded sample; sizes by largest remainder."""
    idx = s.hashes.index
    kept = [p for p in range(len(idx)) if idx[p] not in dup_idx]
    n = len(kept)
    n_val = min(max(round(n * frac), 1), n - 1) if n >= 2 else 0
    if cap:
        n_val = min(n_val, cap)
    strata: dict[int, list[int]] = {}
    for p in kept:
        strata.setdefault(s.labels[p] if s.label_column is not None else -1, []).append(p)
    keys = sorted(strata)
    quota = {k: len(strata[k]) * n_val / n for k in keys} if n else {}
    take = {k: math.floor(q) for k, q in quota.items()}
    short = n_val - sum(take.values())
    for k in sorted(keys, key=lambda k: (-(quota[k] - take[k]), keys.index(k)))[:short]:
        take[k] += 1
    rng = random.Random(seed)
    chosen: set[int] = set()
    for k in keys:
        members = strata[k][:]
        rng.shuffle(members)
        chosen.update(members[: take[k]])
    # Near-duplicates follow the row they repeat, so no near-copy straddles the split.
    for p, q in zip(s.dups.near_pos, s.dups.near_of, strict=True):
        if idx[p] not in dup_idx:
            (chosen.add if q in chosen else chosen.discard)(p)
    return {idx[p] for p in chosen}
