"""Ship what the tests test: the wheel built from this checkout, installed into a fresh virtualenv, runs
the command line from a folder outside the checkout (help, rules, a persona's recommendation, the demo
wizard through a pseudo-terminal and a smoke run), with the rules, the demo and the templates it ships."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pexpect
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _declared() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_every_package_in_the_tree_is_declared():
    """The package list is written out (two data packages are mapped from top-level folders); it must
    name every folder with an `__init__.py` under the three layers, and nothing else."""
    declared = set(_declared()["packages"])
    in_tree = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("tunewise", "launcher", "advisor")
        for p in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    mapped = set(_declared()["package-dir"])
    assert in_tree and in_tree == declared - mapped, in_tree ^ (declared - mapped)
    for pkg, folder in _declared()["package-dir"].items():
        assert (ROOT / folder / "__init__.py").is_file(), pkg


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A wheel built from the checkout, installed with pip into a new virtualenv. The new environment
    sees the test environment's third-party packages through a .pth line (torch and friends are not
    installed twice), but not its editable tunewise: that one's finder is a .pth file of its own, which a
    plain path line does not run."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy of what git tracks, so the build leaves nothing in the checkout
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next((tmp / "dist").glob("tunewise-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return venv


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    return dict(
        env,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        TERM="xterm",
        COLUMNS="100",
        LINES="40",
        PROMPT_TOOLKIT_NO_CPR="1",
    )


def _tw(venv: Path, cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(venv / "bin" / "tunewise"), *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_wheel_holds_the_data_it_needs(installed):
    wheel = next(installed.parent.glob("dist/tunewise-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "advisor/_rules/thresholds.yaml",
        "advisor/_rules/models.yaml",
        "advisor/_examples/demo/answers.yaml",
        "advisor/_examples/demo/train.jsonl",
        "advisor/_examples/demo/tokenizer/tokenizer.json",
        "advisor/_examples/answers/brand-voice-chatbot-24gb.yaml",
        "launcher/templates/launch.sh",
        "launcher/templates/slurm.sbatch",
        "tunewise/commands/wizard.py",
    ):
        assert needed in names, needed
    assert sum(n.startswith("advisor/_rules/") and n.endswith(".yaml") for n in names) > 80


def test_installed_command_line_from_outside_the_checkout(installed, tmp_path):
    where = subprocess.run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "import tunewise, advisor, launcher; "
            "print(tunewise.__file__, advisor.__file__, launcher.__file__)",
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(ROOT) not in where and where.count(str(installed)) == 3, where

    r = _tw(installed, tmp_path, "--help")
    assert r.returncode == 0 and "recommend" in r.stdout, r.stderr
    r = _tw(installed, tmp_path, "rules")
    assert r.returncode == 0 and re.search(r"\b\d+ rules\b", r.stdout), r.stdout + r.stderr
    persona = ROOT / "examples" / "answers" / "brand-voice-chatbot-24gb.yaml"
    (tmp_path / "answers.yaml").write_text(persona.read_text(encoding="utf-8"), encoding="utf-8")
    r = _tw(installed, tmp_path, "recommend", "--answers", "answers.yaml", "--no-detect", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert '"approach": "fine-tune"' in r.stdout
    r = subprocess.run(
        [str(installed / "bin" / "python"), "-m", "tunewise", "--version"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and r.stdout.startswith("tunewise "), r.stderr


def test_installed_demo_wizard_and_smoke_run(installed, tmp_path):
    """`wizard --demo` through a pty from an empty folder: the demo's answers, data and tokenizer come from
    the installed package; it writes the run directory, then `launch --smoke` trains the stand-in."""
    child = pexpect.spawn(
        str(installed / "bin" / "tunewise"),
        ["wizard", "--demo", "--no-detect"],
        cwd=str(tmp_path),
        env=_env(),
        dimensions=(40, 100),
        encoding="utf-8",
        timeout=120,
    )
    child.expect("Use these answers")
    child.send("\r")
    child.expect("usable rows")
    child.expect("Which GPU will you train on")
    child.send("\r")
    child.expect("How many of them")
    child.send("\r")
    child.expect("Show the full report here")
    child.send("\r")
    child.expect("Write the run directory and launch now")
    child.send("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    demo = subprocess.run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "from advisor.bundled import demo_answers_path; print(demo_answers_path())",
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert str(installed) in demo
    r = _tw(installed, tmp_path, "recommend", "--answers", demo, "--no-detect", "--out", "runs/demo")
    assert r.returncode == 0, r.stderr
    r = _tw(installed, tmp_path, "launch", "runs/demo", "--smoke", "--max-steps", "2", timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert list((tmp_path / "runs" / "demo").glob("smoke*/summary.json"))
