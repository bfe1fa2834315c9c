"""`tunewise launch` (to be written)."""

from __future__ import annotations

from advisor.errors import UserError


def add_parser(sub):
    return sub.add_parser("launch", help="(not yet available)")


def run(args) -> int:
    raise UserError("`tunewise launch` is not available yet")
