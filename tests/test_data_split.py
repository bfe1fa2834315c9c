"""The train/validation split: deterministic, stratified, normalised for TRL, atomic, leak-free."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from advisor.data import write_split
from advisor.errors import CheckFailed, UserError


def write_jsonl(path, rows):
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return str(path)


def read_jsonl(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_split_is_80_20_deterministic_and_seed_dependent(tmp_path):
    rows = [{"prompt": f"Question number {i}?", "completion": f"Answer {i * 7}."} for i in range(100)]
    src = write_jsonl(tmp_path / "d.jsonl", rows)
    a = write_split(src, tmp_path / "a")
    b = write_split(src, tmp_path / "b")
    c = write_split(src, tmp_path / "c", seed=7)
    assert (a.train_rows, a.validation_rows, a.format) == (80, 20, "prompt-completion")
    assert (
        a.train.read_bytes() == b.train.read_bytes()
        and a.validation.read_bytes() == b.validation.read_bytes()
    )
    assert a.validation.read_bytes() != c.validation.read_bytes()
    train, val = read_jsonl(a.train), read_jsonl(a.validation)
    assert sorted(map(json.dumps, train + val)) == sorted(map(json.dumps, rows))  # nothing lost or added
    assert not {json.dumps(r) for r in train} & {json.dumps(r) for r in val}
    assert not a.stratified
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "train.jsonl",
        "validation.jsonl",
    ]  # no temp left


def test_stratified_split_keeps_label_proportions(tmp_path):
    labels = ["billing"] * 60 + ["outage"] * 30 + ["login"] * 10
    rows = [
        {"text": f"ticket {i}: something about {lab} happened", "label": lab} for i, lab in enumerate(labels)
    ]
    res = write_split(write_jsonl(tmp_path / "d.jsonl", rows), tmp_path / "out")
    assert res.stratified and res.label_column == "label"
    val_text = {r["text"] for r in read_jsonl(res.validation)}
    counts = Counter(r["label"] for r in rows if r["text"] in val_text)
    assert counts == {"billing": 12, "outage": 6, "login": 2}
    assert all(set(r) == {"text"} for r in read_jsonl(res.train))  # only TRL's column is written


def test_formats_are_normalised_and_bad_rows_dropped(tmp_path):
    rows = [
        {"instruction": f"Translate {i}", "input": f"word{i}", "output": f"mot{i}", "system": "Be brief."}
        for i in range(10)
    ]
    rows += [rows[0], "{broken", {"instruction": "x", "output": ""}]
    res = write_split(write_jsonl(tmp_path / "a.jsonl", rows), tmp_path / "out")
    assert (res.format, res.source_format) == ("messages", "alpaca")
    assert (res.train_rows + res.validation_rows, res.dropped_invalid, res.dropped_duplicates) == (10, 2, 1)
    first = read_jsonl(res.train)[0]["messages"]
    assert [m["role"] for m in first] == ["system", "user", "assistant"]
    assert first[1]["content"].startswith("Translate ") and "\n\nword" in first[1]["content"]

    sg = [
        {
            "conversations": [
                {"from": "system", "value": "s"},
                {"from": "human", "value": f"hi {i}"},
                {"from": "gpt", "value": f"hello {i}"},
            ]
        }
        for i in range(5)
    ]
    res = write_split(write_jsonl(tmp_path / "s.jsonl", sg), tmp_path / "sg")
    msgs = read_jsonl(res.train)[0]["messages"]
    assert res.format == "messages" and [m["role"] for m in msgs] == ["system", "user", "assistant"]

    pref = [
        {
            "chosen": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "good"}],
            "rejected": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "bad"}],
        }
        for i in range(5)
    ]
    res = write_split(write_jsonl(tmp_path / "p.jsonl", pref), tmp_path / "pref")
    row = read_jsonl(res.train)[0]
    assert res.format == "preference" and set(row) == {"prompt", "chosen", "rejected"}
    assert [m["role"] for m in row["prompt"]] == ["user"] and row["chosen"][0]["content"] == "good"


def test_near_duplicates_land_on_the_same_side(tmp_path):
    rows = []
    for i in range(40):
        rows.append({"text": f"Case {i}: the bucket in region {i} is slow."})
        rows.append({"text": f"case {i} -- THE BUCKET IN REGION {i} IS SLOW!"})
    res = write_split(write_jsonl(tmp_path / "n.jsonl", rows), tmp_path / "out")
    assert res.report.near_duplicates == 40
    val = {r["text"].lower().split(":")[0].split(" --")[0] for r in read_jsonl(res.validation)}
    train = {r["text"].lower().split(":")[0].split(" --")[0] for r in read_jsonl(res.train)}
    assert val and train and not val & train


def test_given_validation_file_drops_leaked_rows(tmp_path):
    train = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(20)]
    val = [
        {"prompt": "p3", "completion": "c3"},
        {"prompt": "P5!", "completion": "C5"},
        {"prompt": "new", "completion": "row"},
        {"prompt": "new", "completion": "row"},
    ]
    res = write_split(
        write_jsonl(tmp_path / "t.jsonl", train),
        tmp_path / "out",
        validation=write_jsonl(tmp_path / "v.jsonl", val),
    )
    assert (res.train_rows, res.validation_rows, res.dropped_leaked) == (20, 1, 2)
    assert read_jsonl(res.validation) == [{"prompt": "new", "completion": "row"}]
    assert res.report.leaked_rows == 2
    leaks = [f for f in res.report.findings if f.kind == "leakage"]
    assert [f.line for f in leaks] == [1, 2] and "training line 4" in leaks[0].message


def test_unusable_data_and_bad_arguments(tmp_path):
    src = write_jsonl(tmp_path / "bad.jsonl", ["{nope", {"text": ""}])
    with pytest.raises(CheckFailed, match="no usable rows"):
        write_split(src, tmp_path / "out")
    assert not (tmp_path / "out" / "train.jsonl").exists()
    good = write_jsonl(tmp_path / "good.jsonl", [{"text": "a"}, {"text": "b"}])
    with pytest.raises(UserError, match="val_fraction"):
        write_split(good, tmp_path / "out", val_fraction=1.0)
    with pytest.raises(UserError, match="cannot create"):
        write_split(good, tmp_path / "good.jsonl" / "sub")  # a file where a directory should be


def test_a_failed_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    import errno
    import os

    good = write_jsonl(tmp_path / "good.jsonl", [{"text": f"row {i}"} for i in range(10)])
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.jsonl").write_text("previous\n")

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(UserError, match="No space left"):
        write_split(good, out)
    assert sorted(p.name for p in out.iterdir()) == ["train.jsonl"]  # no temp file left behind
    assert (out / "train.jsonl").read_text() == "previous\n"  # the old file is untouched


def test_split_output_trains_with_trl(tmp_path):
    """The contract with the launcher: TRL's SFTTrainer takes the messages split as is."""
    import torch
    from datasets import load_dataset
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    rows = [
        {"instruction": f"Name a colour, take {i}", "input": "", "output": ["red", "blue", "green"][i % 3]}
        for i in range(30)
    ]
    res = write_split(write_jsonl(tmp_path / "a.jsonl", rows), tmp_path / "split")
    tok = AutoTokenizer.from_pretrained("examples/demo/tokenizer")
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
        )
    )
    data = load_dataset("json", data_files={"train": str(res.train), "validation": str(res.validation)})
    args = SFTConfig(
        output_dir=str(tmp_path / "run"),
        max_steps=2,
        per_device_train_batch_size=4,
        use_cpu=True,
        bf16=False,
        report_to=[],
        max_length=128,
        assistant_only_loss=True,
        save_strategy="no",
        logging_steps=1,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        processing_class=tok,
    )
    out = trainer.train()
    assert out.global_step == 2 and out.training_loss > 0
    assert trainer.evaluate()["eval_loss"] > 0


def test_a_rows_tests_survive_the_split_and_do_not_change_what_is_a_duplicate(tmp_path):
    # Code tasks: `tests` (or MBPP's `test_list`, or a column mapped onto `tests`) rides beside the normalised
    # row, for `tunewise eval` to run on the model's code; the job drops it (tests/test_datafile.py).
    rows = [
        {"instruction": f"Write f{i}(x) returning x + {i}.", "output": f"def f{i}(x):\n    return x + {i}\n"}
        | ({"test_list": [f"assert f{i}(1) == {1 + i}"]} if i % 2 else {"tests": f"assert f{i}(0) == {i}"})
        for i in range(20)
    ]
    rows.append(dict(rows[0], tests="assert True"))  # same prompt and answer, other tests: still a duplicate
    split = write_split(write_jsonl(tmp_path / "d.jsonl", rows), tmp_path / "out")
    assert split.format == "messages" and split.dropped_duplicates == 1
    out = read_jsonl(split.train) + read_jsonl(split.validation)
    assert len(out) == 20 and all(set(r) == {"messages", "tests"} for r in out)
    by_answer = {r["messages"][-1]["content"]: r["tests"] for r in out}
    assert by_answer["def f3(x):\n    return x + 3\n"] == ["assert f3(1) == 4"]
    assert by_answer["def f4(x):\n    return x + 4\n"] == "assert f4(0) == 4"
    mapped = [{"q": "Write g.", "a": "def g(): return 1", "checks": ["assert g() == 1"]}] + [
        {"q": f"Q{i}", "a": f"A{i}"} for i in range(4)
    ]
    split = write_split(
        write_jsonl(tmp_path / "m.jsonl", mapped),
        tmp_path / "m",
        column_map={"prompt": "q", "completion": "a", "tests": "checks"},
    )
    out = read_jsonl(split.train) + read_jsonl(split.validation)
    assert [r.get("tests") for r in out if r["prompt"] == "Write g."] == [["assert g() == 1"]]
    assert sum("tests" in r for r in out) == 1  # rows without tests get no column
