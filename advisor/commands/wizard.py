"""`tunewise wizard` (to be written)."""

from __future__ import annotations

from advisor.errors import UserError


def add_parser(sub):
    return sub.add_parser("wizard", help="(not yet available)")


def run(args) -> int:
    raise UserError("`tunewise wizard` is not available yet")
