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
IGNORED_FIELDS = {
    "reasons",
    "predicted_peak_gib",
    "predicted_device_gib",
    "speed",
    "save_steps",
    "save_total_limit",
    "logging_steps",
    "version",
    "eval_steps",
}
FILE = "fingerprint.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_dir(model: str) -> Path | None:
    """The folder holding the base model's files: a local directory, or its HF-cache snapshot."""
    p = Path(model).expanduser()
    if p.is_dir():
        return p
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json")
        return Path(cached).parent if isinstance(cached, str) else None
    except Exception:  # not a valid repo id: the name itself is the identity
        return None


def model_identity(model: str) -> str:
    """A hash of the base model's config.json (local directory or HF cache), else its name."""
    d = model_dir(model)
    cfg = d / "config.json" if d is not None else None
    return f"config:{_sha256(cfg)}" if cfg is not None and cfg.is_file() else f"name:{model}"


_SAMPLE = 64 << 10  # bytes read at each sampled offset of a weight file
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer_config.json",
)
_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


def weights_digest(d: Path) -> str | None:
    """A cheap content digest of the weights: each file's name and size, its whole safetensors header
    and 64 KiB sampled at nine places through the data. Other weights under the same config.json
    (another fine-tune, a re-initialised copy) differ in the sampled bytes; reading costs well under a
    second even for a 70B model."""
    files = sorted([*d.glob("*.safetensors"), *d.glob("*.bin"), *d.glob("*.pt"), *d.glob("*.gguf")])
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name}:{size}\n".encode())
        with open(f, "rb") as fh:
            if f.suffix == ".safetensors":
                head = fh.read(8)
                n = int.from_bytes(head, "little") if len(head) == 8 else 0
                h.update(head + fh.read(min(n, 100 << 20)))
            for i in range(9):
                fh.seek(max(0, (size - _SAMPLE) * i // 8))
                h.update(fh.read(_SAMPLE))
    return h.hexdigest()


def tokenizer_digests(d: Path) -> tuple[str | None, str | None]:
    """Hashes of the tokenizer files and of the chat template (a file of its own or the
    `chat_template` key of tokenizer_config.json), each None when the model folder has none."""
    tok, tpl = hashlib.sha256(), hashlib.sha256()
    found_tok = found_tpl = False
    for name in _TOKENIZER_FILES:
        f = d / name
        if not f.is_file():
            continue
        data = f.read_bytes()
        if name == "tokenizer_config.json":
            try:
                cfg = json.loads(data)
            except ValueError:
                cfg = None
            if isinstance(cfg, dict):
                if "chat_template" in cfg:
                    tpl.update(json.dumps(cfg.pop("chat_template"), sort_keys=True).encode())
                    found_tpl = True
                data = json.dumps(cfg, sort_keys=True).encode()
        tok.update(name.encode() + b"\0" + data)
        found_tok = True
    for name in _TEMPLATE_FILES:
        f = d / name
        if f.is_file():
            tpl.update(name.encode() + b"\0" + f.read_bytes())
            found_tpl = True
    return (tok.hexdigest() if found_tok else None), (tpl.hexdigest() if found_tpl else None)


def model_parts(model: str) -> dict:
    """Fingerprint keys for the base model beyond its config: weights, tokenizer, chat template."""
    d = model_dir(model)
    if d is None:
        return {}
    tok, tpl = tokenizer_digests(d)
    return {"model_weights": weights_digest(d), "tokenizer": tok, "chat_template": tpl}


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
    return {
        "plan": json.loads(json.dumps(fields, default=str)),
        "data": data,
        "model": model_identity(plan.model),
        **model_parts(plan.model),
    }


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
    what = {
        "model_weights": "the base model's weights changed (same config.json, different content)",
        "tokenizer": "the base model's tokenizer files changed",
        "chat_template": "the base model's chat template changed",
    }
    for key, message in what.items():
        # A fingerprint made before these keys existed has none of them: nothing to compare.
        if key in stored and stored.get(key) != current.get(key):
            out.append(message)
    return out


def check(run_dir: str | Path, plan: TrainingPlan) -> None:
    """Raise `UserError` when the run's checkpoints were made with a different plan, data or model."""
    path = Path(run_dir) / FILE
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"{run_dir} has checkpoints but no {FILE}, so they cannot be checked against the plan",
            "start a fresh run directory with `tunewise recommend --out`",
        ) from None
    except (OSError, ValueError):
        raise UserError(
            f"{path} is corrupt", "start a fresh run directory with `tunewise recommend --out`"
        ) from None
    if not isinstance(stored, dict) or not all(isinstance(stored.get(k, {}), dict) for k in ("plan", "data")):
        raise UserError(
            f"{path} is corrupt (not a fingerprint object)",
            "start a fresh run directory with `tunewise recommend --out`",
        )
    changed = differences(stored, compute(run_dir, plan))
    if changed:
        raise UserError(
            "refusing to resume: the checkpoints were made with a different job:\n  - "
            + "\n  - ".join(changed),
            "restore the original plan/data/model, or start a new run directory "
            "(`tunewise recommend --out NEW_DIR`)",
        )
