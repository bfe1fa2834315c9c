"""`inspect_dataset`: one streaming pass over the data, then duplicates, leakage and token statistics.

Memory stays bounded by design: rows are checked and forgotten; what is kept per row is 32 bytes of
hashes (see `dedup`), plus a fixed-size random sample of rows when a tokenizer is given.
"""

from __future__ import annotations

import itertools
import random
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field

from advisor.data import tokens
from advisor.data.dedup import Duplicates, HashLog, find_duplicates, find_leaks
from advisor.data.formats import (
    NORMALISED,
    Checked,
    apply_column_map,
    check_column_map,
    check_row,
    detect_format,
)
from advisor.data.reading import Record, Source, resolve_source
from advisor.data.report import MAX_INVALID, DataReport, FindingLog, summarise
from advisor.errors import UserError

DETECT_SAMPLE = 1000  # rows looked at to decide the format
DETECT_MAX_SCAN = 100_000  # rows read at most while looking for one that parses
MAX_LABELS = 50  # a short answer with at most this many values is treated as a class label
MAX_LABEL_CHARS = 40


def checked_rows(
    source: Source, column_map: dict[str, str] | None, max_rows: int | None = None
) -> tuple[str | None, Iterator[tuple[Record, Checked | None]]]:
    """The detected format and an iterator of (record, check); check is None for unparsable records."""
    check_column_map(column_map)
    records = source.records()
    if max_rows is not None:
        records = itertools.islice(records, max_rows)
    head: list[Record] = []
    sample: list[dict] = []
    # Look at the first rows that parse; past a run of broken ones if need be (bounded).
    for rec in records:
        head.append(rec)
        if rec.error is None and isinstance(rec.value, dict):
            sample.append(apply_column_map(rec.value, column_map))
        if len(head) >= DETECT_SAMPLE and (sample or len(head) >= DETECT_MAX_SCAN):
            break
    fmt = detect_format(sample, column_map) if sample else None

    def gen():
        for rec in itertools.chain(head, records):
            if rec.error is not None:
                yield rec, None
            elif fmt is None:  # no row is an object: each one says so
                yield rec, check_row(rec.value, "text")
            else:
                value = apply_column_map(rec.value, column_map) if isinstance(rec.value, dict) else rec.value
                yield rec, check_row(value, fmt)

    return fmt, gen()


@dataclass
class Scan:
    """What one pass over a file leaves behind (shared by inspect and split)."""

    source: Source
    format: str | None
    rows: int = 0
    hashes: HashLog = field(default_factory=HashLog)
    labels: array = field(default_factory=lambda: array("i"))  # label id per valid row; -1 = none
    label_names: dict[str, int] = field(default_factory=dict)
    label_column: str | None = None
    log: FindingLog = field(default_factory=FindingLog)
    invalid: list[dict] = field(default_factory=list)
    invalid_count: int = 0
    encoding_errors: int = 0
    sample: list[tuple[int, dict]] = field(default_factory=list)  # (line, normalised row) for tokens
    dups: Duplicates | None = None


def scan(
    path: str, column_map: dict[str, str] | None, max_rows: int | None, *, sample_size: int = 0, seed: int = 0
) -> Scan:
    """One streaming pass: check every row, hash the valid ones, keep a reservoir sample of them."""
    source = resolve_source(path)
    fmt, rows = checked_rows(source, column_map, max_rows)
    s = Scan(source, fmt)
    rng = random.Random(seed)
    explicit: str | None = None
    targets: dict[str, int] = {}
    target_ids = array("i")  # per valid row while answers still look like class labels
    targets_ok = True
    seen_valid = 0
    for rec, chk in rows:
        s.rows += 1
        if chk is None or chk.row is None:
            kind, reason = (rec.kind, rec.error) if chk is None else chk.problems[0]
            if kind == "not-utf8":
                s.encoding_errors += 1
            s.invalid_count += 1
            if len(s.invalid) < MAX_INVALID:
                s.invalid.append({"line": rec.line, "reason": reason})
            s.log.add(kind, rec.line, reason)
            continue
        for kind, msg in chk.notes:
            s.log.add(kind, rec.line, msg)
        s.hashes.add(rec.index, rec.line, chk.row)
        # Labels: an explicit label column wins; otherwise short answers with few values are labels.
        if chk.label is not None:
            explicit = explicit or _label_column(rec.value, column_map)
            s.labels.append(s.label_names.setdefault(chk.label, len(s.label_names)))
        else:
            s.labels.append(-1)
            if targets_ok:
                t = chk.target
                if t is None or len(t) > MAX_LABEL_CHARS or (t not in targets and len(targets) >= MAX_LABELS):
                    targets_ok = False
                else:
                    target_ids.append(targets.setdefault(t, len(targets)))
        if sample_size:
            seen_valid += 1
            if len(s.sample) < sample_size:
                s.sample.append((rec.line, chk.row))
            else:
                j = rng.randrange(seen_valid)
                if j < sample_size:
                    s.sample[j] = (rec.line, chk.row)
    valid = len(s.hashes)
    if explicit and -1 not in s.labels:
        s.label_column = explicit
    elif targets_ok and len(target_ids) == valid and 2 <= len(targets) <= valid // 2:
        s.label_column = {"alpaca": "output", "prompt-completion": "completion"}.get(fmt or "", "answer")
        s.label_names = targets
        s.labels = target_ids
    else:
        s.label_column, s.label_names = None, {}
    return s


def _label_column(value, column_map) -> str | None:
    from advisor.data.formats import LABEL_COLUMNS

    for col in LABEL_COLUMNS:
        if isinstance(value, dict) and col in value:
            return col
    return (column_map or {}).get("label")


def inspect_dataset(
    path: str,
    *,
    tokenizer=None,
    max_length: int | None = None,
    column_map: dict[str, str] | None = None,
    max_rows: int | None = None,
    validation: str | None = None,
) -> DataReport:
    """Inspect a dataset file before any GPU time is spent.

    Args:
        path: JSONL, JSON array, CSV, Parquet, a `save_to_disk` directory, or a hub id (online only).
        tokenizer: a transformers tokenizer, a local path / cached name to load one from, or None.
        max_length: the training sequence length to check truncation against (default: the
            recommended one).
        column_map: canonical name -> the user's column, e.g. {"prompt": "question"}.
        max_rows: read at most this many rows.
        validation: a separate validation file: checked too, and for leakage from training.

    Raises:
        UserError: missing/unreadable file, not UTF-8, unknown format, bad column map or tokenizer.
    """
    report, _ = _inspect(
        path,
        tokenizer=tokenizer,
        max_length=max_length,
        column_map=column_map,
        max_rows=max_rows,
        validation=validation,
    )
    return report


def _inspect(
    path,
    *,
    tokenizer=None,
    max_length=None,
    column_map=None,
    max_rows=None,
    validation=None,
    sample_size: int | None = None,
) -> tuple[DataReport, tuple[Scan, Scan | None]]:
    if max_length is not None and max_length <= 0:
        raise UserError(
            f"max_length must be a positive number of tokens, got {max_length}", "pass e.g. --max-length 1024"
        )
    tok = tokens.load_tokenizer(tokenizer)
    size = (sample_size or tokens.SAMPLE_ROWS) if tok is not None else 0
    s = scan(path, column_map, max_rows, sample_size=size)
    _fail_on_encoding(s, path)
    r = DataReport(
        path=str(path),
        format=s.format,
        rows=s.rows,
        valid=len(s.hashes),
        invalid=s.invalid,
        invalid_count=s.invalid_count,
        normalized_format=NORMALISED.get(s.format or ""),
        unit=s.source.unit,
        label_column=s.label_column,
        labels=len(s.label_names),
    )
    dups = s.dups = find_duplicates(s.hashes)
    lines = s.hashes.line
    for p, q in zip(dups.exact_pos, dups.exact_of, strict=True):
        s.log.add("duplicate", lines[p], f"repeats {r.unit} {lines[q]} exactly")
    for p, q in zip(dups.near_pos, dups.near_of, strict=True):
        s.log.add(
            "near-duplicate",
            lines[p],
            f"nearly repeats {r.unit} {lines[q]} (after normalising case, punctuation and spaces)",
        )
    r.duplicates, r.near_duplicates = len(dups.exact_pos), len(dups.near_pos)
    if s.format == "preference":
        r.preference_rows = r.valid - r.duplicates
    vscan = None
    if validation is not None:
        vscan = _validation(r, s, validation, column_map)
    if tok is not None and s.sample:
        _tokens(r, s, tok, max_length)
    # Rows whose prompt fills max_length train on nothing (the loss is on completions only).
    r.usable = r.usable_rows > 0 and (r.zero_trainable_rows or 0) < r.usable_rows
    r.findings = sorted(s.log.kept, key=lambda f: (f.line, f.kind))
    r.finding_counts = dict(s.log.counts)
    r.warnings = summarise(r)
    return r, (s, vscan)


def _fail_on_encoding(s: Scan, path) -> None:
    if s.encoding_errors and s.encoding_errors == s.invalid_count == s.rows:
        raise UserError(
            f"{path} is not UTF-8 text: no row could be decoded",
            "re-encode it as UTF-8, e.g. `iconv -f latin1 -t utf-8 in > out`",
        )


def _validation(r: DataReport, s: Scan, validation: str, column_map) -> Scan:
    v = scan(validation, column_map, None)
    _fail_on_encoding(v, validation)
    if v.format and s.format and NORMALISED[v.format] != NORMALISED[s.format]:
        raise UserError(
            f"the validation file is {v.format} but the training file is {s.format}",
            "give both files the same format",
        )
    r.validation_path, r.validation_rows, r.validation_valid = str(validation), v.rows, len(v.hashes)
    for f in v.log.kept:
        s.log.add(f"validation-{f.kind}", f.line, f"(validation file) {f.message}")
    leaks = find_leaks(s.hashes, v.hashes)
    r.leaked_rows = len(leaks)
    for vp, tp in leaks:
        s.log.add(
            "leakage",
            v.hashes.line[vp],
            f"validation {v.source.unit} {v.hashes.line[vp]} repeats training {r.unit} {s.hashes.line[tp]}",
        )
    return v


def _tokens(r: DataReport, s: Scan, tok, max_length: int | None) -> None:
    fmt = NORMALISED[s.format]
    res = tokens.measure(s.sample, fmt, tok)
    r.tokenizer = getattr(tok, "name_or_path", None) or type(tok).__name__
    for kind, msg in res.notes:
        s.log.add(kind, 0, msg)
    for line, msg in res.errors:
        s.log.add("chat-template", line, msg)
    if not res.lengths:
        return
    r.token_stats = tokens.stats(res.lengths)
    r.token_histogram = tokens.histogram(res.lengths)
    model_max = getattr(tok, "model_max_length", None)
    r.recommended_max_length, r.max_length_reason = tokens.recommend_max_length(
        r.token_stats, model_max if isinstance(model_max, int) and model_max < 10**7 else None
    )
    limit = max_length or r.recommended_max_length
    r.max_length = limit
    r.row_tokens, r.row_prompt_tokens = list(res.lengths), list(res.prompt_lengths)
    for n, p, line in zip(res.lengths, res.prompt_lengths, res.lines, strict=True):
        if p >= limit:
            s.log.add(
                "zero-trainable",
                line,
                f"the prompt alone is {p:,} tokens, at least max_length {limit:,}: "
                "no trainable token is left",
            )
        elif n > limit:
            s.log.add("truncated", line, f"{n:,} tokens, longer than max_length {limit:,}")
    sampled = len(s.sample) < r.valid
    r.token_sample = len(s.sample) if sampled else None
    cut = r.cut_at(limit)
    r.truncated_rows, r.truncated_tokens, r.zero_trainable_rows = (
        cut.truncated,
        cut.tokens_lost,
        cut.zero_trainable,
    )
