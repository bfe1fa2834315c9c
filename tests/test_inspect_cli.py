"""`tunewise inspect`: exit codes, JSON and terminal output, and fuzzed files that never crash it."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunewise.cli import main


def write_jsonl(path, rows):
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return str(path)


def chat(q, a):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "tunewise.cli", "inspect", *args], capture_output=True, text=True, timeout=120
    )


def test_json_output_and_exit_codes(tmp_path, capsys):
    rows = [chat(f"q{i}", f"a{i}") for i in range(6)] + ["{oops", chat("q0", "a0")]
    out = cli(write_jsonl(tmp_path / "d.jsonl", rows), "--format", "json")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert (d["format"], d["rows"], d["valid"], d["duplicates"]) == ("messages", 8, 7, 1)
    assert (
        d["invalid"] == [{"line": 7, "reason": d["invalid"][0]["reason"]}]
        and "malformed" in d["invalid"][0]["reason"]
    )
    assert d["token_stats"] is None

    unusable = cli(write_jsonl(tmp_path / "bad.jsonl", ["{x", {"text": ""}]), "--format", "json")
    assert unusable.returncode == 1 and json.loads(unusable.stdout)["usable"] is False
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["inspect", str(empty)]) == 1

    for args, needle in [
        ((str(tmp_path / "missing.jsonl"),), "not found"),
        ((write_jsonl(tmp_path / "qa.jsonl", [{"q": 1}]),), "--column-map"),
        ((str(tmp_path / "d.jsonl"), "--column-map", "prompt"), "NAME=COLUMN"),
        ((str(tmp_path / "d.jsonl"), "--tokenizer", str(tmp_path)), "cannot load"),
        ((str(tmp_path / "d.jsonl"), "--max-length", "0"), "expected a positive integer"),
    ]:
        try:
            rc = main(["inspect", *args])
        except SystemExit as e:  # argparse rejects bad flag values itself, with exit code 2
            rc = e.code
        err = capsys.readouterr().err
        assert rc == 2, (args, err)
        assert needle in err


def test_text_report_with_tokenizer_shows_histogram_problems_and_recommendation(tmp_path):
    rows = [chat(f"Question {i}?", " ".join(["Answer text."] * (1 + i % 9))) for i in range(30)]
    rows += [
        {"messages": [{"role": "assistant", "content": "hi"}]},
        chat("Question 1?", "Answer text. Answer text."),
    ]
    out = cli(write_jsonl(tmp_path / "d.jsonl", rows), "--tokenizer", "examples/demo/tokenizer")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "Token lengths" in text and "█" in text and "recommended max_length" in text
    assert "role-order" in text and "31" in text  # the kind and the line of the bad row
    assert "duplicate" in text and "usable: 30 rows" in text


def test_model_without_local_tokenizer_is_a_note_not_an_error(tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", [chat("a", "b")])
    assert main(["inspect", data, "--model", "nobody/no-such-model", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["token_stats"] is None and any(
        "no tokenizer for nobody/no-such-model" in w for w in d["warnings"]
    )
    assert main(["inspect", data, "--model", "examples/demo/tokenizer", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["token_stats"]["max"] > 0 and d["tokenizer"]


def test_a_chat_template_without_generation_markers_is_a_warning(tmp_path, capsys, smollm2_dir):
    """SmolLM2's template has no {% generation %} markers: assistant-only loss trains per-turn rows instead."""
    data = write_jsonl(tmp_path / "d.jsonl", [chat(f"q{i}?", f"a{i}.") for i in range(5)])
    assert main(["inspect", data, "--tokenizer", str(smollm2_dir), "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    found = [w for w in d["warnings"] if "{% generation %} markers" in w]
    assert found and "prompt-completion row" in found[0]
    assert d["finding_counts"]["no-generation-markers"] == 1
    assert main(["inspect", data, "--tokenizer", "examples/demo/tokenizer", "--format", "json"]) == 0
    assert not any("generation %} markers" in w for w in json.loads(capsys.readouterr().out)["warnings"])
    pc = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": f"q{i}?", "completion": f"a{i}."} for i in range(5)])
    assert main(["inspect", pc, "--tokenizer", str(smollm2_dir), "--format", "json"]) == 0
    assert not any("generation %} markers" in w for w in json.loads(capsys.readouterr().out)["warnings"])


def test_validation_flag_reports_leakage(tmp_path):
    train = write_jsonl(tmp_path / "t.jsonl", [{"text": f"row {i}"} for i in range(10)])
    val = write_jsonl(tmp_path / "v.jsonl", [{"text": "row 3"}, {"text": "fresh"}])
    d = json.loads(cli(train, "--validation", val, "--format", "json").stdout)
    assert d["leaked_rows"] == 1 and d["validation_rows"] == 2


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda c: (
        st.lists(c, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "text",
                    "messages",
                    "role",
                    "content",
                    "prompt",
                    "completion",
                    "chosen",
                    "rejected",
                    "instruction",
                    "output",
                    "x",
                ]
            ),
            c,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(st.one_of(_json_values.map(json.dumps), st.text(max_size=20)), max_size=6),
    raw=st.binary(max_size=40),
    suffix=st.sampled_from([".jsonl", ".json", ".csv"]),
)
def test_fuzzed_files_exit_0_1_or_2_without_a_traceback(tmp_path, capsys, lines, raw, suffix):
    path = tmp_path / f"f{suffix}"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + raw)
    rc = main(["inspect", str(path), "--format", "json"])
    err = capsys.readouterr().err
    assert rc in (0, 1, 2) and "Traceback" not in err
    if rc == 2:
        assert err.startswith("tunewise: error:")


def test_rows_whose_prompt_fills_max_length_are_not_usable(tmp_path, capsys):
    # Every prompt is longer than --max-length: with the loss on completions only, nothing trains.
    tok = "examples/demo/tokenizer"
    rows = [{"prompt": f"row {i} " + "word " * 200, "completion": "ok"} for i in range(3)]
    data = write_jsonl(tmp_path / "long.jsonl", rows)
    assert main(["inspect", data, "--tokenizer", tok, "--max-length", "32", "--format", "json"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert d["zero_trainable_rows"] == 3 and d["usable"] is False
    text = cli(data, "--tokenizer", tok, "--max-length", "32")
    assert text.returncode == 1 and "unusable" in text.stdout
    assert re.search(r"usable for training\s+0\n", text.stdout), (
        text.stdout
    )  # not 3: the verdict says unusable
    # The same rows fit a long enough max_length, and one short row is enough to be usable.
    assert main(["inspect", data, "--tokenizer", tok, "--max-length", "4096", "--format", "json"]) == 0
    short = write_jsonl(tmp_path / "mixed.jsonl", [*rows, {"prompt": "hi", "completion": "hello"}])
    capsys.readouterr()
    assert main(["inspect", short, "--tokenizer", tok, "--max-length", "32", "--format", "json"]) == 0


def test_missing_file_in_an_existing_folder_is_not_taken_for_a_hub_id(tmp_path, capsys, monkeypatch):
    # `inspect data/train` (extension forgotten) tried the hub for ~25 s of retries without network.
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["inspect", "data/train"]) == 2
    err = capsys.readouterr().err
    assert "dataset file not found: data/train" in err and "hub" not in err
    assert main(["inspect", "some-org/some-dataset"]) == 2  # no such folder: still read as a hub id
    assert "hub dataset id" in capsys.readouterr().err
