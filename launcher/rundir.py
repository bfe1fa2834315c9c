"""The run directory: created once, never overwritten, every file written atomically.

A run directory holds everything one training job needs and produces:

    plan.yaml         the resolved training config (the single source of truth)
    launch.sh         the exact command that runs it
    slurm.sbatch      the same job for a Slurm cluster (one or more nodes)
    accelerate.yaml   only when the plan uses more than one GPU
    report.md/.json   the recommendation that produced the plan
    data/             the train/validation split
    output/           checkpoints per stage; adapter/ or model/ at the end
    metrics.jsonl     one JSON object per log event, appended while training runs
    summary.json      status, losses, measured vs predicted peak memory
    eval.json         the held-out evaluation (tunewise eval; also at the end of the job), with
                      eval_loss.png and eval_metrics.png
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from advisor import files
from advisor.errors import UserError
from advisor.plan import TrainingPlan
from launcher import jobfiles

# Environment variables whose values must never reach a file we write (issue 8: no secrets on disk).
_SECRET_NAME = re.compile(r"(TOKEN|API_KEY|SECRET|PASSWORD|ACCESS_KEY|PRIVATE_KEY)", re.I)
# Whole words only, for dropping variables from a job's environment (TOKENIZERS_PARALLELISM is no secret).
_SECRET_WORD = re.compile(r"(^|_)(TOKEN|API_KEY|SECRET|PASSWORD|ACCESS_KEY|PRIVATE_KEY)($|_)", re.I)


def is_secret_name(name: str) -> bool:
    """True for HF_TOKEN, WANDB_API_KEY, AWS_SECRET_ACCESS_KEY and the like."""
    return bool(_SECRET_WORD.search(name))


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """Values of secret-looking variables (HF_TOKEN, WANDB_API_KEY, ...) worth redacting, in `env`
    (default: this process's environment)."""
    return [
        v for k, v in (os.environ if env is None else env).items() if _SECRET_NAME.search(k) and len(v) >= 8
    ]


def redact(text: str) -> str:
    """Replace any secret environment value found in `text` with a marker."""
    for value in secret_values():
        if value in text:
            text = text.replace(value, "[redacted]")
    return text


def final_dir(run_dir: Path, plan: TrainingPlan, stage: str, *, last: bool) -> Path:
    """Where a stage's result goes: adapter/ (LoRA, QLoRA) or model/ for the last stage, else output/STAGE/final."""
    if not last:
        return run_dir / "output" / stage / "final"
    return run_dir / ("adapter" if plan.method in ("lora", "qlora") else "model")


def atomic_write(path: str | Path, content: str | bytes, *, mode: int | None = None) -> Path:
    """`advisor.files.atomic_write` (whole or not at all) for run-directory files: text is redacted of
    secrets first. A full disk or unwritable directory is a `UserError`."""
    return files.atomic_write(path, redact(content) if isinstance(content, str) else content, mode=mode)


def new_run_dir(path: str | Path) -> Path:
    """Create the run directory `path`; if it exists (even empty) leave it alone and create the first
    free sibling `path-2`, `path-3`, ... instead. Returns the directory created."""
    base = Path(path).expanduser()
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(
            f"cannot create {base.parent}: {e.strerror or e}", "choose a writable location"
        ) from None
    candidate, n = base, 1
    while True:
        try:
            candidate.mkdir()  # exist_ok=False: atomic claim, so two writers never share a directory
            return candidate
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")
        except OSError as e:
            raise UserError(
                f"cannot create {candidate}: {e.strerror or e}", "choose a writable location"
            ) from None


def write_run_files(run_dir: str | Path, plan: TrainingPlan, extra: dict[str, str]) -> None:
    """Write plan.yaml, launch.sh, slurm.sbatch, accelerate.yaml (several GPUs) and each `extra` file
    (name -> text, e.g. report.md) into `run_dir`, each atomically."""
    run_dir = Path(run_dir)
    plan.validate(str(run_dir / "plan.yaml"))
    atomic_write(run_dir / "plan.yaml", jobfiles.plan_yaml(plan))
    atomic_write(run_dir / "launch.sh", jobfiles.launch_sh(plan), mode=0o755)
    atomic_write(run_dir / "slurm.sbatch", jobfiles.slurm_sbatch(plan), mode=0o755)
    if plan.n_gpus > 1:
        atomic_write(run_dir / "accelerate.yaml", jobfiles.accelerate_yaml(plan))
    for name, text in extra.items():
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise UserError(f"refusing to write {name!r} outside the run directory", "use a plain file name")
        atomic_write(run_dir / name, text)


def write_recommendation(rec, out_dir: str | Path) -> Path:
    """Write a recommendation into a new run directory (used by `recommend --out` and the wizard).

    `rec` is `advisor.recommend.Recommendation(facts, decision, plan)`. The report is always written;
    when the recommendation includes fine-tuning, the data split, plan.yaml and launch files too.
    Returns the run directory actually created (a sibling when `out_dir` already exists).
    """
    import json

    from advisor.recommend import recommendation_json, spectrum_scan_missing
    from advisor.report import render

    missing = spectrum_scan_missing(rec.plan)
    if missing is not None:
        raise missing
    run_dir = new_run_dir(out_dir)
    try:
        plan: TrainingPlan | None = rec.plan
        if plan is not None and plan.data.source and not plan.data.train:
            _write_split(plan, run_dir)
        payload = recommendation_json(rec)
        extra = {
            "report.md": render(rec, "markdown"),
            "report.json": payload if isinstance(payload, str) else json.dumps(payload, indent=2) + "\n",
        }
        if plan is None:
            for name, text in extra.items():
                atomic_write(run_dir / name, text)
        else:
            write_run_files(run_dir, plan, extra)
    except BaseException:
        # The directory was created a moment ago by this call: a full disk (or Ctrl-C) halfway must not
        # leave a run directory that looks complete. Earlier directories are never touched.
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return run_dir


def _write_split(plan: TrainingPlan, run_dir: Path) -> None:
    """Split the user's dataset into run_dir/data and point the plan at the copies (relative paths)."""
    from advisor.data import write_split

    source = Path(plan.data.source).expanduser().resolve()
    result = write_split(
        source,
        run_dir / "data",
        column_map=plan.data.column_map,
        seed=plan.seed,
        val_fraction=plan.data.validation_fraction,
        val_max_rows=plan.data.validation_max_rows,
    )
    plan.data.train = _relative(result.train, run_dir)
    plan.data.validation = _relative(result.validation, run_dir) if result.validation else None
    plan.data.format = result.format  # the normalised format the split was written in
    if plan.dpo is not None and plan.dpo.source and not plan.dpo.dataset:  # SFT file + preference file
        pref = write_split(
            Path(plan.dpo.source).expanduser().resolve(),
            run_dir / "data" / "preference",
            seed=plan.seed,
            val_fraction=plan.data.validation_fraction,
            val_max_rows=plan.data.validation_max_rows,
        )
        plan.dpo.dataset = _relative(pref.train, run_dir)
        plan.dpo.validation = _relative(pref.validation, run_dir) if pref.validation else None


def _relative(p: str | Path, run_dir: Path) -> str:
    """A path as the plan stores it: relative to the run directory, so the directory can be moved."""
    p = Path(p)
    if not p.is_absolute() and (run_dir / p).exists():
        return str(p)
    return os.path.relpath(p.resolve(), run_dir.resolve())
