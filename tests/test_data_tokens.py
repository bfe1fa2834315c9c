"""Token statistics with a real tokenizer (the bundled demo one): lengths, truncation, template checks."""

from __future__ import annotations

import json
import math

import pytest

from advisor import hubcache
from advisor.data import inspect_dataset, tokens
from advisor.errors import UserError

TOKENIZER = "examples/demo/tokenizer"


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TOKENIZER, local_files_only=True)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def chat(q, a):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def rows_of_lengths(n):
    # Answers of growing length so the distribution has a real spread.
    return [
        chat(f"Question {i} about my bucket?", " ".join(["The storage bucket is fine."] * (1 + i % 17)))
        for i in range(n)
    ]


def test_lengths_match_the_tokenizer_and_recommendation_covers_the_longest(tmp_path, tok):
    rows = rows_of_lengths(60)
    r = inspect_dataset(write_jsonl(tmp_path / "d.jsonl", rows), tokenizer=tok)
    expected = sorted(
        len(tok.apply_chat_template(x["messages"], tokenize=True, return_dict=True)["input_ids"])
        for x in rows
    )
    p95 = expected[math.ceil(0.95 * len(expected)) - 1]
    assert r.token_stats["max"] == expected[-1] and r.token_stats["p95"] == p95
    assert r.token_stats["p50"] == expected[math.ceil(0.5 * len(expected)) - 1]
    assert r.recommended_max_length == math.ceil(expected[-1] / 64) * 64
    assert r.max_length == r.recommended_max_length
    assert r.truncated_rows == 0 == sum(n > r.max_length for n in expected)
    assert sorted(r.row_tokens) == expected and "row_tokens" not in r.to_dict()
    assert sum(b["count"] for b in r.token_histogram) == 60
    assert r.token_sample is None and r.tokenizer


def test_truncation_and_zero_trainable_rows_at_a_given_max_length(tmp_path, tok):
    long_prompt = " ".join(["Please explain the quota policy for my account."] * 40)
    rows = [
        chat("short question?", "short answer."),
        chat(long_prompt, "ok."),
        chat("q?", " ".join(["A long answer about regions."] * 30)),
    ]
    r = inspect_dataset(write_jsonl(tmp_path / "d.jsonl", rows), tokenizer=TOKENIZER, max_length=64)
    assert r.max_length == 64 and r.truncated_rows == 2 and r.zero_trainable_rows == 1
    kinds = {(f.kind, f.line) for f in r.findings}
    assert ("zero-trainable", 2) in kinds and ("truncated", 3) in kinds
    assert any("no trainable tokens" in w for w in r.warnings)


def test_prompt_completion_counts_eos_and_prompt(tmp_path, tok):
    rows = [
        {"prompt": "Translate: cloud", "completion": " nuage"},
        {"prompt": "x " * 100, "completion": " y"},
    ]
    r = inspect_dataset(write_jsonl(tmp_path / "pc.jsonl", rows), tokenizer=tok, max_length=32)
    full = [len(tok(x["prompt"] + x["completion"])["input_ids"]) + 1 for x in rows]  # + EOS TRL appends
    assert r.token_stats["max"] == max(full)
    assert r.zero_trainable_rows == 1 and r.truncated_rows == 1


def test_template_errors_and_missing_eos_are_reported(tmp_path, tok):
    rows = [chat(f"q{i}", f"a{i}") for i in range(5)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    broken = tok.__class__.from_pretrained(TOKENIZER, local_files_only=True)
    broken.chat_template = (
        "{% for m in messages %}{% if m['content'] == 'q3' %}"
        "{{ raise_exception('bad turn') }}{% endif %}{{ m['content'] }}\n{% endfor %}"
    )
    r = inspect_dataset(path, tokenizer=broken)
    errs = [f for f in r.findings if f.kind == "chat-template"]
    assert [f.line for f in errs] == [4] and "bad turn" in errs[0].message
    eos = [f for f in r.findings if f.kind == "missing-eos"]  # this template never writes <|im_end|>
    assert eos and "<|im_end|>" in eos[0].message
    assert not [f for f in inspect_dataset(path, tokenizer=tok).findings if f.kind == "missing-eos"]
    broken.chat_template = None
    r = inspect_dataset(path, tokenizer=broken)
    assert any(f.kind == "chat-template" and "no chat template" in f.message for f in r.findings)


def test_big_files_are_sampled_and_say_so(tmp_path, tok, monkeypatch):
    monkeypatch.setattr(tokens, "SAMPLE_ROWS", 50)
    r = inspect_dataset(write_jsonl(tmp_path / "d.jsonl", rows_of_lengths(400)), tokenizer=tok, max_length=48)
    assert r.token_sample == 50 and r.valid == 400
    assert any("sample of 50 of 400" in w for w in r.warnings)
    assert 0 < r.truncated_rows <= 400


def test_recommendation_covers_the_longest_row_within_the_model():
    assert tokens.recommend_max_length({"p95": 10, "max": 10})[0] == 64
    assert tokens.recommend_max_length({"p95": 300, "max": 513})[0] == 576
    assert tokens.recommend_max_length({"p95": 900, "max": 1100})[0] == 1152
    # no arbitrary cap: a 30k-token row is covered within a long-context model
    assert tokens.recommend_max_length({"p95": 9000, "max": 30000})[0] == 30080
    rec, why = tokens.recommend_max_length({"p95": 3000, "max": 9000}, model_max=8192)
    assert rec == 8192 and "context of 8,192" in why and "9,000" in why


def test_cut_at_counts_rows_tokens_and_rows_left_with_nothing_to_learn():
    lengths, prompts = [100, 5000, 9000, 9100], [80, 4000, 8990, 9050]
    c = tokens.cut_at(lengths, prompts, 4096)
    assert (c.truncated, c.tokens_lost, c.zero_trainable) == (3, 904 + 4904 + 5004, 2)
    assert tokens.cut_at(lengths, prompts, 4096, completion_only=False).zero_trainable == 0
    assert tokens.cut_at(lengths, prompts, 4096, scale=10.0).zero_trainable == 20


def test_the_tokenizer_is_found_in_a_folder_or_the_hub_cache(tmp_path, monkeypatch):
    import shutil

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert hubcache.find_tokenizer([TOKENIZER])[0] == TOKENIZER
    found, why = hubcache.find_tokenizer(["org/model"])
    assert found is None and "Hugging Face cache" in why and "org/model" in why
    snap = cache / "models--org--model" / "snapshots" / "abc123"
    shutil.copytree(TOKENIZER, snap)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("abc123")
    assert hubcache.find_tokenizer(["org/model"]) == (str(snap), "the local Hugging Face cache")
    assert tokens.load_tokenizer(str(snap)) is not None


def test_a_tokenizer_that_cannot_load_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="cannot load a tokenizer"):
        inspect_dataset(write_jsonl(tmp_path / "d.jsonl", [chat("a", "b")]), tokenizer=str(tmp_path / "none"))


def test_preference_pairs_are_measured_on_both_sides_in_tokens(tmp_path, tok):
    # chosen has more messages (a short extra turn) while rejected has the longer text: the pair's length
    # is its longer side in tokens, whichever side has more messages
    long = " ".join(["the storage bucket is not fine at all"] * 12)
    rows = [
        {
            "prompt": [{"role": "user", "content": f"Is bucket {i} fine?"}],
            "chosen": [
                {"role": "assistant", "content": "Yes."},
                {"role": "user", "content": "Sure?"},
                {"role": "assistant", "content": "Yes."},
            ],
            "rejected": [{"role": "assistant", "content": long}],
        }
        for i in range(8)
    ]
    r = inspect_dataset(write_jsonl(tmp_path / "p.jsonl", rows), tokenizer=tok)
    assert r.format == "preference"

    def n(msgs):
        return len(tok(tok.apply_chat_template(msgs, tokenize=False), add_special_tokens=False)["input_ids"])

    rejected_len, chosen_len = (
        n(rows[0]["prompt"] + rows[0]["rejected"]),
        n(rows[0]["prompt"] + rows[0]["chosen"]),
    )
    assert rejected_len > chosen_len and r.token_stats["max"] >= rejected_len
