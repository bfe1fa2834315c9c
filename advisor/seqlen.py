"""The training sequence length (`max_length`) and what it costs the data.

The length to train at comes, in this order, from: `max_length` in the answers; the data's measured lengths
(the longest measured row, rounded up, so nothing is cut); `tokens_per_example` in the answers (an estimate
where nothing can be measured); else the guide's starting length. It is never below the guide's 512 (short
rows are packed into the rest of a row) and never above the model's context. Memory then tries it first and
falls back through shorter lengths (`fit_lengths`), keeping the longest that fits.

Where the final length is below what the measured rows need, `account` states it in the plan: how many rows
are truncated, how many tokens they lose, and how many keep no trainable token; those are left out of the
training-row count (and the job drops them, launcher/trainable.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PRACTICAL = "Practical Tools and Getting Started"


@dataclass(frozen=True)
class LengthChoice:
    """The length to try first, before memory: its value, where it came from and why."""

    length: int
    source: str  # answers | measured | expected | default
    reason: str


def context_of(model: Any) -> int | None:
    """The model's context (max_position_embeddings), when its config or the catalog says."""
    ctx = getattr(model, "max_position_embeddings", None)
    return ctx if isinstance(ctx, int) and not isinstance(ctx, bool) and ctx > 0 else None


def _round_up(n: int) -> int:
    from advisor.data.tokens import round_up_length

    return round_up_length(n)


def choose(
    values: dict, th: dict, answers: Any = None, model: Any = None, unmeasured: str | None = None
) -> LengthChoice:
    """The starting `max_length` (see the module's docstring) and its reason; `unmeasured` says why the data's
    lengths are not measured (no dataset, no tokenizer), None when they are."""
    floor = int(th.get("max_length_min", 512))
    start = int(th.get("max_length_start", 1024))
    ctx = context_of(model)
    name = getattr(model, "name", None) or "the model"
    unknown = f"lengths unmeasured ({unmeasured})" if unmeasured else "lengths unmeasured"

    def capped(n: int, why: str) -> tuple[int, str]:
        if ctx and n > ctx:
            return ctx, f"{why}; capped at {name}'s context of {ctx:,} tokens"
        return n, why

    given = getattr(answers, "max_length", None)
    longest = values.get("data_max_tokens")
    if given:
        why = f"{given:,} tokens: `max_length` in the answers"
        if not longest:
            why += f"; {unknown}, so what it cuts from the data is not known"
        return LengthChoice(given, "answers", why)
    if longest:
        longest = int(longest)
        p95 = values.get("data_p95_tokens")
        n = max(floor, _round_up(longest))
        why = (
            f"covers the longest measured row ({longest:,} tokens"
            + (f"; p95 {int(p95):,}" if p95 else "")
            + f"), rounded up to {n:,}"
            + (f" and raised to the guide's {floor:,} (short rows are packed together)" if n == floor else "")
        )
        n, why = capped(n, why)
        return LengthChoice(n, "measured", f"{why} (measurement; {PRACTICAL})")
    expected = getattr(answers, "tokens_per_example", None)
    if expected:
        n = max(floor, _round_up(expected))
        why = (
            f"{unknown}: covers the {expected:,} tokens per example stated in the answers "
            f"(`tokens_per_example`, not measured), rounded up to {n:,}"
        )
        n, why = capped(n, why)
        return LengthChoice(n, "expected", f"{why} ({PRACTICAL})")
    n, why = capped(start, f"the guide's starting length {start:,}")
    return LengthChoice(
        n,
        "default",
        f"{unknown}: assumed {why} ({PRACTICAL}); longer rows would be truncated unseen: set "
        "`tokens_per_example` or `max_length` in the answers, or make the model's tokenizer available locally",
    )


def fit_lengths(start: int, floor: int) -> tuple[int, ...]:
    """Lengths memory tries, longest first: `start`, then each power of two below it down to `floor` (and
    `floor` itself), so the longest that fits is kept."""
    out = [start]
    p = 1 << (max(1, start - 1).bit_length() - 1)  # the largest power of two below start
    while p > floor:
        if p < start:
            out.append(p)
        p //= 2
    if floor < start:
        out.append(floor)
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class CutSummary:
    """The measured rows at the plan's final length (the dataset's and the preference file's together)."""

    max_length: int
    truncated: int
    tokens_lost: int
    zero_trainable: int
    estimated: bool
    longest: int


def summarise_cut(reports: list[Any], max_length: int, completion_only: bool) -> CutSummary | None:
    """The cut at `max_length` over every measured report; None when none was measured or nothing is cut."""
    cuts = []
    longest = 0
    for rep in reports:
        cut = rep.cut_at(max_length, completion_only=completion_only) if rep is not None else None
        if cut is not None:
            cuts.append(cut)
            longest = max(longest, max(rep.row_tokens))
    if not cuts or not any(c.truncated for c in cuts):
        return None
    return CutSummary(
        max_length,
        sum(c.truncated for c in cuts),
        sum(c.tokens_lost for c in cuts),
        sum(c.zero_trainable for c in cuts),
        any(c.estimated for c in cuts),
        longest,
    )


def cut_words(c: CutSummary) -> str:
    """One sentence of the cut's figures, for the plan's reason and the warning."""
    est = " (estimated from a sample of the rows)" if c.estimated else ""
    zero = (
        f"; {c.zero_trainable:,} of them keep no trainable token (the prompt alone fills {c.max_length:,}): they are "
        "not counted as training rows and the job leaves them out"
        if c.zero_trainable
        else "; every row keeps part of its answer"
    )
    return (
        f"at max_length {c.max_length:,}, {c.truncated:,} rows are longer (the longest {c.longest:,} tokens) "
        f"and are truncated, losing {c.tokens_lost:,} tokens in all{zero}{est}"
    )


def account(plan: Any, decision: Any, facts: Any, r: dict) -> None:
    """After memory has set the plan's final `max_length`: state what it cuts from the measured rows (in the
    `max_length` reason and a warning), and take the rows that keep no trainable token out of the training
    counts the schedule and the report use (`sft_examples`, `preference_pairs`, `examples`). Idempotent: the
    count left out is kept in `data_zero_trainable_rows` / `preference_zero_trainable_rows`."""
    v = facts.values
    completion_only = bool(plan.completion_only_loss)
    reports = [x for x in (facts.data, facts.preference_data) if x is not None]
    c = summarise_cut(reports, plan.max_length, completion_only)
    for rep, key in ((facts.data, "data"), (facts.preference_data, "preference")):
        cut = rep.cut_at(plan.max_length, completion_only=completion_only) if rep is not None else None
        zero = cut.zero_trainable if cut is not None else 0
        count = (
            "preference_pairs"
            if key == "preference" or getattr(rep, "format", None) == "preference"
            else "sft_examples"
        )
        prev = int(v.get(f"{key}_zero_trainable_rows", 0) or 0)
        if count in v and (zero or prev):
            v[count] = max(0.0, float(v[count]) + prev - zero)
        if zero or prev:
            v[f"{key}_zero_trainable_rows"] = float(zero)
    if "sft_examples" in v and "preference_pairs" in v:
        v["examples"] = v["sft_examples"] + v["preference_pairs"]
    if c is None:
        return
    words = cut_words(c)
    r["max_length"] = f"{r.get('max_length', plan.max_length)}; {words}"
    warning = f"Sequence length {c.max_length:,} cuts the data: {words}."
    if warning not in decision.warnings:
        decision.warnings.append(warning)
