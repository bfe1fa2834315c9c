"""Rule-file validation: each bad file is reported with its name and the problem, all at once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from advisor.errors import UserError
from advisor.rules import load_rules
from advisor.thresholds import rules_root

GOOD = {
    "id": "TW999-test-rule",
    "title": "A test rule",
    "when": "examples < t.min_examples_peft",
    "then": {"recommend": {"approach": "prompting"}},
    "message": "only {examples} examples",
    "why": "because",
    "source": "When to Fine-Tune Versus Alternative Approaches",
    "examples": {"fires": [{"examples": 3}], "does_not_fire": [{"examples": 300}]},
}


@pytest.fixture
def root(tmp_path) -> Path:
    shutil.copy(rules_root() / "thresholds.yaml", tmp_path / "thresholds.yaml")
    return tmp_path


def _write(root: Path, name: str, data) -> None:
    p = root / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")


def _problems(root: Path) -> str:
    with pytest.raises(UserError) as e:
        load_rules(root)
    return str(e.value)


def test_a_good_rule_loads(root):
    _write(root, "sub/TW999-test-rule.yaml", GOOD)
    (rule,) = load_rules(root)
    assert rule.id == "TW999-test-rule" and rule.variables == ("examples",) and rule.layer == 0


CASES = [
    ({"colour": "red"}, "unknown key 'colour'"),
    ({"why": None}, "'why' must be a non-empty string"),
    ({"when": "examples <"}, "CEL does not compile"),
    ({"when": "exampels < t.min_examples_peft"}, "unknown fact 'exampels'"),
    ({"when": "examples < t.min_exemples"}, "unknown threshold 't.min_exemples'"),
    ({"when": "examples < 100"}, "numeric literal"),
    ({"then": {"recommend": {"approach": "finetune"}}}, "unknown option 'finetune'"),
    ({"then": {"launch": True}}, "unknown effect 'launch'"),
    ({"then": {"set": {"learning_rate": 0.0002}}}, "numeric literal 0.0002"),
    ({"then": {"set": {"learnin_rate": "t.lr_peft"}}}, "unknown plan field 'learnin_rate'"),
    (
        {"when": "fine_tuning && examples > t.min_examples_peft", "then": {"recommend": {"approach": "rag"}}},
        "cannot change it",
    ),
    ({"source": "Chapter 3"}, "must be a guide section heading"),
    ({"id": "my rule"}, "must look like TW123-kebab-case-name"),
    ({"message": "{exampels} examples"}, "message: unknown fact 'exampels'"),
    ({"examples": {"fires": []}}, "examples must have exactly the keys"),
    (
        {"examples": {"fires": [], "does_not_fire": [{"examples": 3}]}},
        "examples.fires must be a non-empty list",
    ),
]


@pytest.mark.parametrize(("change", "expected"), CASES, ids=[c[1] for c in CASES])
def test_each_bad_rule_is_named_with_its_problem(root, change, expected):
    _write(root, "approach/TW999-test-rule.yaml", {**GOOD, **change})
    msg = _problems(root)
    assert "approach/TW999-test-rule.yaml" in msg and expected in msg, msg


def test_missing_key(root):
    data = dict(GOOD)
    del data["source"]
    _write(root, "TW999-test-rule.yaml", data)
    assert "TW999-test-rule.yaml: missing key 'source'" in _problems(root)


def test_every_problem_in_every_file_is_reported_at_once(root):
    _write(root, "a/TW901-one.yaml", {**GOOD, "id": "TW901-one", "when": "nope <", "colour": 1})
    _write(root, "b/TW902-two.yaml", {**GOOD, "id": "TW902-two", "source": "blog"})
    _write(root, "b/TW903-three.yaml", "id: [unclosed")
    _write(root, "c/TW904-dup.yaml", {**GOOD, "id": "TW904-dup"})
    _write(root, "c/TW904-dup-again.yaml", {**GOOD, "id": "TW904-dup"})
    msg = _problems(root)
    for needle in (
        "a/TW901-one.yaml: unknown key 'colour'",
        "a/TW901-one.yaml: when: CEL does not compile",
        "b/TW902-two.yaml: source 'blog'",
        "b/TW903-three.yaml: not valid YAML",
        "number TW904 already used",
    ):
        assert needle in msg, (needle, msg)
    assert msg.startswith("5 problem(s)")  # two in TW901, one in each of the others


def test_two_rules_with_one_number_are_refused(root):
    # Reports cite rules by their number alone (the brief view's `TW103`): two different ids that share a
    # number would make those citations ambiguous.
    _write(root, "TW905-one.yaml", {**GOOD, "id": "TW905-one"})
    _write(root, "TW905-other.yaml", {**GOOD, "id": "TW905-other"})
    assert "number TW905 already used by TW905-one.yaml" in _problems(root)


def test_bad_thresholds_file(root):
    (root / "thresholds.yaml").write_text(
        "x: {value: lots, source: measurement, note: n}\n", encoding="utf-8"
    )
    _write(root, "TW999-test-rule.yaml", GOOD)
    assert "'x'.value must be a number" in _problems(root)


def test_empty_folder_is_an_error(root):
    assert "no rule files found" in _problems(root)
