"""The held-out examples an evaluation runs on, and the few-shot prompt the guide would have you try first.

Rows come from the run's split (`data/validation.jsonl`: never trained on) in the formats the split writes:
`messages`, `prompt`/`completion` (strings or message lists), or preference rows (`chosen` is the reference).
Each becomes a prompt (the conversation up to the last assistant turn) and a reference (that turn), with the
row's tests for code tasks (`tests`, or MBPP's `test_list`: a string of Python `assert` statements or a list of
them) when it has some.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from advisor.data.formats import TEST_COLUMNS
from advisor.errors import UserError


@dataclass
class Example:
    prompt: list[dict]  # chat messages, ending with the user's turn
    reference: str
    tests: list[str] | None = None  # Python statements that pass on a correct answer (code tasks)


def row_tests(row: dict, where: str) -> list[str] | None:
    """A row's tests as a list of Python snippets; None when it has none (absent, null, empty).

    Raises:
        UserError: tests that are neither a string nor a list of strings, naming `where` (file and line).
    """
    col = next((c for c in TEST_COLUMNS if c in row and row[c] is not None), None)
    if col is None:
        return None
    value = row[col]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        shown = json.dumps(value, ensure_ascii=False)
        raise UserError(
            f"{where}: `{col}` is {shown[:80]}, not a string or a list of strings",
            f"give each row's `{col}` as Python assert statements, a string or a list of them, e.g. "
            '["assert add(1, 2) == 3"], and write the split again with `tunewise recommend --out`',
        )
    value = [t for t in value if t.strip()]
    return value or None


def _as_messages(value, role: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list) and all(isinstance(m, dict) and "content" in m for m in value):
        return [{"role": m.get("role", role), "content": str(m["content"])} for m in value]
    raise ValueError("neither a string nor a list of messages")


def to_example(row: dict) -> Example | None:
    """A split row as (prompt, reference), or None when it holds no reference answer (plain text)."""
    if "messages" in row:
        msgs = _as_messages(row["messages"], "user")
        last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
        if last is None or last == 0:
            return None
        return Example(msgs[:last], msgs[last]["content"])
    answer = row.get("completion", row.get("chosen"))
    if answer is None or row.get("prompt") is None:
        return None
    reply = _as_messages(answer, "assistant")
    return Example(_as_messages(row["prompt"], "user"), reply[-1]["content"])


def read_examples(path: Path, what: str) -> list[Example]:
    """Every row of a JSONL split that has a reference answer.

    Raises:
        UserError: the file is missing, unreadable, or no row has a reference answer.
    """
    if not path.is_file():
        raise UserError(
            f"the run has no {what} split ({path} is missing)",
            "recreate the run with `tunewise recommend --out RUN_DIR` and a dataset, so a held-out "
            "split is written",
        )
    out, bad = [], 0
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(
            f"cannot read {path}: {e}", "regenerate the split with `tunewise recommend --out`"
        ) from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            ex = to_example(row)
        except (ValueError, TypeError, AttributeError):
            ex = None
        if ex is None:
            bad += 1
        else:
            ex.tests = row_tests(row, f"{path}, line {n}")
            out.append(ex)
    if not out:
        raise UserError(
            f"no row of {path} has a reference answer to compare with ({bad} rows of plain text or "
            "other shapes)",
            "evaluation needs prompt/answer rows (messages, prompt+completion or "
            "preference data); plain-text data has no reference, so measure it by perplexity elsewhere",
        )
    return out


def cap(examples: list[Example], n: int, seed: int, *, stratify: bool) -> list[Example]:
    """At most `n` examples, deterministic for a seed. Stratified by reference (the label) for
    classification: each label keeps its share, rounded, with at least one row per label."""
    if len(examples) <= n:
        return list(examples)
    rng = random.Random(seed)
    if not stratify:
        return [examples[i] for i in sorted(rng.sample(range(len(examples)), n))]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        groups[ex.reference.strip()].append(i)
    keep: list[int] = []
    for label in sorted(groups):
        idx = groups[label]
        take = max(1, round(n * len(idx) / len(examples)))
        keep += rng.sample(idx, min(take, len(idx)))
    rng.shuffle(keep)
    return [examples[i] for i in sorted(keep[:n])]


def pick_shots(train: list[Example], k: int, seed: int) -> list[Example]:
    """k training examples for the few-shot prompt (one per label first for classification-like data)."""
    if k <= 0 or not train:
        return []
    rng = random.Random(seed + 1)
    order = rng.sample(range(len(train)), len(train))
    seen, first, rest = set(), [], []
    for i in order:
        (rest if train[i].reference.strip() in seen else first).append(i)
        seen.add(train[i].reference.strip())
    return [train[i] for i in (first + rest)[:k]]


def few_shot_messages(example: Example, shots: list[Example]) -> list[dict]:
    """The shots as earlier user/assistant turns, then the question: plain in-context examples in the
    model's own chat format, the first prompt to try ("When to Fine-Tune Versus Alternative Approaches")."""
    msgs: list[dict] = []
    system = [m for m in example.prompt if m["role"] == "system"]
    msgs += system
    for s in shots:
        msgs += [m for m in s.prompt if m["role"] != "system"] + [
            {"role": "assistant", "content": s.reference}
        ]
    return msgs + [m for m in example.prompt if m["role"] != "system"]
