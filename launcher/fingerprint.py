"""What a checkpoint was made with: the plan's training fields, the data files and the base model.

Stored as `fingerprint.json` when a run starts from scratch; a resume compares the current state
against it and refuses, naming what changed, rather than continuing a different job's optimizer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING
from dataclasses import fields as dataclass_fields
from pathlib import Path

from advisor.errors import UserError
from advisor.plan import TrainingPlan
from launcher.rundir import atomic_write

# Plan fields that do not change what is trained (bookkeeping, cadence, the estimate) or that the
# OOM ladder may change before the first checkpoint exists.
IGNORED_FIELDS = {"reasons", "predicted_peak_gib", "predicted_device_gib", "speed", "save_steps", "save_total_limit",
                  "logging_steps", "version", "eval_steps"}
FILE = "fingerprint.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_identity(model: str) -> str:
    """A hash of the base model's config.json (local directory or HF cache), else its name."""
    p = Path(model).expanduser()
    cfg = p / "config.json" if p.is_dir() else None
    if cfg is None:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model, "config.json")
            cfg = Path(cached) if isinstance(cached, str) else None
        except Exception:  # not a valid repo id: the name itself is the identity
            cfg = None
    return f"config:{_sha256(cfg)}" if cfg is not None and cfg.is_file() else f"name:{model}"


def compute(run_dir: str | Path, plan: TrainingPlan) -> dict:
    run_dir = Path(run_dir)
    fields = {k: v for k, v in plan.to_dict().items() if k not in IGNORED_FIELDS}
    data = {}
    for name in ("train", "validation"):
        rel = getattr(plan.data, name)
        if rel:
            f = run_dir / rel
            data[name] = _sha256(f) if f.is_file() else "missing"
    if plan.dpo is not None and plan.dpo.dataset:
        f = run_dir / plan.dpo.dataset
        data["dpo"] = _sha256(f) if f.is_file() else "missing"
    return {"plan": json.loads(json.dumps(fields, default=str)), "data": data,
            "model": model_identity(plan.model)}


def save(run_dir: str | Path, plan: TrainingPlan) -> None:
    atomic_write(Path(run_dir) / FILE, json.dumps(compute(run_dir, plan), indent=2) + "\n")


def differences(stored: dict, current: dict) -> list[str]:
    """Human-readable list of what changed between two fingerprints."""
    out = []
    sp, cp = stored.get("plan", {}), current.get("plan", {})
    # A field added to the plan after the checkpoint was made, still at its default, changes nothing.
    defaults = {f.name: f.default for f in dataclass_fields(TrainingPlan) if f.default is not MISSING}
    for k in sorted(set(sp) | set(cp)):
        if k not in sp and k in defaults and cp.get(k) == defaults[k]:
            continue
        if sp.get(k) != cp.get(k):
            out.append(f"plan.yaml `{k}`: {sp.get(k)!r} -> {cp.get(k)!r}")
    sd, cd = stored.get("data", {}), current.get("data", {})
    for k in sorted(set(sd) | set(cd)):
        if sd.get(k) != cd.get(k):
            out.append(f"the {k} data file changed (content hash differs)")
    if stored.get("model") != current.get("model"):
        out.append(f"the base model changed ({stored.get('model')} -> {current.get('model')})")
    return out


def check(run_dir: str | Path, plan: TrainingPlan) -> None:
    """Raise `UserError` when the run's checkpoints were made with a different plan, data or model."""
    path = Path(run_dir) / FILE
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{run_dir} has checkpoints but no {FILE}, so they cannot be checked against the plan",
                        "start a fresh run directory with `tunewise recommend --out`") from None
    except ValueError:
        raise UserError(f"{path} is corrupt", "start a fresh run directory with `tunewise recommend --out`") from None
    changed = differences(stored, compute(run_dir, plan))
    if changed:
        raise UserError("refusing to resume: the checkpoints were made with a different job:\n  - "
                        + "\n  - ".join(changed),
                        "restore the original plan/data/model, or start a new run directory "
                        "(`tunewise recommend --out NEW_DIR`)")
