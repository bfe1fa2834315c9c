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


# A path the user gave that the operating system cannot even look up: bad input, not a crash.
_PATH_ERRNOS = {
    36: "a file or folder name in it is too long (255 bytes at most)",  # ENAMETOOLONG
    40: "it loops through symlinks",
}  # ELOOP


def path_error(e: OSError) -> UserError | None:
    """The `UserError` for an OSError that a user-given path caused, or None for any other OSError."""
    why = _PATH_ERRNOS.get(e.errno or 0)
    if why is None:
        return None
    name = str(e.filename)
    shown = name if len(name) <= 120 else f"{name[:60]}…{name[-40:]} ({len(name)} characters)"
    return UserError(f"cannot use the path {shown}: {why}", "use a shorter path (or fix the link)")
