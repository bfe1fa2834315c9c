"""Importing the advisor or running `tunewise --help` must not load the heavy ML stack."""

import subprocess
import sys

HEAVY = ["torch", "transformers", "peft", "trl", "datasets", "bitsandbytes", "accelerate"]

PROBE = """
import sys
{stmt}
heavy = {heavy!r}
print("LOADED:" + ",".join(m for m in heavy if m in sys.modules))
"""


def _loaded(stmt: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(stmt=stmt, heavy=HEAVY)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("LOADED:")][-1]
    return [m for m in line[len("LOADED:") :].split(",") if m]


def test_import_advisor_is_light():
    assert _loaded("import advisor, tunewise.cli, advisor.answers, advisor.plan, advisor.hardware") == []


def test_help_is_light():
    stmt = "from tunewise.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert _loaded(stmt) == []


def test_every_command_help_is_light():
    from tunewise.cli import COMMANDS

    for name in COMMANDS:
        stmt = f"from tunewise.cli import main\ntry:\n    main([{name!r}, '--help'])\nexcept SystemExit:\n    pass"
        assert _loaded(stmt) == [], name
