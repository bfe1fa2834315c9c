"""Safety audit as tests: safe YAML, argument-list processes, trust_remote_code off by default, launch.sh
quoting, and paths from answers files resolved and checked."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from advisor.plan import LoraSpec, TrainingPlan
from launcher import jobfiles
from launcher.rundir import write_run_files
from tunewise.cli import main

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("tunewise", "launcher", "advisor")  # every package of the three layers


def _sources() -> list[Path]:
    """Every module of every scanned package; a scanned folder that is missing or holds no module is an
    error (a renamed package must not drop out of the scan silently)."""
    found = []
    for d in SCANNED:
        files = sorted((ROOT / d).rglob("*.py")) if (ROOT / d).is_dir() else []
        assert files, f"{d}/ is missing or holds no Python module: update SCANNED"
        found += files
    return found


SOURCES = _sources()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            owner = getattr(f.value, "id", "") if isinstance(f, ast.Attribute) else ""
            yield node, owner, name


def test_sources_use_safe_yaml_argument_lists_and_no_eval():
    problems = []
    for path in SOURCES:
        rel = path.relative_to(ROOT)
        for node, owner, name in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{rel}:{node.lineno}"
            if owner == "yaml" and name in (
                "load",
                "load_all",
                "unsafe_load",
                "full_load",
                "unsafe_load_all",
            ):
                problems.append(f"{where}: yaml.{name}")
            if any(k.arg == "Loader" for k in node.keywords):
                problems.append(f"{where}: Loader= (use yaml.safe_load)")
            if any(
                k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                for k in node.keywords
            ):
                problems.append(f"{where}: shell=")
            if (owner, name) in (("os", "system"), ("os", "popen")) or (
                owner == "" and name in ("eval", "exec")
            ):
                problems.append(f"{where}: {owner + '.' if owner else ''}{name}")
            if (
                owner == "subprocess"
                and name in ("run", "Popen", "call", "check_call", "check_output")
                and node.args
            ):
                if isinstance(node.args[0], ast.Constant | ast.JoinedStr | ast.BinOp):
                    problems.append(f"{where}: subprocess.{name} with a command string")
            if any(
                k.arg == "trust_remote_code" and isinstance(k.value, ast.Constant) and k.value.value is True
                for k in node.keywords
            ):
                problems.append(f"{where}: trust_remote_code=True hard-coded")
    assert len(SOURCES) > 60 and problems == []


def _recommend_md(tmp_path: Path, **answers) -> str:
    p = tmp_path / "answers.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "task": "chat",
                "goals": ["tone-style"],
                "clear_task": True,
                "tried_prompting": True,
                "examples": 3000,
                "model": "llama-3.1-8b",
                "gpus": [{"memory_gib": 80}],
                **answers,
            }
        ),
        encoding="utf-8",
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["recommend", "--answers", str(p), "--no-detect", "--format", "markdown"]) == 0
    return out.getvalue()


def test_trust_remote_code_is_off_unless_asked_and_the_report_says_which(tmp_path):
    off = _recommend_md(tmp_path)
    on = _recommend_md(tmp_path, trust_remote_code=True)
    assert "**trust_remote_code:** off" in off and "**trust_remote_code:** on" in on
    assert TrainingPlan.__dataclass_fields__["trust_remote_code"].default is False


def test_launch_sh_quotes_a_hostile_run_dir_and_model(tmp_path):
    """launch.sh finds its own directory at run time and passes it quoted; a model name with a newline stays
    inside its comment line. A stub `tunewise` on PATH records the arguments it gets."""
    rd = tmp_path / "run $(touch PWNED1); `touch PWNED2` 'q' \"dq\" & x"
    rd.mkdir()
    plan = TrainingPlan(model="org/m\ntouch PWNED3\n", method="lora", stage="sft", lora=LoraSpec())
    write_run_files(rd, plan, {})
    stub_dir = tmp_path / "bin"
    stub_dir.mkdir()
    stub = stub_dir / "tunewise"
    stub.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$ARGS_OUT"\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    args_out = tmp_path / "args.txt"
    env = {**os.environ, "PATH": f"{stub_dir}{os.pathsep}{os.environ['PATH']}", "ARGS_OUT": str(args_out)}
    subprocess.run(
        ["bash", str(rd / "launch.sh"), "--max-steps", "3; touch PWNED4"], check=True, env=env, cwd=tmp_path
    )
    assert args_out.read_text().splitlines() == ["launch", str(rd), "--max-steps", "3; touch PWNED4"]
    assert not list(tmp_path.rglob("PWNED*"))
    for name in ("launch.sh", "slurm.sbatch", "plan.yaml"):
        lines = (rd / name).read_text().splitlines()
        assert not any(line.startswith("touch PWNED3") for line in lines), name
    assert TrainingPlan.load(rd / "plan.yaml").model == plan.model  # the plan itself keeps the exact value
    subprocess.run(["bash", "-n", str(rd / "slurm.sbatch")], check=True)
    assert jobfiles.train_command(rd, plan)[-1] == str(rd)  # argument list: the path is one argument


@pytest.mark.parametrize(
    "dataset,needle",
    [
        ("missing.jsonl", "dataset file not found: "),  # named at the answers folder (checked below)
        ("sub", "is a directory"),  # a directory where a file is expected
        ("../outside.jsonl", "outside.jsonl"),  # `..` resolves against the answers file's folder
    ],
)
def test_dataset_paths_from_answers_are_resolved_and_checked(tmp_path, dataset, needle):
    (tmp_path / "a" / "sub").mkdir(parents=True)
    (tmp_path / "outside.jsonl").write_text('{"text": "hello there"}\n' * 3, encoding="utf-8")
    answers = tmp_path / "a" / "answers.yaml"
    answers.write_text(
        yaml.safe_dump(
            {"task": "chat", "dataset": dataset, "model": "llama-3.2-1b", "gpus": [{"memory_gib": 24}]}
        ),
        encoding="utf-8",
    )
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(ROOT), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["recommend", "--answers", str(answers), "--no-detect", "--format", "json"])
    if dataset.startswith(".."):  # found next to the answers file's folder, whatever the working directory
        assert rc == 0, err.getvalue()
        assert json.loads(out.getvalue())["facts"]["data_rows"] == 3
    else:
        assert rc == 2 and needle in err.getvalue() and "Traceback" not in err.getvalue()
        if dataset == "missing.jsonl":
            assert str(tmp_path / "a" / "missing.jsonl") in err.getvalue()
