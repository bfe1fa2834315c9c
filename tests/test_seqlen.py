"""Sequence length from the data (advisor/seqlen.py): max_length covers the measured rows within the model's
context and the GPU's memory; a cut states the rows it costs; unmeasured lengths say so; the answers' keys."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from advisor.answers import parse_answers
from advisor.errors import UserError
from advisor.recommend import recommend
from advisor.seqlen import choose, fit_lengths
from tunewise.cli import main

TOKENIZER = Path("examples/demo/tokenizer").resolve()
BASE = {"task": "question-answering", "goals": ["privacy"], "clear_task": True, "tried_prompting": True}
WORDS = "the contract states that the supplier shall deliver goods within thirty days of the order".split()


def _llama_dir(path: Path, context: int = 131072, tokenizer: bool = True) -> str:
    """A Llama-3.1-8B-shaped model folder (config only) with the bundled demo tokenizer."""
    path.mkdir(parents=True)
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "max_position_embeddings": context,
        "tie_word_embeddings": False,
        "head_dim": 128,
    }
    (path / "config.json").write_text(json.dumps(cfg))
    if tokenizer:
        for f in TOKENIZER.iterdir():
            shutil.copy(f, path / f.name)
    return str(path)


def _long_docs(path: Path, n: int = 300, doc_words: int = 3000) -> str:
    """A third of the rows are long documents as the prompt with a short answer; the rest are short."""
    rows = []
    for i in range(n):
        size = doc_words + 7 * i if i % 3 == 0 else 40 + i
        doc = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(size))
        rows.append(
            {
                "prompt": f"Document {i}:\n{doc}\nQuestion: the delivery period?\nAnswer:",
                "completion": " 30 days.",
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _rec(**kw):
    return recommend(parse_answers({**BASE, **kw}), detect_gpus=False)


@pytest.fixture(scope="module")
def long_docs(tmp_path_factory):
    d = tmp_path_factory.mktemp("seq")
    return {"data": _long_docs(d / "docs.jsonl"), "model": _llama_dir(d / "llama")}


def test_fit_lengths_try_the_covering_length_then_halve_to_512():
    assert fit_lengths(9344, 512) == (9344, 8192, 4096, 2048, 1024, 512)
    assert fit_lengths(1024, 512) == (1024, 512) and fit_lengths(512, 512) == (512,)
    assert fit_lengths(256, 512) == (256,)  # a model whose context is below the guide's start


def test_max_length_covers_the_longest_row_where_memory_allows(long_docs):
    rec = _rec(dataset=long_docs["data"], model=long_docs["model"], gpus=[{"memory_gib": 80, "bf16": True}])
    p, data = rec.plan, rec.facts.data
    longest = data.token_stats["max"]
    assert longest > 2048 and p.max_length >= longest and p.max_length < longest + 128  # not clamped to 1,024
    assert (
        "covers the longest measured row" in p.reasons["max_length"]
        and f"{longest:,}" in p.reasons["max_length"]
    )
    assert not any("cuts the data" in w for w in rec.decision.warnings)
    assert rec.facts.values["sft_examples"] == data.usable_rows


def test_where_memory_cuts_the_plan_states_the_rows_lost_and_does_not_count_them(long_docs):
    rec = _rec(dataset=long_docs["data"], model=long_docs["model"], gpus=[{"memory_gib": 8, "bf16": True}])
    p, data = rec.plan, rec.facts.data
    assert p.max_length < data.token_stats["max"]
    cut = data.cut_at(p.max_length)
    # the long third: the prompt alone fills the length
    assert cut.zero_trainable == 100 and cut.truncated == 100
    why = p.reasons["max_length"]
    assert "the longest length that fits the GPU" in why and f"{cut.tokens_lost:,} tokens" in why
    assert "100 of them keep no trainable token" in why
    assert any(f"Sequence length {p.max_length:,} cuts the data" in w for w in rec.decision.warnings)
    # not counted as training rows: the schedule and the report use the rows left
    assert rec.facts.values["sft_examples"] == data.usable_rows - 100
    assert f"{p.train_examples(200):,} training rows" in p.reasons["eval_steps"]
    # packing counts the tokens the job trains: the rows left out add no packed sequence
    from advisor.data.report import trained_mean_tokens

    kept = [n for n, q in zip(data.row_tokens, data.row_prompt_tokens, strict=True) if q < p.max_length]
    assert trained_mean_tokens(data, p.max_length) == sum(min(n, p.max_length) for n in kept) / len(kept)
    assert trained_mean_tokens(data, p.max_length) < data.token_stats["mean"]
    seqs = p.sequences_per_epoch(p.train_examples(200), trained_mean_tokens(data, p.max_length))
    assert f"≈ {seqs:,} sequences" in p.reasons["eval_steps"]


def test_the_models_context_caps_the_length(long_docs, tmp_path):
    model = _llama_dir(tmp_path / "short-context", context=2048)
    p = _rec(dataset=long_docs["data"], model=model, gpus=[{"memory_gib": 80, "bf16": True}]).plan
    assert p.max_length == 2048 and "context of 2,048 tokens" in p.reasons["max_length"]
    assert "100 of them keep no trainable token" in p.reasons["max_length"]


def test_answers_max_length_is_used_and_its_cut_stated(long_docs):
    rec = _rec(
        dataset=long_docs["data"],
        model=long_docs["model"],
        gpus=[{"memory_gib": 80, "bf16": True}],
        max_length=2048,
    )
    assert rec.plan.max_length == 2048
    assert rec.plan.reasons["max_length"].startswith("2,048 tokens: `max_length` in the answers")
    assert "100 of them keep no trainable token" in rec.plan.reasons["max_length"]


def test_answers_max_length_above_the_context_is_refused_with_exit_2(tmp_path, capsys):
    model = _llama_dir(tmp_path / "m", context=4096, tokenizer=False)
    answers = tmp_path / "a.yaml"
    answers.write_text(
        f"task: chat\nexamples: 2000\nmodel: {model}\nmax_length: 8192\ngpus: [{{memory_gib: 80}}]\n"
    )
    assert main(["recommend", "--answers", str(answers), "--no-detect"]) == 2
    err = capsys.readouterr().err
    assert "'max_length': 8,192 tokens is longer than" in err and "at most 4,096" in err


@pytest.mark.parametrize(
    ("value", "needle"), [(0, "greater than or equal to 16"), ("2048", "valid integer"), (True, "true/false")]
)
def test_bad_length_keys_name_the_key_and_the_fix(value, needle):
    for key in ("max_length", "tokens_per_example"):
        if key == "tokens_per_example" and value == 0:
            needle_k = "greater than or equal to 1"
        else:
            needle_k = needle
        with pytest.raises(UserError) as e:
            parse_answers({key: value})
        assert (
            f"'{key}'" in e.value.message
            and needle_k in e.value.message
            and "whole number of tokens" in e.value.message
        )


def test_a_hub_model_without_a_cached_tokenizer_says_lengths_are_unmeasured(long_docs):
    rec = _rec(
        dataset=long_docs["data"], model="meta-llama/Llama-3.1-8B", gpus=[{"memory_gib": 80, "bf16": True}]
    )
    why = rec.plan.reasons["max_length"]
    assert why.startswith("lengths unmeasured (no tokenizer for meta-llama/Llama-3.1-8B")
    assert "assumed the guide's starting length 1,024" in why and "tokens_per_example" in why
    assert any("token lengths unmeasured" in n for n in rec.facts.notes)


def test_a_hub_model_whose_tokenizer_is_cached_is_measured(long_docs, tmp_path, monkeypatch):
    cache = tmp_path / "hf" / "hub"
    snap = cache / "models--meta-llama--Llama-3.1-8B" / "snapshots" / "0123abc"
    shutil.copytree(TOKENIZER, snap)
    (cache / "models--meta-llama--Llama-3.1-8B" / "refs").mkdir()
    (cache / "models--meta-llama--Llama-3.1-8B" / "refs" / "main").write_text("0123abc")
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    # the catalog name finds its hub id's tokenizer too
    rec = _rec(dataset=long_docs["data"], model="llama-3.1-8b", gpus=[{"memory_gib": 80, "bf16": True}])
    assert rec.facts.data.tokenizer and rec.facts.unmeasured is None
    assert rec.plan.max_length >= rec.facts.data.token_stats["max"] > 2048
    assert "covers the longest measured row" in rec.plan.reasons["max_length"]


def test_tokens_per_example_sizes_the_length_when_nothing_is_measured():
    rec = _rec(
        examples=3000,
        model="meta-llama/Llama-3.1-8B",
        gpus=[{"memory_gib": 80, "bf16": True}],
        tokens_per_example=3000,
    )
    why = rec.plan.reasons["max_length"]
    assert rec.plan.max_length == 3072 and "lengths unmeasured (no dataset given)" in why
    assert "not measured" in why and "3,000 tokens per example" in why
    # without it: the guide's start, and the plan says the lengths are unmeasured
    plain = _rec(examples=3000, model="meta-llama/Llama-3.1-8B", gpus=[{"memory_gib": 80, "bf16": True}]).plan
    assert plain.max_length == 1024 and plain.reasons["max_length"].startswith(
        "lengths unmeasured (no dataset given)"
    )


def test_choose_is_measured_first_then_expected_then_the_guide():
    th = {"max_length_min": 512, "max_length_start": 1024}

    class A:
        max_length = None
        tokens_per_example = 700

    assert choose({"data_max_tokens": 100.0}, th, A()).length == 512
    assert choose({}, th, A()).length == 704 and choose({}, th, A()).source == "expected"
    assert choose({}, th, None).source == "default"


def test_the_cut_is_counted_once_when_the_plan_is_built_again(long_docs):
    from advisor.planning import build_plan

    rec = _rec(dataset=long_docs["data"], model=long_docs["model"], gpus=[{"memory_gib": 8, "bf16": True}])
    before = dict(rec.facts.values)
    build_plan(rec.decision, rec.facts)
    assert rec.facts.values["sft_examples"] == before["sft_examples"]
    assert sum("cuts the data" in w for w in rec.decision.warnings) == 1
