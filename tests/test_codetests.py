"""Code tasks: the data's own tests run on the model's code (pass@1). Extraction, the subprocess that runs
a program (pass, fail, syntax error, a hang that times out, files kept to its temporary directory), and the
`tests` column read from the held-out split. Each test runs a few short Python processes (seconds)."""

from __future__ import annotations

import json
import time

import pytest

from advisor.errors import UserError
from launcher.evaluation import codetests, heldout

ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]


def test_the_code_is_the_first_python_block_else_an_untagged_block_else_everything():
    assert codetests.extract_code(f"Here it is:\n```python\n{ADD}```\nDone.") == ADD
    assert codetests.extract_code(f"```py\n{ADD}```") == ADD
    text = f"```bash\npip install x\n```\nthen\n```python3\n{ADD}```"
    assert codetests.extract_code(text) == ADD  # the Python block, not the shell one before it
    assert codetests.extract_code(f"```\n{ADD}```") == ADD
    assert codetests.extract_code(ADD) == ADD  # no fence: the whole answer
    assert codetests.extract_code(f"```python\n{ADD}") == ADD  # cut by the token budget: fence left open
    assert codetests.program(f"```python\n{ADD}```", ADD_TESTS).endswith("assert add(-1, 1) == 0\n")


def test_a_correct_answer_passes_and_wrong_or_broken_ones_fail():
    assert codetests.run_program(codetests.program(ADD, ADD_TESTS)) == (True, "passed")
    ok, why = codetests.run_program(codetests.program(ADD.replace("+", "-"), ADD_TESTS))
    assert not ok and why.startswith("exit 1") and "AssertionError" in why
    ok, why = codetests.run_program(codetests.program("def add(a, b) return a", ADD_TESTS))
    assert not ok and "SyntaxError" in why
    ok, why = codetests.run_program(codetests.program("import sys; sys.exit(3)", ADD_TESTS))
    assert not ok and why.startswith("exit 3")


def test_a_hang_fails_on_the_timeout_and_the_others_still_run():
    t0 = time.perf_counter()
    hang = "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'while True: pass'])\nwhile True: pass\n"
    values = codetests.tests_pass([hang, ADD, "def add(a, b): return 0"], [ADD_TESTS] * 3, timeout=1.0)
    assert values.tolist() == [0.0, 1.0, 0.0]
    assert time.perf_counter() - t0 < 8
    assert codetests.run_program("while True: pass\n", timeout=0.5) == (False, "timeout")


def test_files_a_program_writes_stay_in_its_temporary_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where tempfile puts the program's directory
    source = (
        "import os, pathlib, tempfile\n"
        "pathlib.Path('out.txt').write_text('x')\n"
        "pathlib.Path(os.path.expanduser('~/.cache-probe')).write_text('x')\n"
        "tempfile.NamedTemporaryFile(delete=False).write(b'x')\n"
        "assert pathlib.Path('solution.py').is_file()\n"  # cwd: the program's own directory
        "import sys; assert sys.flags.isolated\n"
    )
    import tempfile

    tempfile.tempdir = None  # re-read TMPDIR
    try:
        assert codetests.run_program(source) == (True, "passed")
    finally:
        tempfile.tempdir = None
    assert list(tmp_path.iterdir()) == []  # the temporary directory and everything in it is gone


def test_the_tests_column_is_read_from_the_split_and_bad_ones_name_the_row(tmp_path):
    rows = [
        {"prompt": "add", "completion": ADD, "tests": ADD_TESTS},
        {"prompt": "add", "completion": ADD, "test_list": "assert add(1, 2) == 3"},  # MBPP's name, one string
        {"prompt": "add", "completion": ADD},
        {"prompt": "add", "completion": ADD, "tests": []},
    ]
    path = tmp_path / "validation.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = [e.tests for e in heldout.read_examples(path, "held-out")]
    assert got == [ADD_TESTS, ["assert add(1, 2) == 3"], None, None]
    for bad in ({"n": 1}, [1, 2], 3, ["ok", None]):
        path.write_text(json.dumps(rows[0]) + "\n" + json.dumps({**rows[0], "tests": bad}) + "\n")
        with pytest.raises(UserError) as e:
            heldout.read_examples(path, "held-out")
        assert f"{path}, line 2: `tests`" in e.value.message and "list of strings" in e.value.message
        assert "recommend --out" in e.value.hint
