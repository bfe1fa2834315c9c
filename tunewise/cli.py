"""`tunewise` command line: one sub-command module per verb under `tunewise.commands`.

Each command module exposes `add_parser(subparsers)` and `run(args) -> int`, and imports nothing
heavy at module level (the `--help` path must stay fast). Exit codes: 0 ok; 1 the recommendation or
check says no; 2 bad input; anything else is a crash.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from advisor import __version__
from advisor.errors import TunewiseError, path_error

COMMANDS = [
    "wizard",
    "recommend",
    "estimate",
    "inspect",
    "spectrum",
    "launch",
    "eval",
    "export",
    "rules",
    "env",
]


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad flags already; keep its message but add the fix."""

    def error(self, message):  # pragma: no cover - exercised through the CLI tests
        self.print_usage(sys.stderr)
        self.exit(2, f"tunewise: error: {message}\n  fix: see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tunewise",
        description="Decide whether and how to fine-tune a language model, "
        "following a practitioner's guide; then run the job.",
    )
    parser.add_argument("--version", action="version", version=f"tunewise {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        mod = importlib.import_module(f"tunewise.commands.{name}")
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except TunewiseError as e:
        print(f"tunewise: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        err = path_error(e)  # a name over 255 bytes, a symlink loop: the path is the problem, not the code
        if err is None:
            raise
        print(f"tunewise: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("\ntunewise: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
