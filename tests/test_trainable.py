"""Rows that keep no trainable token at max_length: the planner counts them (advisor/seqlen.py) and the job
leaves them out (launcher/trainable.py), measured the same way, with real tokenizers and a real TRL run."""

from __future__ import annotations

import json

import pytest
from launchkit import make_run, tiny_base

from advisor.data import inspect_dataset
from advisor.errors import UserError
from launcher import train
from launcher.trainable import drop_untrainable, prompt_lengths

DEMO_TOKENIZER = "examples/demo/tokenizer"
LONG = " ".join(["The supplier shall deliver the goods within thirty days of the order."] * 30)


def _rows(n_long: int, n_short: int, chat: bool = False) -> list[dict]:
    rows = []
    for i in range(n_long + n_short):
        prompt = f"Document {i}:\n{LONG}\nQuestion: when?" if i < n_long else f"Question {i}: when?"
        answer = " Within thirty days."
        if chat:
            rows.append(
                {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}
            )
        else:
            rows.append({"prompt": prompt, "completion": answer})
    return rows


@pytest.fixture(scope="module")
def demo_tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(DEMO_TOKENIZER, local_files_only=True)


@pytest.mark.parametrize("chat", [False, True])
def test_the_job_measures_prompts_as_the_planner_does(tmp_path, smollm2_dir, chat):
    """The job's count of rows left out equals the inspector's zero-trainable count (SmolLM2's tokenizer)."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(smollm2_dir), local_files_only=True)
    rows = _rows(3, 5, chat=chat)
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    report = inspect_dataset(str(path), tokenizer=tok, max_length=256)
    ds = Dataset.from_list(rows)
    assert prompt_lengths(tok, ds) == report.row_prompt_tokens
    kept, dropped = drop_untrainable(tok, ds, 256)
    assert dropped == report.zero_trainable_rows == 3 and len(kept) == 5
    first = [r["messages"][0]["content"] if chat else r["prompt"] for r in kept]
    assert not any(p.startswith("Document") for p in first)


def test_plain_text_loses_nothing_and_all_gone_is_an_error(demo_tok, capsys):
    from datasets import Dataset

    text = Dataset.from_list([{"text": LONG}, {"text": "short"}])
    assert drop_untrainable(demo_tok, text, 16) == (text, 0)
    long_only = Dataset.from_list(_rows(2, 0))
    with pytest.raises(UserError, match="no row keeps a token to train on"):
        drop_untrainable(demo_tok, long_only, 64)
    assert drop_untrainable(demo_tok, long_only, 64, what="validation", required=False) == (None, 2)
    assert "no validation loss" in capsys.readouterr().out
    assert drop_untrainable(demo_tok, long_only, 64, smoke=True) == (long_only, 0)  # the smoke still runs
    assert "kept so the pipeline runs" in capsys.readouterr().out


def test_a_real_run_leaves_the_untrainable_rows_out(tmp_path, capsys):
    base = tiny_base(tmp_path / "tiny-llama")
    rows = [json.dumps(r) for r in _rows(4, 12)]  # make_run: the last 4 (short) rows are the validation split
    rd = make_run(tmp_path, base, "lora", rows=rows, max_length=128, packing=True)
    assert train.main([str(rd)]) == 0
    out = capsys.readouterr().out
    assert "4 of 12 training rows keep no trainable token at max_length 128" in out
    summary = json.loads((rd / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rows_left_out"] == 4
