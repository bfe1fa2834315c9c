"""The import graph is a stack without circles, held by import-linter's contracts in pyproject.toml:
`tunewise -> launcher -> advisor` (a lower layer never imports a higher one) and no two sibling modules
or subpackages import each other, function-level imports included. Lint (ruff) holds the other house
rules, among them: no module-level import of the ML stack outside launcher/."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tunewise", "launcher", "advisor")
BIN = Path(sys.executable).parent


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(root), "PATH": str(BIN)},
        timeout=120,
    )


def _copy_tree(tmp_path: Path) -> Path:
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_hold():
    r = _lint_imports(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 kept, 0 broken" in r.stdout


@pytest.mark.parametrize(
    "plant, broken",
    [
        # the advisor importing the launcher (an upward import), even inside a function
        (
            ("advisor/facts.py", "\n\ndef _planted():\n    from launcher import rundir  # noqa: F401\n"),
            "stack",
        ),
        # a circle between two siblings kept alive by a function-level import (rules already imports facts)
        (
            ("advisor/facts.py", "\n\ndef _planted():\n    from advisor import rules  # noqa: F401\n"),
            "circles",
        ),
        # the launcher importing the command line
        (("launcher/summary.py", "\n\ndef _planted():\n    import tunewise.cli  # noqa: F401\n"), "stack"),
    ],
)
def test_a_planted_violation_breaks_a_contract(tmp_path, plant, broken):
    root = _copy_tree(tmp_path)
    path, code = plant
    with open(root / path, "a", encoding="utf-8") as f:
        f.write(code)
    r = _lint_imports(root)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "1 broken" in r.stdout and "BROKEN" in r.stdout
    line = next(ln for ln in r.stdout.splitlines() if "BROKEN" in ln)
    assert ("lower layer" in line) if broken == "stack" else ("circles" in line), r.stdout


def test_ruff_lint_passes():
    r = subprocess.run(
        [str(BIN / "ruff"), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format_is_applied():
    r = subprocess.run(
        [str(BIN / "ruff"), "format", "--check", "--no-cache", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_bans_module_level_ml_imports_outside_the_launcher(tmp_path):
    pkg = tmp_path / "advisor"
    pkg.mkdir()
    (pkg / "heavy.py").write_text(
        "import torch\n\n\ndef f():\n    import transformers\n\n    return torch, transformers\n"
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    r = subprocess.run(
        [str(BIN / "ruff"), "check", "--no-cache", "advisor"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "TID253" in r.stdout and "`torch`" in r.stdout
    assert "transformers" not in r.stdout  # the import inside the function is allowed
