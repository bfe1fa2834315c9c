"""`tunewise inspect DATA`: check a dataset before any GPU time is spent.

Exit codes: 0 the data is usable (warnings or not); 1 no usable rows; 2 bad input (missing or
unreadable file, not UTF-8, unknown format without --column-map, a tokenizer that cannot be loaded).
"""

from __future__ import annotations

import json
import sys

from advisor.errors import UserError
from tunewise.commands.argtypes import positive_int


def add_parser(sub):
    p = sub.add_parser(
        "inspect",
        help="check a dataset: format, bad rows, duplicates, token lengths",
        description="Check a dataset (JSONL, JSON, CSV, Parquet, a save_to_disk directory) "
        "before training: format, invalid rows, duplicates, leakage, token lengths.",
    )
    p.add_argument("data", metavar="DATA", help="the dataset file or directory")
    who = p.add_mutually_exclusive_group()
    who.add_argument(
        "--model",
        metavar="M",
        help="model whose tokenizer measures token lengths "
        "(a local directory or a model in the Hugging Face cache; skipped if not found)",
    )
    who.add_argument("--tokenizer", metavar="PATH", help="a local tokenizer directory (must load)")
    p.add_argument(
        "--max-length",
        type=positive_int,
        metavar="N",
        help="sequence length to check truncation against (default: the recommended one)",
    )
    p.add_argument(
        "--column-map",
        metavar="K=V,...",
        help="map your columns onto known names, e.g. prompt=question,completion=answer",
    )
    p.add_argument("--validation", metavar="FILE", help="a separate validation file (checked for leakage)")
    p.add_argument("--max-rows", type=positive_int, metavar="N", help="read only the first N rows")
    p.add_argument("--format", choices=["text", "json"], default="text", help="output format (text)")
    return p


def run(args) -> int:
    from advisor.data import inspect_dataset, parse_column_map

    column_map = parse_column_map(args.column_map)
    tokenizer, note = _tokenizer(args)
    report = inspect_dataset(
        args.data,
        tokenizer=tokenizer,
        max_length=args.max_length,
        column_map=column_map,
        max_rows=args.max_rows,
        validation=args.validation,
    )
    if note:
        report.warnings.append(note)
    if args.format == "json":
        json.dump(report.to_dict(), sys.stdout, default=_jsonable, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        from rich.console import Console

        from advisor.data.render import render

        Console().print(render(report))
    return 0 if report.usable else 1


def _tokenizer(args):
    """(tokenizer or spec, note): --tokenizer must load; --model is best effort, with a note if not found."""
    if args.tokenizer:
        return args.tokenizer, None
    if not args.model:
        return None, None
    from advisor.data.tokens import load_tokenizer

    places = [args.model]
    try:  # a catalog name: look for its hub id in the local cache too
        from advisor.models import resolve_model

        facts = resolve_model(args.model)
        places += [p for p in (facts.path, facts.name) if p and p not in places]
    except UserError:
        pass
    error = None
    for place in places:
        try:
            return load_tokenizer(place, what="tokenizer for the model"), None
        except UserError as e:
            error = error or e
    return None, (
        f"no tokenizer for {args.model} found locally, so no token statistics "
        f"({error.message.split(': ', 1)[-1][:120]}); pass --tokenizer DIR"
    )


def _jsonable(o):
    from dataclasses import asdict, is_dataclass

    if is_dataclass(o):
        return asdict(o)
    return str(o)
