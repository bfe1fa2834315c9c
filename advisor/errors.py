"""The two kinds of expected failure, mapped to exit codes by the CLI only.

Anything else that escapes is a crash (a bug) and keeps its traceback.
"""

from __future__ import annotations


class TunewiseError(Exception):
    """Base class: a message for the user and, where we know it, how to fix it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"


class UserError(TunewiseError):
    """Bad input: a file, flag, answer or path the user can correct. Exit code 2."""

    exit_code = 2


class CheckFailed(TunewiseError):
    """The recommendation or a check says no (does not fit, data unusable). Exit code 1."""

    exit_code = 1
