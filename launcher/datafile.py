"""Read a run's JSONL split into a `datasets.Dataset` with every value as JSON wrote it.

`load_dataset("json", ...)` lets pyarrow infer column types, and pyarrow reads a string such as
"2024-07-20" as a timestamp: an answer the model should learn to write becomes a datetime object, which
the chat template then renders as "<datetime>" (measured on the dates-in-words task: training loss fell
to 0.0002 on that constant while the model learnt nothing of the task). Parsing each line with `json` and
building the dataset from Python objects keeps strings strings.

A row's `tests` (code tasks: what `tunewise eval` runs on the model's answer) are not training data: they
are dropped here, so the trainer sees the same columns with or without them.
"""

from __future__ import annotations

import json
from pathlib import Path

from advisor.data.formats import TEST_COLUMNS
from advisor.errors import UserError


def jsonl_dataset(path: Path):
    from datasets import Dataset

    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError:
                    raise UserError(
                        f"{path}, line {n}: not valid JSON",
                        "regenerate the split with `tunewise recommend --out`",
                    ) from None
                if isinstance(row, dict):
                    for col in TEST_COLUMNS:
                        row.pop(col, None)
                rows.append(row)
    return Dataset.from_list(rows)
