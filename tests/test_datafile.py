"""The job's split reader keeps strings strings (pyarrow's JSON inference reads ISO dates as timestamps)."""

import json

import pytest

from advisor.errors import UserError
from advisor.plan import DataSpec, TrainingPlan
from launcher.datafile import jsonl_dataset
from launcher.train import load_data


def test_iso_dates_times_and_numbers_in_strings_stay_strings(tmp_path):
    rows = [
        {"prompt": [{"role": "user", "content": "d?"}], "completion": [{"role": "assistant", "content": v}]}
        for v in ("2024-07-20", "1999-01-02T10:00:00", "12:30", "007")
    ]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    plan = TrainingPlan(model="m", method="full", stage="sft", data=DataSpec(train="data/train.jsonl"))
    train, val = load_data(tmp_path, plan, "sft")
    assert val is None
    assert [r["completion"][0]["content"] for r in train] == [
        "2024-07-20",
        "1999-01-02T10:00:00",
        "12:30",
        "007",
    ]


def test_a_broken_line_is_a_user_error_naming_it(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"text": "a"}\n\n{"text": \n', encoding="utf-8")
    with pytest.raises(UserError, match="line 3"):
        jsonl_dataset(p)


def test_a_rows_tests_are_not_training_data(tmp_path):
    # Code tasks keep `tests` in the split for `tunewise eval`; the trainer sees the columns it saw without them.
    rows = [
        {"prompt": "add", "completion": "def add(a, b): return a + b", "tests": ["assert add(1, 2) == 3"]},
        {"prompt": "sub", "completion": "def sub(a, b): return a - b", "test_list": "assert sub(2, 1) == 1"},
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ds = jsonl_dataset(path)
    assert ds.column_names == ["prompt", "completion"] and ds[1]["completion"] == rows[1]["completion"]
