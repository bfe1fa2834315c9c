"""Answers-file cases found by walking through tunewise as a user: wrong types that pydantic's lax
mode let through, and a relative dataset path reported where the user did not put it."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import yaml

from tunewise.cli import main


def _answers(folder: Path, **data) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / "answers.yaml"
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    return p


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"task": "chat", "examples": True}, "'examples'"),  # was read as 1 example
        ({"task": "chat", "preference_pairs": True}, "'preference_pairs'"),
        ({"task": "chat", "gpus": [{"memory_gib": True}]}, "'gpus.0.memory_gib'"),  # was a 1 GiB GPU
    ],
)
def test_true_false_where_a_number_belongs_is_an_error(capsys, tmp_path, data, key):
    rc = main(["recommend", "--answers", str(_answers(tmp_path, **data)), "--no-detect"])
    err = capsys.readouterr().err
    assert rc == 2 and key in err and "not true/false" in err and "Traceback" not in err


def test_numbers_still_accepted(capsys, tmp_path):
    rc = main(
        [
            "recommend",
            "--answers",
            str(_answers(tmp_path, task="chat", examples=40, gpus=[{"memory_gib": 24}])),
            "--no-detect",
            "--format",
            "json",
        ]
    )
    assert rc == 0, capsys.readouterr().err


def test_missing_relative_dataset_is_named_at_the_answers_folder(capsys, tmp_path):
    answers = _answers(tmp_path / "project", task="chat", dataset="data/train.jsonl")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with contextlib.chdir(elsewhere):
        rc = main(["recommend", "--answers", str(answers), "--no-detect"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"dataset file not found: {tmp_path / 'project' / 'data' / 'train.jsonl'}" in err


def _pref_rows(n: int) -> str:
    import json

    return "".join(
        json.dumps(
            {"prompt": f"Question {i}?", "chosen": f"A careful answer {i}.", "rejected": "Read the docs."}
        )
        + "\n"
        for i in range(n)
    )


def test_dpo_alone_does_not_get_instruction_data_warnings(capsys, tmp_path):
    # 300 preference pairs and no instruction rows: the plan is DPO alone, so "0 instruction examples
    # for a chat task" and "Only 0 instruction examples: overfitting ... learning rate 1e-4" were wrong.
    import json

    (tmp_path / "pref.jsonl").write_text(_pref_rows(300), encoding="utf-8")
    answers = _answers(
        tmp_path,
        task="chat",
        goals=["tone-style"],
        clear_task=True,
        tried_prompting=True,
        dataset="pref.jsonl",
        model="llama-3.2-1b",
        gpus=[{"memory_gib": 80}],
    )
    assert main(["recommend", "--answers", str(answers), "--no-detect", "--format", "json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["stage"] == "dpo" and "TW302-dpo-only" in j["fired"]
    assert not {"TW401-data-size-medium-task", "TW600-small-data-overfitting"} & set(j["fired"])
    assert not any("0 instruction examples" in w for w in j["warnings"])


def test_small_sft_data_still_gets_them(capsys, tmp_path):
    import json

    answers = _answers(
        tmp_path,
        task="chat",
        goals=["tone-style"],
        clear_task=True,
        tried_prompting=True,
        examples=400,
        model="llama-3.2-1b",
        gpus=[{"memory_gib": 80}],
    )
    assert main(["recommend", "--answers", str(answers), "--no-detect", "--format", "json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["stage"] == "sft"
    assert {"TW401-data-size-medium-task", "TW600-small-data-overfitting"} <= set(j["fired"])


def test_missing_relative_model_dir_is_named_at_the_answers_folder(capsys, tmp_path):
    answers = _answers(tmp_path / "project", task="chat", examples=2000, model="./models/mine")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with contextlib.chdir(elsewhere):
        rc = main(["recommend", "--answers", str(answers), "--no-detect"])
    assert rc == 2
    assert f"unknown model '{tmp_path / 'project' / 'models' / 'mine'}'" in capsys.readouterr().err
