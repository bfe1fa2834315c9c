"""Fuzzed bad input through the real CLI entry point: answers files, datasets, config.json, rule files, flags.

Invariant for every case: exit code 0, 1 or 2 (0/1 only where the input is valid), a message on
stderr naming the problem for 2, and never a traceback. An exception escaping `tunewise.cli.main` is a
crash and fails the test with its traceback. Found crashes are kept below as explicit regressions.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advisor.answers import Answers
from advisor.errors import UserError
from advisor.rules import load_rules
from advisor.thresholds import rules_root
from tunewise.cli import main

ROOT = Path(__file__).resolve().parents[1]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def cli(argv: list[str]) -> tuple[int, str, str]:
    """`tunewise ARGV` in-process: (exit code, stdout, stderr). argparse's SystemExit becomes its code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    return rc, out.getvalue(), err.getvalue()


def assert_clean(rc: int, out: str, err: str, *, valid: bool | None = None) -> None:
    """Exit 0/1/2, no traceback; exit 2 comes with a message; `valid` pins which side the input is on."""
    assert rc in (0, 1, 2), (rc, err[-2000:])
    assert "Traceback" not in out + err
    if rc == 2:
        assert "error" in err and len(err.strip()) > len("tunewise: error:"), err
    if valid is False:
        assert rc == 2, (rc, out[-500:], err[-500:])
    if valid is True:
        assert rc in (0, 1), err


# --- answers files -----------------------------------------------------------------------------

KEYS = list(Answers.model_fields) + ["colour", "Task", ""]
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["chat", "lora", "auto", "tone-style", "llama-3.1-8b", "qwen2.5-7b", "../x", "/", "~"])
)
_values = st.recursive(
    _scalars,
    lambda c: (
        st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(["name", "memory_gib", "x"]), c, max_size=3)
    ),
    max_leaves=8,
)
_answers_docs = st.dictionaries(st.sampled_from(KEYS), _values, max_size=6)


def _is_valid(doc) -> bool:
    try:
        Answers.model_validate(doc if doc is not None else {})
        return isinstance(doc, dict | type(None))
    except Exception:  # noqa: BLE001 - pydantic's verdict only
        return False


@FUZZ
@given(doc=_answers_docs)
def test_fuzzed_answers_mappings(tmp_path, doc):
    path = tmp_path / "answers.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    rc, out, err = cli(["recommend", "--answers", str(path), "--no-detect", "--format", "json"])
    # A schema-valid file may still name an unknown model or a missing dataset (exit 2); an invalid one never passes.
    assert_clean(rc, out, err, valid=None if _is_valid(doc) else False)
    if rc in (0, 1):
        assert json.loads(out)["approach"]


_valid_answers = st.fixed_dictionaries(
    {},
    optional={
        "task": st.sampled_from(["classification", "chat", "code", "reasoning", "summarization"]),
        "goals": st.lists(
            st.sampled_from(["tone-style", "privacy", "low-resource-language", "output-format"]),
            max_size=3,
            unique=True,
        ),
        "needs_citations": st.booleans(),
        "knowledge_changes_often": st.booleans(),
        "clear_task": st.booleans(),
        "tried_prompting": st.booleans(),
        "zero_latency": st.booleans(),
        "examples": st.integers(min_value=0, max_value=10**30),
        "preference_pairs": st.integers(0, 10**12),
        "model": st.sampled_from(["llama-3.1-8b", "llama-3.2-1b", "qwen2.5-7b", "meta-llama/Llama-3.1-70B"]),
        "gpus": st.lists(
            st.fixed_dictionaries({"memory_gib": st.floats(min_value=1e-6, max_value=4096)}),
            min_size=1,
            max_size=9,
        ),
        "method": st.sampled_from(["auto", "lora", "qlora", "spectrum", "full"]),
    },
)


@FUZZ
@given(doc=_valid_answers, fmt=st.sampled_from(["json", "markdown", "text"]))
def test_fuzzed_valid_answers_extreme_values(tmp_path, doc, fmt):
    """Schema-valid answers with extreme sizes (10**30 examples, a 1 KiB GPU) still get a recommendation."""
    path = tmp_path / "answers.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    rc, out, err = cli(["recommend", "--answers", str(path), "--no-detect", "--format", fmt])
    assert_clean(rc, out, err, valid=True)
    assert json.loads(out)["approach"] if fmt == "json" else out.strip()


@FUZZ
@given(
    raw=st.one_of(
        st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))
    )
)
def test_fuzzed_answers_bytes(tmp_path, raw):
    path = tmp_path / "answers.yaml"
    path.write_bytes(raw)
    rc, out, err = cli(["recommend", "--answers", str(path), "--no-detect", "--format", "json"])
    assert_clean(rc, out, err)


def _bomb(levels: int) -> str:
    lines = ['l0: &l0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines).replace("l0:", "task:", 1) + f"\ngoals: *l{levels - 1}\n"


ANSWERS_REGRESSIONS = {
    # alias bomb: 9**9 leaves by reference; the error message once printed the whole value (25 MB at 9**7).
    # Now refused before anything is built from it (advisor/safeyaml.py); a small alias is still fine.
    "alias-bomb": (_bomb(9), "through YAML aliases"),
    "small-alias": ("task: chat\ngoals: &g [tone-style]\n", None),
    "deeply-nested-list": (
        "task: " + "[" * 5000 + "]" * 5000 + "\n",
        "nested too deeply",
    ),  # was RecursionError
    "deeply-nested-map": ("task: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", "nested too deeply"),
    "not-utf8": (b"task: \xff\xfe chat\n", "not UTF-8"),
    "nul-byte": (b"task: chat\x00\n", "not valid YAML"),
    "empty-is-valid": ("", None),
    "comment-only-is-valid": ("# nothing\n", None),
    "list-not-mapping": ("- task\n- chat\n", "expected a mapping"),
    "scalar-not-mapping": ("42\n", "expected a mapping"),
    "nan-and-inf": ("examples: .nan\npreference_pairs: .inf\n", "'examples'"),
    "negative": ("examples: -1\n", "'examples'"),
    "gpu-nan": ("gpus: [{memory_gib: .nan}]\n", "memory_gib"),
    "gpu-zero": ("gpus: [{memory_gib: 0}]\n", "memory_gib"),
    "wrong-type": ("needs_citations: [1, 2]\n", "needs_citations"),
    "unknown-key": ("colour: blue\n", "unknown key 'colour'"),
    "python-object-tag": ("task: !!python/object/apply:os.system ['echo PWNED']\n", "not valid YAML"),
    "huge-string": ("model: " + "x" * 5_000 + "\n", "unknown model"),
    "blank-model": ("model: '  '\n", "'model'"),
    "dataset-missing": ("dataset: no/such/file.jsonl\n", "no/such/file.jsonl"),
    "dataset-is-a-directory": ("dataset: .\n", "is a directory"),
}


@pytest.mark.parametrize("case", list(ANSWERS_REGRESSIONS))
def test_answers_regressions(tmp_path, case):
    text, needle = ANSWERS_REGRESSIONS[case]
    path = tmp_path / "answers.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    rc, out, err = cli(["recommend", "--answers", str(path), "--no-detect", "--format", "json"])
    assert_clean(rc, out, err, valid=needle is None)
    assert len(err) < 20_000, f"unbounded error message ({len(err)} characters)"
    if needle:
        assert needle in err, err[:2000]
    assert "PWNED" not in out + err


# --- dataset files (inspect, and recommend with a dataset) -----------------------------------------

_rows = st.one_of(
    st.builds(
        lambda q, a: json.dumps(
            {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        ),
        st.text(max_size=10),
        st.text(max_size=10),
    ),
    st.builds(
        lambda p, c: json.dumps({"prompt": p, "completion": c}), st.text(max_size=10), st.text(max_size=10)
    ),
    st.text(max_size=30),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(_rows, max_size=6),
    cut=st.integers(min_value=0, max_value=400),
    tail=st.binary(max_size=20),
    suffix=st.sampled_from([".jsonl", ".json", ".csv", ".parquet", ""]),
)
def test_fuzzed_dataset_in_recommend(tmp_path, lines, cut, tail, suffix):
    data = tmp_path / f"d{suffix}"
    blob = "\n".join(lines).encode("utf-8", "surrogatepass")
    data.write_bytes(blob[:cut] + tail)  # truncated JSON and stray bytes
    answers = tmp_path / "answers.yaml"
    answers.write_text(
        yaml.safe_dump(
            {"task": "chat", "dataset": str(data), "model": "llama-3.2-1b", "gpus": [{"memory_gib": 24}]}
        ),
        encoding="utf-8",
    )
    rc, out, err = cli(["recommend", "--answers", str(answers), "--no-detect", "--format", "json"])
    assert_clean(rc, out, err)


@pytest.mark.parametrize(
    "content",
    [
        "[" * 100_000,  # deeply nested JSON
        '{"text": "' + "a" * 3_000_000 + '"}\n',  # one 3 MB line
        '{"messages": [{"role": "user", "content": "hi"}, {"ro',  # truncated mid-object
        "\ufeff" + '{"text": "bom"}\n',  # byte-order mark
    ],
    ids=["deep", "huge-line", "truncated", "bom"],
)
def test_dataset_regressions(tmp_path, content):
    data = tmp_path / "d.jsonl"
    data.write_text(content, encoding="utf-8")
    for argv in (["inspect", str(data), "--format", "json"],):
        assert_clean(*cli(argv))


# --- config.json in a model directory (estimate --model DIR) ---------------------------------------

_SHAPE_KEYS = [
    "model_type",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "tie_word_embeddings",
    "max_position_embeddings",
    "text_config",
    "n_embd",
    "n_layer",
]
_cfg_values = (
    st.integers(min_value=-5, max_value=10**7)
    | st.sampled_from([0, 1, 2, 64, 2**62, 10**40])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
    | st.booleans()
    | st.none()
    | st.lists(st.integers(), max_size=2)
    | st.just({"hidden_size": 8})
)
GOOD_CFG = {
    "model_type": "llama",
    "vocab_size": 1000,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}


@FUZZ
@given(
    changes=st.dictionaries(st.sampled_from(_SHAPE_KEYS), _cfg_values, max_size=4),
    drop=st.lists(st.sampled_from(list(GOOD_CFG)), max_size=2),
    method=st.sampled_from(["lora", "qlora", "full"]),
)
def test_fuzzed_config_json(tmp_path, changes, drop, method):
    cfg = {k: v for k, v in {**GOOD_CFG, **changes}.items() if k not in drop}
    (tmp_path / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    rc, out, err = cli(["estimate", "--model", str(tmp_path), "--method", method, "--format", "json"])
    assert_clean(rc, out, err)
    if rc == 0:
        j = json.loads(out)
        assert math.isfinite(j["peak_allocated_gib"]) and j["peak_allocated_gib"] > 0


@FUZZ
@given(raw=st.binary(max_size=120) | st.text(max_size=120).map(str.encode))
def test_fuzzed_config_json_bytes(tmp_path, raw):
    (tmp_path / "config.json").write_bytes(raw)
    assert_clean(*cli(["estimate", "--model", str(tmp_path), "--method", "lora"]), valid=False)


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"head_dim": "abc"}, "head_dim='abc'"),  # was ValueError from int()
        ({"num_key_value_heads": "two"}, "num_key_value_heads='two'"),  # was ValueError from int()
        ({"num_key_value_heads": [2]}, "num_key_value_heads=[2]"),  # was TypeError
        ({"num_key_value_heads": float("nan")}, "num_key_value_heads=nan"),  # was ValueError from int(nan)
        ({"head_dim": -8}, "head_dim=-8"),
        ({"head_dim": 1.5}, "head_dim=1.5"),
        ({"num_key_value_heads": 3}, "does not divide"),
        ({"max_position_embeddings": "long"}, "max_position_embeddings"),
        ({"num_attention_heads": 128}, "head_dim=0"),  # hidden 64 / 128 heads
        ({"vocab_size": 0}, "vocab_size=0"),
        ({"hidden_size": "64"}, "hidden_size='64'"),
    ],
)
def test_config_json_regressions(tmp_path, change, needle):
    (tmp_path / "config.json").write_text(json.dumps({**GOOD_CFG, **change}), encoding="utf-8")
    rc, out, err = cli(["estimate", "--model", str(tmp_path), "--method", "lora", "--format", "json"])
    assert_clean(rc, out, err, valid=False)
    assert needle in err


# --- rule files ------------------------------------------------------------------------------------

GOOD_RULE = {
    "id": "TW999-fuzz",
    "title": "t",
    "when": "examples < t.min_examples_peft",
    "then": {"recommend": {"approach": "prompting"}},
    "message": "m",
    "why": "w",
    "source": "When to Fine-Tune Versus Alternative Approaches",
    "examples": {"fires": [{"examples": 3}], "does_not_fire": [{"examples": 300}]},
}
_rule_values = st.recursive(
    _scalars
    | st.sampled_from(
        ["true", "examples >", "examples > 1 &&", "1/0 > 1", "size(goals) > 0", "t.nope > 1", "warn"]
    ),
    lambda c: (
        st.lists(c, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                ["recommend", "approach", "warn", "fires", "does_not_fire", "examples", "plan", "x"]
            ),
            c,
            max_size=3,
        )
    ),
    max_leaves=10,
)


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("rules")
    shutil.copy(rules_root() / "thresholds.yaml", d / "thresholds.yaml")
    return d


@FUZZ
@given(
    changes=st.dictionaries(
        st.sampled_from(list(GOOD_RULE) + ["priority", "layer", "extra"]), _rule_values, max_size=3
    ),
    raw=st.none() | st.binary(max_size=80),
)
def test_fuzzed_rule_files(rules_dir, changes, raw):
    p = rules_dir / "TW999-fuzz.yaml"
    p.write_bytes(raw if raw is not None else yaml.safe_dump({**GOOD_RULE, **changes}).encode())
    try:
        rules = load_rules(rules_dir)
    except UserError as e:
        assert "TW999-fuzz.yaml" in str(e) or "thresholds" in str(e)
    else:
        assert [r.id for r in rules] == [str(changes.get("id", GOOD_RULE["id"]))]


def test_rule_file_regressions(rules_dir):
    for text in ["[" * 5000, "id: " + "{a: " * 3000 + "1" + "}" * 3000, "when: !!python/name:os.system\n"]:
        (rules_dir / "TW999-fuzz.yaml").write_text(text, encoding="utf-8")
        with pytest.raises(UserError, match="TW999-fuzz.yaml"):
            load_rules(rules_dir)


# --- CLI flags -------------------------------------------------------------------------------------

VERB_FLAGS = {
    "recommend": ["--answers", "--format", "--out", "--no-detect"],
    "estimate": [
        "--model",
        "--method",
        "--rank",
        "--seq-len",
        "--batch-size",
        "--no-grad-ckpt",
        "--liger",
        "--spectrum-fraction",
        "--gpus",
        "--distributed",
        "--optimizer",
        "--attn",
        "--lora-dropout",
        "--gpu-memory",
        "--format",
    ],
    "inspect": [
        "--model",
        "--tokenizer",
        "--max-length",
        "--column-map",
        "--validation",
        "--max-rows",
        "--format",
    ],
    "spectrum": ["scan", "--top-percent", "--device", "--out", "--format", "--embeddings", "--no-cache"],
    "launch": ["--max-steps", "--save-steps", "--cpu"],
    "export": ["--merge", "--out"],
    "rules": ["--format", "--facts", "TW101", "TW"],
    "wizard": ["--answers", "--save-answers", "--demo", "--no-detect"],
    "env": ["--format"],
}
_tokens = st.sampled_from(
    [
        "0",
        "-1",
        "1",
        "7",
        "nan",
        "inf",
        "-inf",
        "1e999",
        "0.5",
        "",
        "json",
        "text",
        "lora",
        "qlora",
        "full",
        "spectrum",
        "llama-3.1-8b",
        "fsdp",
        "a=b",
        "=",
        "--",
        "-x",
        "é",
        "answers.yaml",
        "data.jsonl",
        "nowhere/x",
        ".",
    ]
) | st.text(max_size=6)


@pytest.fixture(scope="module")
def flag_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("flags")
    (d / "answers.yaml").write_text("task: chat\nexamples: 40\n", encoding="utf-8")
    (d / "data.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n', encoding="utf-8")
    return d


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(verb=st.sampled_from(list(VERB_FLAGS)), data=st.data())
def test_fuzzed_flags(flag_dir, verb, data):
    argv = [verb] + data.draw(st.lists(st.sampled_from(VERB_FLAGS[verb]) | _tokens, max_size=6))
    with contextlib.chdir(flag_dir):  # relative --out paths land in the scratch folder
        rc, out, err = cli(argv)
    assert_clean(rc, out, err)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["estimate", "--model", "llama-3.1-8b", "--method", "lora", "--gpu-memory", "nan"], "--gpu-memory"),
        (["estimate", "--model", "llama-3.1-8b", "--method", "lora", "--gpu-memory", "inf"], "--gpu-memory"),
        (["estimate", "--model", "llama-3.1-8b", "--method", "lora", "--lora-dropout", "nan"], "dropout"),
        (["estimate", "--model", "llama-3.1-8b", "--method", "lora", "--lora-dropout", "-1"], "dropout"),
        (["estimate", "--model", "llama-3.1-8b", "--method", "lora", "--rank", "1e999"], "--rank"),
    ],
)
def test_flag_regressions(argv, needle):
    rc, out, err = cli(argv)
    assert_clean(rc, out, err, valid=False)
    assert needle in err


def test_real_subprocess_cases(tmp_path):
    """The same guarantees through `python -m tunewise`, where nothing is caught for us."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_bomb(9), encoding="utf-8")
    cfg = tmp_path / "m"
    cfg.mkdir()
    (cfg / "config.json").write_text('{"model_type": "llama", "hidden_size": "big"', encoding="utf-8")
    data = tmp_path / "d.jsonl"
    data.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    for argv in (
        ["recommend", "--answers", str(bomb), "--no-detect"],
        ["estimate", "--model", str(cfg), "--method", "lora"],
        ["inspect", str(data)],
        ["estimate", "--model", "llama-3.1-8b", "--method", "nope"],
    ):
        r = subprocess.run(
            [sys.executable, "-m", "tunewise", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert r.returncode == 2, (argv, r.stderr[-2000:])
        assert "Traceback" not in r.stdout + r.stderr and "error" in r.stderr and len(r.stderr) < 20_000
