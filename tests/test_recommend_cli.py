"""`tunewise recommend` and `tunewise rules` through tunewise.cli.main: JSON shape, exit codes, run dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tunewise.cli import main

ROOT = Path(__file__).resolve().parents[1]
PERSONAS = ROOT / "examples" / "answers"


def _answers(tmp_path: Path, **data) -> str:
    p = tmp_path / "answers.yaml"
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(p)


def _json(capsys, argv) -> tuple[int, dict]:
    rc = main(argv)
    return rc, json.loads(capsys.readouterr().out)


def test_json_has_the_design_keys(capsys):
    rc, j = _json(
        capsys,
        [
            "recommend",
            "--answers",
            str(PERSONAS / "brand-voice-chatbot-24gb.yaml"),
            "--format",
            "json",
            "--no-detect",
        ],
    )
    assert rc == 0
    assert {"approach", "method", "stage", "model", "fired", "warnings", "candidates", "plan"} <= set(j)
    assert (j["approach"], j["model"]) == ("fine-tune", "meta-llama/Llama-3.1-8B")
    assert j["method"] in j["candidates"] and j["plan"]["method"] == j["method"]
    for c in j["candidates"].values():
        assert isinstance(c["peak_gib"], float) and isinstance(c["fits"], bool)
    assert all(isinstance(x, str) for x in j["fired"] + j["warnings"])
    assert len(j["trace"]) >= 45


def test_prompting_has_null_method_stage_plan(capsys, tmp_path):
    rc, j = _json(
        capsys,
        [
            "recommend",
            "--answers",
            _answers(tmp_path, task="chat", examples=40),
            "--format",
            "json",
            "--no-detect",
        ],
    )
    assert rc == 0 and j["approach"] == "prompting"
    assert (j["method"], j["stage"], j["plan"]) == (None, None, None)
    assert "TW101-few-examples-prompting" in j["fired"]


def test_forced_method_that_does_not_fit_exits_1_but_still_prints(capsys):
    rc = main(["recommend", "--answers", str(PERSONAS / "forced-full-does-not-fit.yaml"), "--format", "json"])
    out = capsys.readouterr()
    assert rc == 1 and json.loads(out.out)["method"] == "full" and "does not fit" in out.err


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"task": "poetry"}, "'task'"),
        ({"examples": -3}, "'examples'"),
        ({"colour": "blue"}, "unknown key 'colour'"),
        ({"model": "no-such-org/NoSuchModel-9B", "examples": 2000}, "NoSuchModel"),
    ],
)
def test_bad_answers_exit_2_with_a_message(capsys, tmp_path, data, needle):
    rc = main(["recommend", "--answers", _answers(tmp_path, **data), "--no-detect"])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and "Traceback" not in err


def test_missing_answers_file_exits_2(capsys, tmp_path):
    assert main(["recommend", "--answers", str(tmp_path / "nope.yaml")]) == 2
    assert "answers file not found" in capsys.readouterr().err


def test_out_writes_a_run_directory_and_never_overwrites(capsys, tmp_path):
    demo = ROOT / "examples" / "demo" / "answers.yaml"
    data = yaml.safe_load(demo.read_text())
    data["dataset"] = str(demo.parent / data["dataset"])
    data["gpus"] = [{"name": "RTX 4090", "memory_gib": 24}]
    answers = _answers(tmp_path, **data)
    out = tmp_path / "run"
    assert main(["recommend", "--answers", answers, "--out", str(out), "--format", "markdown"]) == 0
    assert main(["recommend", "--answers", answers, "--out", str(out), "--format", "json"]) == 0
    for d in (out, tmp_path / "run-2"):
        assert {"report.md", "report.json", "plan.yaml", "launch.sh"} <= {p.name for p in d.iterdir()}
    plan = yaml.safe_load((out / "plan.yaml").read_text())
    assert plan["data"]["train"] and plan["method"] in ("lora", "qlora")


def test_rules_list_one_rule_and_unknown_id(capsys):
    assert main(["rules"]) == 0
    listing = capsys.readouterr().out
    assert (
        "TW101-few-examples-prompting" in listing
        and "[When to Fine-Tune Versus Alternative Approaches]" in listing
    )
    assert main(["rules", "TW101"]) == 0
    full = capsys.readouterr().out
    for part in ("## What it does", "## Why", "## Example", "## Source", "t.min_examples_peft = 100"):
        assert part in full
    assert main(["rules", "TW101", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == "TW101-few-examples-prompting"
    assert main(["rules", "TW9"]) == 2 and "no rule with id" in capsys.readouterr().err
    assert main(["rules", "TW1"]) == 2 and "matches" in capsys.readouterr().err
    assert main(["rules", "--facts"]) == 0 and "gpu_memory_gib" in capsys.readouterr().out


def test_out_says_when_a_sibling_was_made_and_rejects_an_empty_name(capsys, tmp_path):
    answers = _answers(tmp_path, task="chat", examples=40)
    out = tmp_path / "run"
    assert main(["recommend", "--answers", answers, "--out", str(out), "--format", "json"]) == 0
    assert capsys.readouterr().err.strip() == f"wrote {out}"
    assert main(["recommend", "--answers", answers, "--out", str(out), "--format", "json"]) == 0
    err = capsys.readouterr().err
    assert f"{out} already exists and is never overwritten: wrote {tmp_path / 'run-2'}" in err
    # `--out ""` wrote nothing and said nothing, exit 0
    assert main(["recommend", "--answers", answers, "--out", "", "--format", "json"]) == 2
    assert "--out is empty" in capsys.readouterr().err


def test_json_on_stdout_is_the_plan_written_with_out(capsys, tmp_path):
    # stdout was printed before --out wrote the split (and a Spectrum scan's layers) into the plan,
    # so it differed from RUN_DIR/report.json: train/validation were null.
    demo = ROOT / "examples" / "demo" / "answers.yaml"
    data = yaml.safe_load(demo.read_text())
    data["dataset"] = str(demo.parent / data["dataset"])
    data["gpus"] = [{"name": "RTX 4090", "memory_gib": 24}]
    out = tmp_path / "run"
    assert (
        main(["recommend", "--answers", _answers(tmp_path, **data), "--out", str(out), "--format", "json"])
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "report.json").read_text())
    assert printed["plan"]["data"]["train"] == "data/train.jsonl"


def test_report_is_still_printed_when_out_cannot_be_completed(capsys, tmp_path):
    # Spectrum on a hub id needs local weights to scan: --out fails (exit 2) but the report is shown.
    answers = _answers(
        tmp_path,
        task="chat",
        examples=3000,
        clear_task=True,
        tried_prompting=True,
        model="meta-llama/Llama-3.2-1B",
        gpus=[{"memory_gib": 80}],
        method="spectrum",
    )
    rc = main(["recommend", "--answers", answers, "--out", str(tmp_path / "run"), "--format", "json"])
    out = capsys.readouterr()
    assert rc == 2 and "Spectrum needs a scan" in out.err
    assert json.loads(out.out)["method"] == "spectrum" and not (tmp_path / "run").exists()


def test_out_keeps_the_rows_tests_for_a_code_task(capsys, tmp_path):
    # The held-out split keeps each row's tests, and the plan says the evaluation will run them.
    rows = [
        {
            "prompt": f"Write f{i}(x) returning x times {i}.",
            "completion": f"def f{i}(x):\n    return x * {i}\n",
            "tests": [f"assert f{i}(2) == {2 * i}"],
        }
        for i in range(120)  # 100+: fine-tuning (TW118), so --out writes a plan and a split
    ]
    data = tmp_path / "code.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    answers = _answers(
        tmp_path,
        task="code",
        clear_task=True,
        tried_prompting=True,
        dataset=str(data),
        model="meta-llama/Llama-3.2-1B",
        gpus=[{"name": "RTX 4090", "memory_gib": 24}],
        success={"metric": "tests_pass", "target": 0.5},
    )
    out = tmp_path / "run"
    assert main(["recommend", "--answers", answers, "--out", str(out), "--format", "json"]) == 0
    capsys.readouterr()
    held = [json.loads(line) for line in (out / "data" / "validation.jsonl").read_text().splitlines()]
    assert held
    by_prompt = {r["prompt"]: r for r in rows}
    assert all(r["tests"] == by_prompt[r["prompt"]]["tests"] for r in held)
    evaluation = yaml.safe_load((out / "plan.yaml").read_text())["evaluation"]
    assert evaluation["run_tests"] is True and evaluation["target_metric"] == "tests_pass"
