"""Reading every supported input, detecting the format, and finding problems with their line numbers."""

from __future__ import annotations

import csv
import json

import pytest

from advisor.data import inspect_dataset, parse_column_map
from advisor.errors import UserError


def write_jsonl(path, rows):
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def chat(q, a, system=None):
    msgs = [{"role": "system", "content": system}] if system else []
    return {"messages": msgs + [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


ROWS = {
    "alpaca": [
        {"instruction": f"Summarise item {i}", "input": "some text", "output": f"Summary {i}"}
        for i in range(5)
    ],
    "messages": [chat(f"Question {i}?", f"Answer {i}.") for i in range(5)],
    "sharegpt": [
        {"conversations": [{"from": "human", "value": f"Hi {i}"}, {"from": "gpt", "value": f"Hello {i}"}]}
        for i in range(5)
    ],
    "prompt-completion": [{"prompt": f"2+{i}=", "completion": str(2 + i)} for i in range(5)],
    "preference": [{"prompt": f"Say hi {i}", "chosen": f"Hi there {i}", "rejected": "no"} for i in range(5)],
    "text": [{"text": f"Document number {i} talks about clouds."} for i in range(5)],
}


@pytest.mark.parametrize("fmt", list(ROWS))
def test_each_format_is_detected_and_valid(tmp_path, fmt):
    r = inspect_dataset(str(write_jsonl(tmp_path / "d.jsonl", ROWS[fmt])))
    assert (r.format, r.rows, r.valid, r.invalid_count, r.duplicates) == (fmt, 5, 5, 0, 0)
    assert r.usable and r.usable_rows == 5
    assert r.preference_rows == (5 if fmt == "preference" else 0)
    assert r.normalized_format == {"alpaca": "messages", "sharegpt": "messages"}.get(fmt, fmt)


def test_json_array_csv_parquet_and_save_to_disk_read_the_same_rows(tmp_path):
    rows = ROWS["prompt-completion"] + [{"prompt": "line\nbreak", "completion": "ok"}]
    (tmp_path / "a.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    with open(tmp_path / "a.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["prompt", "completion"])
        w.writeheader()
        w.writerows(rows)
    from datasets import Dataset

    ds = Dataset.from_list(rows)
    ds.to_parquet(str(tmp_path / "a.parquet"))
    ds.save_to_disk(str(tmp_path / "saved"))
    for name in ("a.json", "a.csv", "a.parquet", "saved"):
        r = inspect_dataset(str(tmp_path / name))
        assert (r.format, r.rows, r.valid) == ("prompt-completion", 6, 6), name


def test_json_array_reports_the_line_of_each_bad_element(tmp_path):
    text = '[\n  {"text": "fine"},\n  {"text": ""},\n  {"txt": 3},\n  {"text": "also fine"}\n]\n'
    r = inspect_dataset(str(_write(tmp_path / "a.json", text)))
    assert r.rows == 4 and r.valid == 2
    assert [i["line"] for i in r.invalid] == [3, 4]


def test_broken_json_array_stops_with_a_finding(tmp_path):
    r = inspect_dataset(str(_write(tmp_path / "a.json", '[{"text": "a"},\n{"text": "b"},\n{"text": ]')))
    assert r.valid == 2 and r.invalid_count == 1
    assert r.invalid[0]["line"] == 3 and "malformed JSON" in r.invalid[0]["reason"]


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_problems_are_found_with_their_line_numbers(tmp_path):
    rows = [
        chat("a", "b"),  # 1 ok
        "{not json",  # 2 malformed
        {"messages": "hello"},  # 3 wrong type
        {
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]
        },  # 4 empty asst
        {
            "messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "q"}]
        },  # 5 asst first
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "user", "content": "q2"},
                {"role": "assistant", "content": "a"},
            ]
        },  # 6 two user turns
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "system", "content": "s"},
                {"role": "assistant", "content": "a"},
            ]
        },  # 7 system not first
        {"messages": [{"role": "user", "content": "only a question"}]},  # 8 no assistant
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": 5}]},  # 9 wrong type
        chat("a", "b"),  # 10 exact duplicate of 1
        chat("A!", "B."),  # 11 near duplicate of 1
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"},
                {"role": "user", "content": "and?"},
            ]
        },  # 12 kept, trailing user turn
        [1, 2],  # 13 not an object
        {"msgs": []},  # 14 missing field
    ]
    r = inspect_dataset(str(write_jsonl(tmp_path / "d.jsonl", rows)))
    assert r.format == "messages" and r.rows == 14
    kinds = {(f.kind, f.line) for f in r.findings}
    expected = {
        ("malformed", 2),
        ("wrong-type", 3),
        ("empty-assistant", 4),
        ("role-order", 5),
        ("role-order", 6),
        ("role-order", 7),
        ("no-assistant", 8),
        ("wrong-type", 9),
        ("duplicate", 10),
        ("near-duplicate", 11),
        ("trailing-turn", 12),
        ("wrong-type", 13),
        ("missing-field", 14),
    }
    assert expected <= kinds
    assert [i["line"] for i in r.invalid] == [2, 3, 4, 5, 6, 7, 8, 9, 13, 14]
    assert (r.valid, r.invalid_count, r.duplicates, r.near_duplicates) == (4, 10, 1, 1)
    dup = next(f for f in r.findings if f.kind == "duplicate")
    assert "line 1" in dup.message
    assert any("two user turns" in f.message for f in r.findings if f.line == 6)
    assert any("10 of 14 rows are invalid" in w for w in r.warnings)


def test_preference_problems(tmp_path):
    rows = [
        {"prompt": "p", "chosen": "same", "rejected": "same"},
        {"prompt": "p", "chosen": "good", "rejected": ""},
        {"prompt": "p", "chosen": ["x"], "rejected": "y"},
        {
            "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
            "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}],
        },
        {"prompt": "p", "chosen": "good", "rejected": "bad"},
    ]
    r = inspect_dataset(str(write_jsonl(tmp_path / "p.jsonl", rows)))
    assert r.format == "preference"
    by_line = {f.line: f.kind for f in r.findings}
    assert (
        by_line[1] == "chosen-equals-rejected" and by_line[2] == "empty-field" and by_line[3] == "wrong-type"
    )
    assert r.valid == 2 and r.preference_rows == 2


def test_column_map_and_unknown_format(tmp_path):
    rows = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(4)]
    path = str(write_jsonl(tmp_path / "qa.jsonl", rows))
    with pytest.raises(UserError) as e:
        inspect_dataset(path)
    assert "answer, question" in e.value.message and "--column-map" in e.value.hint
    r = inspect_dataset(path, column_map=parse_column_map("prompt=question,completion=answer"))
    assert (r.format, r.valid) == ("prompt-completion", 4)
    with pytest.raises(UserError, match="does not have: completion=reply") as e:
        inspect_dataset(path, column_map={"prompt": "question", "completion": "reply"})
    assert e.value.hint == "the columns are: answer, question"  # the file's names, not 'prompt' for question
    with pytest.raises(UserError, match="unknown name 'question'"):
        parse_column_map("question=prompt")
    with pytest.raises(UserError, match="not NAME=COLUMN"):
        parse_column_map("prompt")


def test_bad_files(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="not found"):
        inspect_dataset(str(tmp_path / "nope.jsonl"))
    empty = inspect_dataset(str(_write(tmp_path / "empty.jsonl", "")))
    assert empty.rows == 0 and not empty.usable
    (tmp_path / "u16.jsonl").write_bytes('{"text": "hi"}\n'.encode("utf-16"))
    with pytest.raises(UserError, match="not UTF-8"):
        inspect_dataset(str(tmp_path / "u16.jsonl"))
    (tmp_path / "latin.jsonl").write_bytes('{"text": "café"}\n'.encode("latin-1") * 3)
    with pytest.raises(UserError, match="not UTF-8"):
        inspect_dataset(str(tmp_path / "latin.jsonl"))
    # One bad line among good ones is a finding, not a failure.
    (tmp_path / "mixed.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n{"text": "fine"}\n')
    r = inspect_dataset(str(tmp_path / "mixed.jsonl"))
    assert r.valid == 2 and r.invalid[0]["line"] == 2 and "UTF-8" in r.invalid[0]["reason"]
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(UserError, match="hub dataset id") as e:
        inspect_dataset("someone/some-dataset")
    assert "local file" in e.value.hint


def test_labels_are_found_for_stratification(tmp_path):
    rows = [{"text": f"review {i}", "label": ["pos", "neg", "neutral"][i % 3]} for i in range(30)]
    r = inspect_dataset(str(write_jsonl(tmp_path / "l.jsonl", rows)))
    assert (r.label_column, r.labels) == ("label", 3)
    rows = [{"prompt": f"Is {i} even?", "completion": "yes" if i % 2 == 0 else "no"} for i in range(20)]
    r = inspect_dataset(str(write_jsonl(tmp_path / "c.jsonl", rows)))
    assert (r.label_column, r.labels) == ("completion", 2)
    r = inspect_dataset(str(write_jsonl(tmp_path / "g.jsonl", ROWS["prompt-completion"])))
    assert r.label_column is None  # five different answers in five rows are not classes


def test_max_rows_and_counts_stay_exact_beyond_the_kept_findings(tmp_path):
    rows = ["{bad"] * 1500 + [{"text": "ok"}]
    r = inspect_dataset(str(write_jsonl(tmp_path / "b.jsonl", rows)))
    assert r.invalid_count == 1500 and len(r.invalid) == 1000 and r.finding_counts["malformed"] == 1500
    assert r.usable
    r = inspect_dataset(str(write_jsonl(tmp_path / "b.jsonl", rows)), max_rows=10)
    assert r.rows == 10 and not r.usable


def test_a_preference_row_in_a_messages_file_says_what_it_is_and_where_it_belongs(tmp_path):
    import json as _json

    from advisor.data import inspect_dataset

    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        for i in range(6)
    ] + [{"prompt": "p", "chosen": "good", "rejected": "bad"}]
    p = tmp_path / "mixed.jsonl"
    p.write_text("".join(_json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    r = inspect_dataset(str(p))
    (bad,) = r.invalid
    assert r.format == "messages" and bad["line"] == 7
    assert "preference pair" in bad["reason"] and "preference_dataset" in bad["reason"]
