"""Shared builders for the launcher tests: a tiny Llama base, a run directory, data rows."""

from __future__ import annotations

import json
from pathlib import Path

from advisor.plan import DataSpec, DPOSpec, LoraSpec, QuantSpec, SpectrumSpec, TrainingPlan
from launcher.rundir import new_run_dir, write_run_files

ROOT = Path(__file__).resolve().parents[1]
DEMO_ROWS = (ROOT / "examples" / "demo" / "train.jsonl").read_text(encoding="utf-8").splitlines()


def tiny_base(path: Path) -> Path:
    """A 2-layer Llama with the bundled tokenizer (random weights), built by the smoke code itself."""
    from launcher.smoke import build_stand_in

    if not (path / "config.json").exists():
        build_stand_in("no-such/model", path, max_length=256, seed=0)
    return path


def preference_rows(n: int) -> list[str]:
    rows = []
    for line in DEMO_ROWS[:n]:
        msgs = json.loads(line)["messages"]
        user = next(m["content"] for m in msgs if m["role"] == "user")
        good = next(m["content"] for m in msgs if m["role"] == "assistant")
        rows.append(json.dumps({"prompt": user, "chosen": good, "rejected": "Read the docs."}))
    return rows


def make_run(
    parent: Path,
    base: Path,
    method: str = "lora",
    *,
    stage: str = "sft",
    rows: list[str] | None = None,
    n_rows: int = 20,
    **overrides,
) -> Path:
    """A run directory with a data split and a small plan, as `recommend --out` would write it."""
    rd = new_run_dir(parent / f"run-{method}")
    rows = rows if rows is not None else DEMO_ROWS[:n_rows]
    (rd / "data").mkdir()
    (rd / "data" / "train.jsonl").write_text("\n".join(rows[:-4]) + "\n", encoding="utf-8")
    (rd / "data" / "validation.jsonl").write_text("\n".join(rows[-4:]) + "\n", encoding="utf-8")
    plan = TrainingPlan(
        model=str(base),
        method=method,
        stage=stage,
        data=DataSpec(train="data/train.jsonl", validation="data/validation.jsonl"),
        lora=LoraSpec(r=4, alpha=8, dropout=0.0) if method in ("lora", "qlora") else None,
        quantization=QuantSpec(compute_dtype="float32") if method == "qlora" else None,
        spectrum=SpectrumSpec(unfrozen_parameters=[r"^model.layers.1.mlp.down_proj.weight$"])
        if method == "spectrum"
        else None,
        dpo=DPOSpec(learning_rate=1e-3) if "dpo" in stage else None,
        micro_batch_size=2,
        grad_accum=1,
        max_length=128,
        max_steps=4,
        eval_steps=2,
        save_steps=2,
        logging_steps=1,
        bf16=False,
        learning_rate=1e-3,
        warmup_ratio=0.0,
        gradient_checkpointing=True,
    )
    for k, v in overrides.items():
        setattr(plan, k, v)
    write_run_files(rd, plan, {"report.md": "# report\n"})
    return rd
