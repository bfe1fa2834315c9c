"""What the pre-flight found: `Finding`, the capped `FindingLog`, and the `DataReport` it returns."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

MAX_INVALID = 1000  # rows kept in `DataReport.invalid`; the counts stay exact
MAX_PER_KIND = 200  # findings kept per kind; the counts stay exact

# Kinds whose rows are dropped from the split (the rest are kept and only reported).
INVALID_KINDS = (
    "malformed",
    "not-utf8",
    "wrong-type",
    "missing-field",
    "empty-field",
    "empty-assistant",
    "no-assistant",
    "role-order",
    "chosen-equals-rejected",
    "other-format",
)


@dataclass
class Finding:
    """One problem at one place. `line` is the file line (or row number for tables); 0 = the file."""

    kind: str
    line: int
    message: str


class FindingLog:
    """Collects findings with exact counts per kind but a bounded number kept per kind."""

    def __init__(self, per_kind: int = MAX_PER_KIND):
        self.per_kind = per_kind
        self.counts: Counter[str] = Counter()
        self.kept: list[Finding] = []

    def add(self, kind: str, line: int, message: str) -> None:
        self.counts[kind] += 1
        if self.counts[kind] <= self.per_kind:
            self.kept.append(Finding(kind, line, message))

    def first(self, kind: str) -> Finding | None:
        return next((f for f in self.kept if f.kind == kind), None)


@dataclass
class DataReport:
    """The result of `inspect_dataset`. `to_dict()` is the `tunewise inspect --format json` object."""

    path: str
    format: str | None  # detected: alpaca | messages | sharegpt | prompt-completion | preference | text
    rows: int = 0  # records read (broken ones included)
    valid: int = 0  # rows that pass every structural check
    invalid: list[dict] = field(default_factory=list)  # first MAX_INVALID {"line", "reason"}
    invalid_count: int = 0  # exact
    duplicates: int = 0  # valid rows that repeat an earlier row exactly
    near_duplicates: int = 0  # valid rows equal to an earlier one after normalisation (not exact)
    preference_rows: int = 0  # usable preference pairs
    label_column: str | None = None  # column to stratify the split on, when there is one
    labels: int = 0  # distinct label values
    normalized_format: str | None = None  # messages | prompt-completion | preference | text
    unit: str = "line"  # what `line` numbers count: file lines, or rows of a table
    token_stats: dict | None = None  # {"p50", "p95", "max", "mean"} in tokens
    token_histogram: list[dict] | None = None  # [{"lo", "hi", "count"}]
    token_sample: int | None = None  # rows tokenised, when fewer than all (then counts are estimates)
    tokenizer: str | None = None
    max_length: int | None = None  # the limit truncated/zero-trainable counts refer to
    truncated_rows: int | None = None
    truncated_tokens: int | None = None  # tokens past max_length over the truncated rows
    zero_trainable_rows: int | None = None
    recommended_max_length: int | None = None
    max_length_reason: str | None = None
    validation_path: str | None = None
    validation_rows: int | None = None
    validation_valid: int | None = None
    leaked_rows: int | None = None  # validation rows also in the training data (exact or near)
    findings: list[Finding] = field(default_factory=list)
    finding_counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    usable: bool = False
    # Per measured row (aligned): total tokens and tokens before the first trainable one. The planner measures
    # a sequence length's cut with them (`tokens.cut_at`); not part of the JSON (one entry per row).
    row_tokens: list[int] = field(default_factory=list, repr=False)
    row_prompt_tokens: list[int] = field(default_factory=list, repr=False)

    @property
    def usable_rows(self) -> int:
        """Rows the split keeps: valid and not an exact duplicate."""
        return self.valid - self.duplicates

    @property
    def trainable_rows(self) -> int:
        """Usable rows that keep a trainable token at `max_length` (the job leaves the others out)."""
        return max(0, self.usable_rows - (self.zero_trainable_rows or 0))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["row_tokens"], d["row_prompt_tokens"]
        d["usable_rows"] = self.usable_rows
        d["trainable_rows"] = self.trainable_rows
        return d

    def cut_at(self, max_length: int, *, completion_only: bool = True):
        """`tokens.LengthCut` of the measured rows at `max_length`, scaled to the valid rows when sampled; None
        when lengths were not measured."""
        from advisor.data.tokens import cut_at

        if not self.row_tokens:
            return None
        scale = self.valid / len(self.row_tokens) if self.token_sample else 1.0
        return cut_at(
            self.row_tokens, self.row_prompt_tokens, max_length, completion_only=completion_only, scale=scale
        )


def trained_mean_tokens(
    report: DataReport | None, max_length: int, completion_only: bool = True
) -> float | None:
    """Mean tokens per example the job trains at `max_length`: each measured row cut to it, the rows that keep
    no trainable token left out (as the job leaves them out); the inspector's mean when no per-row lengths
    were kept; None when lengths were not measured. Packing arithmetic (examples per row, rows per epoch)
    uses this, so a cut of long rows does not count their lost tokens as packed sequences."""
    if report is None:
        return None
    rows = [
        min(n, max_length)
        for n, p in zip(report.row_tokens, report.row_prompt_tokens, strict=True)
        if not (completion_only and p >= max_length)
    ]
    if rows:
        return sum(rows) / len(rows)
    stats = report.token_stats if isinstance(report.token_stats, dict) else {}
    return stats.get("mean") if not report.row_tokens else None


def summarise(r: DataReport) -> list[str]:
    """One-line warnings for the recommendation report, most serious first."""
    out: list[str] = []
    u = r.unit
    if r.rows == 0:
        return [f"{r.path} holds no rows"]
    if r.invalid_count:
        first = r.invalid[0] if r.invalid else None
        where = f" (first: {u} {first['line']}: {first['reason']})" if first else ""
        out.append(f"{r.invalid_count:,} of {r.rows:,} rows are invalid and are left out{where}")
    if r.duplicates:
        out.append(f"{r.duplicates:,} rows repeat an earlier row exactly and are left out of the split")
    if r.near_duplicates:
        out.append(
            f"{r.near_duplicates:,} rows nearly repeat an earlier row (same words after lowercasing "
            "and removing punctuation): review them"
        )
    if r.leaked_rows:
        out.append(
            f"{r.leaked_rows:,} validation rows also appear in the training data (leakage): "
            "they are left out of the validation split"
        )
    c = r.finding_counts
    if c.get("trailing-turn"):
        out.append(f"{c['trailing-turn']:,} conversations end with a turn nothing answers")
    if c.get("chat-template"):
        out.append(f"{c['chat-template']:,} rows fail the tokenizer's chat template")
    if c.get("no-generation-markers"):
        f = next((x for x in r.findings if x.kind == "no-generation-markers"), None)
        out.append(f.message if f else "the chat template has no {% generation %} markers")
    if c.get("missing-eos"):
        f = next((x for x in r.findings if x.kind == "missing-eos"), None)
        out.append(f.message if f else "end-of-sequence token missing")
    est = " (estimated from a sample)" if r.token_sample else ""
    if r.truncated_rows:
        pct = 100 * r.truncated_rows / max(r.valid, 1)
        lost = f", losing {r.truncated_tokens:,} tokens in all" if r.truncated_tokens else ""
        out.append(
            f"{r.truncated_rows:,} rows ({pct:.1f}%) are longer than max_length {r.max_length:,} "
            f"tokens and will be truncated{lost}{est}"
        )
    if r.zero_trainable_rows:
        out.append(
            f"{r.zero_trainable_rows:,} rows keep no trainable tokens at max_length {r.max_length:,} "
            f"(the prompt alone fills it){est}"
        )
    if r.token_sample:
        out.append(f"token statistics come from a random sample of {r.token_sample:,} of {r.valid:,} rows")
    if not r.usable:
        out.append("no usable rows: nothing to train on")
    return out
