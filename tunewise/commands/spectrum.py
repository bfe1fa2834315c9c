"""`tunewise spectrum scan MODEL_DIR`: score layers by signal-to-noise ratio, write `unfrozen_parameters`."""

from __future__ import annotations

import json
import sys

from advisor.errors import UserError


def add_parser(sub):
    p = sub.add_parser(
        "spectrum",
        help="Spectrum: choose the layers to train by signal-to-noise ratio",
        description="Spectrum trains only the most informative layers; `scan` finds them.",
    )
    verbs = p.add_subparsers(dest="spectrum_command", metavar="SUBCOMMAND")
    s = verbs.add_parser(
        "scan",
        help="score a local checkpoint's layers and write an unfrozen_parameters YAML",
        description="Reads MODEL_DIR's safetensors one tensor at a time, scores every layer "
        "weight, and keeps the top P% of layers per module type. Scores are cached by the "
        "weight files' content, so a rescan (any --top-percent) is quick.",
    )
    s.add_argument(
        "model_dir", metavar="MODEL_DIR", help="local directory with model.safetensors or shards + index"
    )
    s.add_argument(
        "--top-percent",
        type=float,
        default=30.0,
        metavar="P",
        help="share of each module type's layers to unfreeze (default 30, as in the guide)",
    )
    s.add_argument("--device", default="auto", help="cpu, cuda or auto (default: cuda when torch sees a GPU)")
    s.add_argument(
        "--out",
        metavar="FILE",
        help="YAML to write (default MODEL_DIR/spectrum_<P>.yaml, "
        "or ./spectrum_<P>.yaml when MODEL_DIR is read-only)",
    )
    s.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="text (tables per module type) or json (scores and unfrozen names on stdout)",
    )
    s.add_argument(
        "--embeddings",
        action="store_true",
        help="also unfreeze embed_tokens and lm_head (the reference tool always does; costs memory)",
    )
    s.add_argument("--no-cache", action="store_true", help="rescore even when cached scores exist")
    return p


def run(args) -> int:
    if getattr(args, "spectrum_command", None) != "scan":
        raise UserError("`tunewise spectrum` needs a subcommand", "run `tunewise spectrum scan MODEL_DIR`")
    from advisor.spectrum import default_out_path, scan, write_unfrozen_yaml

    with _progress() as progress:
        result = scan(
            args.model_dir,
            top_percent=args.top_percent,
            device=args.device,
            progress=progress,
            use_cache=not args.no_cache,
            include_embeddings=args.embeddings,
        )
    out = write_unfrozen_yaml(result, args.out or default_out_path(args.model_dir, args.top_percent))
    if args.format == "json":
        print(json.dumps({**result.to_json(), "yaml": str(out)}, indent=2))
    else:
        _print_text(result, out)
    return 0


class _progress:
    """A rich bar on a terminal's stderr; a few plain lines when stderr is a file or pipe."""

    def __enter__(self):
        self.bar = None
        self.tasks: dict[str, int] = {}
        self.last: dict[str, int] = {}
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.start()
        return self

    def __call__(self, stage: str, done: int, total: int) -> None:
        label = "hashing weight files" if stage == "hash" else "scoring layer weights"
        if self.bar is not None:
            if stage not in self.tasks:
                self.tasks[stage] = self.bar.add_task(label, total=total)
            self.bar.update(self.tasks[stage], completed=done)
            return
        decile = 10 * done // max(total, 1)
        if self.last.get(stage, -1) < decile:  # at most 11 lines per stage
            self.last[stage] = decile
            count = f"{done / 1e9:.2f}/{total / 1e9:.2f} GB" if stage == "hash" else f"{done}/{total}"
            print(f"tunewise: {label}: {count}", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


def _print_text(result, out) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    total, train = result.total_params, result.trainable_params
    how = "cached scores" if result.cache_hit else f"scored on {result.device}"
    methods = ", ".join(f"{n} by {k}" for k, n in result.methods.items() if n)
    console.print(
        f"[bold]Spectrum scan[/] {result.model_dir}: {len(result.scores)} layer weights in "
        f"{result.n_layers} layers ({how}{'; ' + methods if methods else ''}), {result.seconds:.1f} s"
    )
    console.print(
        f"Top {result.top_percent:g}% per module type: {train:,} of {total:,} parameters trainable "
        f"({100 * train / max(total, 1):.1f}%)"
    )
    for t in sorted(result.selected):
        ranked = result.by_type[t]
        chosen = result.selected[t]
        table = Table(
            "layer", "SNR score", title=f"{t}: {len(chosen)} of {len(ranked)} layers", title_justify="left"
        )
        for layer, score in chosen:
            table.add_row(str(layer), f"{score:.4g}")
        if len(chosen) < len(ranked):
            layer, score = ranked[len(chosen)]
            table.add_row(f"[dim]{layer} (best left frozen)[/]", f"[dim]{score:.4g}[/]")
        console.print(table)
    console.print(f"unfrozen_parameters written to {out}")
