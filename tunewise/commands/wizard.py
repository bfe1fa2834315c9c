"""`tunewise wizard`: answer a few questions in the terminal, get the report, launch the job.

After the questions the wizard prints the brief view (about one screen); the full report is one
question away, and is in the run directory's report.md once one is written.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from advisor.errors import UserError

DEMO = Path("examples") / "demo" / "answers.yaml"
RUNS = Path("runs")  # where the launcher writes run directories by default
WHERE = "Full report: answer y below to show it here; a run directory keeps it as report.md."


def add_parser(sub):
    p = sub.add_parser(
        "wizard",
        help="answer questions in the terminal; get a recommendation and a run",
        description="Asks only what the recommendation needs (pre-filled, detected and "
        "data-implied answers are skipped), prints a one-screen summary (the full report on request), "
        "and offers to launch.",
    )
    p.add_argument("--answers", metavar="FILE", help="pre-fill answers from this YAML file")
    p.add_argument("--save-answers", metavar="FILE", help="write the final answers to this YAML file")
    p.add_argument(
        "--demo", action="store_true", help=f"pre-fill the bundled demo ({DEMO}); press Enter through it"
    )
    p.add_argument(
        "--no-detect", action="store_true", help="do not probe for GPUs (plan for another machine)"
    )
    return p


def demo_answers_path() -> Path:
    """The bundled demo answers (package data `advisor._examples`, the repository's examples/)."""
    from advisor.bundled import demo_answers_path as shipped

    path = shipped()
    if not path.is_file():
        raise UserError(
            f"the demo answers are not at {path}",
            "reinstall tunewise (the demo ships with the package), or pass --answers FILE",
        )
    return path


def _relative_for(path: str | None, answers_file: Path) -> str | None:
    """Store a dataset path relative to the saved file when it lies below it (files move together)."""
    if not path:
        return path
    try:
        return str(Path(path).resolve().relative_to(answers_file.resolve().parent))
    except ValueError:
        return str(Path(path).resolve())


def save_answers(answers, path: str) -> Path:
    from advisor.answers import dump_answers
    from advisor.files import atomic_write

    out = Path(path).expanduser()
    if out.is_dir():
        raise UserError(f"--save-answers {path}: is a directory", "give a file name, e.g. answers.yaml")
    if not out.parent.exists():
        raise UserError(f"--save-answers {path}: folder {out.parent} does not exist", "create it first")
    stored = (
        answers.model_copy(update={"dataset": _relative_for(answers.dataset, out)})
        if answers.dataset
        else answers
    )
    # atomic: a full disk leaves the old file (or none), never half of one
    atomic_write(
        out,
        "# written by `tunewise wizard`; use with `tunewise recommend --answers FILE`\n"
        + dump_answers(stored),
        fix="--save-answers: check that the folder is writable and the disk has free space",
    )
    return out


def _probe(detect: bool):
    """The approach the rules would choose with the answers so far (None when it cannot be computed yet)."""

    def approach(answers) -> str | None:
        try:
            from advisor.recommend import recommend

            return recommend(answers, detect_gpus=detect).decision.approach
        except Exception:  # noqa: BLE001 - a probe only: any gap means "ask the questions"
            return None

    return approach


def full_report_hint(answers_file: str | None) -> str:
    """How to see the full report later: the saved answers file, given back to `recommend`."""
    if answers_file:
        return f"Full report: tunewise recommend --answers {shlex.quote(answers_file)}"
    return (
        "Full report: rerun the wizard with --save-answers ANSWERS.yaml, then "
        "tunewise recommend --answers ANSWERS.yaml"
    )


def show_recommendation(rec, console, prompter) -> bool:
    """The brief view, then the full report if asked for (default no). Returns whether it was shown."""
    from advisor.report.brief import print_brief

    print_brief(console, rec, WHERE)
    if not prompter.confirm("Show the full report here?", False):
        return False
    from advisor.report import print_report

    console.print("")
    print_report(console, rec)
    return True


def _run_dirs() -> set[Path]:
    try:
        return {d for d in RUNS.iterdir() if d.is_dir()}
    except OSError:
        return set()


def _offer_launch(rec, console, prompter, answers_file: str | None, shown: bool = False) -> int:
    def hint() -> None:
        if not shown:
            console.print(full_report_hint(answers_file), markup=False, highlight=False, soft_wrap=True)

    problems = getattr(rec, "problems", None) or []
    if problems:
        console.print("\nNot offering to launch: " + "; ".join(problems), markup=False)
        console.print("Change the answers (e.g. method: auto) and run the wizard again.", markup=False)
        hint()
        return 1
    if rec.plan is None:
        console.print("\nNothing to train: the recommendation does not include fine-tuning.")
        hint()
        return 0
    if not prompter.confirm("Write the run directory and launch now?", True):
        console.print("Not launched.")
        hint()
        return 0
    try:
        from launcher.launch import offer_launch
    except ImportError:
        offer_launch = None
    if offer_launch is not None:
        before = _run_dirs()
        try:
            return int(offer_launch(rec, console) or 0)
        finally:
            # the launcher names the directory (a sibling when the name is taken): the new one is it
            written = sorted(d for d in _run_dirs() - before if (d / "report.md").is_file())
            if len(written) == 1:
                console.print(
                    f"Full report: {written[0] / 'report.md'}", markup=False, highlight=False, soft_wrap=True
                )  # one line, whole: a path to copy
            else:
                hint()
    where = answers_file or "ANSWERS.yaml"
    console.print(
        "\nThe launcher is not available in this installation; nothing was written. "
        "Create the run directory with:"
    )
    console.print(
        f"  tunewise recommend --answers {shlex.quote(where)} --out runs/my-run",
        markup=False,
        highlight=False,
    )
    if not answers_file:
        console.print(
            "(rerun the wizard with --save-answers ANSWERS.yaml to keep these answers)",
            markup=False,
            highlight=False,
        )
    return 0


def run(args) -> int:
    if not sys.stdin.isatty():
        raise UserError(
            "`tunewise wizard` needs an interactive terminal (stdin is not a TTY)",
            "use `tunewise recommend --answers FILE` in scripts and pipes",
        )
    if args.demo and args.answers:
        raise UserError("--demo and --answers both pre-fill the answers", "pass only one of them")
    from advisor.answers import Answers, load_answers
    from advisor.hardware import detect_gpus
    from advisor.wizard import QuestionaryPrompter, Wizard

    source = str(demo_answers_path()) if args.demo else args.answers
    prefill = load_answers(source) if source else Answers()
    detect = not args.no_detect
    detection = detect_gpus() if detect and prefill.gpus is None else None
    saved = False
    try:
        prompter = QuestionaryPrompter()
        # plain print until the report: rich is imported only then, so the first question comes sooner
        wiz = Wizard(prefill, prompter, print, detection, approach_probe=_probe(detect))
        answers = wiz.run()
        answers_file = None
        if args.save_answers:
            answers_file = str(save_answers(answers, args.save_answers))
            saved = True
            print(f"Answers saved to {answers_file}")
        elif source and not wiz.asked:
            answers_file = source  # accepted as pre-filled, nothing added
        from rich.console import Console

        console = Console(highlight=False)
        from advisor.recommend import recommend

        console.print("")
        rec = recommend(answers, detect_gpus=detect and answers.gpus is None)
        shown = show_recommendation(rec, console, prompter)
        return _offer_launch(rec, console, prompter, answers_file, shown)
    except KeyboardInterrupt:
        what = "the answers file was saved; nothing else was written" if saved else "nothing was written"
        print(f"\ntunewise wizard: cancelled ({what}).", file=sys.stderr)
        return 130
