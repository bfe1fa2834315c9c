"""Answers are validated as the README promises: no silent coercion of strings, numbers or lists."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from advisor.answers import parse_answers
from advisor.errors import UserError


@pytest.mark.parametrize(
    "data, key",
    [
        ({"examples": "2500"}, "examples"),
        ({"preference_pairs": "300"}, "preference_pairs"),
        ({"goals": "privacy"}, "goals"),
        ({"zero_latency": "off"}, "zero_latency"),
        ({"clear_task": "yes"}, "clear_task"),
        ({"tried_prompting": 1}, "tried_prompting"),
        ({"examples": 2500.5}, "examples"),
        ({"gpus": [{"memory_gib": "24"}]}, "gpus.0.memory_gib"),
        ({"gpus": [{"memory_gib": 24, "display": "no"}]}, "gpus.0.display"),
        ({"gpus": [{"memory_gib": 8, "reserve_gib": 8}]}, "gpus.0"),
        ({"preference_dataset": 3}, "preference_dataset"),
    ],
)
def test_wrong_types_are_errors_naming_the_key(data, key):
    with pytest.raises(UserError) as e:
        parse_answers(data)
    assert f"'{key}'" in str(e.value)


def test_the_one_accepted_conversion_is_a_whole_number_for_a_decimal():
    a = parse_answers({"gpus": [{"memory_gib": 24}], "goals": None})
    assert a.gpus[0].memory_gib == 24.0 and a.goals == []


def test_the_cli_exits_2_with_the_key_and_no_traceback(tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text(yaml.safe_dump({"task": "chat", "examples": "2500", "zero_latency": "off"}))
    out = subprocess.run(
        [sys.executable, "-m", "tunewise", "recommend", "--answers", str(f)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "'examples'" in out.stderr and "'zero_latency'" in out.stderr
    assert "Traceback" not in out.stderr
