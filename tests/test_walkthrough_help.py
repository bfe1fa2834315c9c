"""Every verb's --help as a user reads it: no argparse escapes left in, every flag explained."""

from __future__ import annotations

import pytest

from tunewise.cli import main

VERBS = [
    ["wizard"],
    ["recommend"],
    ["estimate"],
    ["inspect"],
    ["spectrum"],
    ["spectrum", "scan"],
    ["launch"],
    ["export"],
    ["rules"],
    ["env"],
]


@pytest.mark.parametrize("verb", VERBS, ids=" ".join)
def test_help_text_has_no_literal_percent_escapes(capsys, verb):
    with pytest.raises(SystemExit) as e:
        main([*verb, "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "usage: tunewise" in out
    assert "%%" not in out  # descriptions are not %-formatted: 'top P%%' showed as written


def test_every_flag_says_what_it_does():
    import argparse

    from tunewise.cli import build_parser

    silent = []

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
            elif action.help is None:
                silent.append(" ".join([*path, *(action.option_strings or [action.dest])]))

    walk(build_parser(), ["tunewise"])
    assert not silent, f"flags without help text: {silent}"
