"""Do the base weights move? The real job (plan.yaml -> launcher.train) at Spectrum/full fine-tuning's
learning rate, per precision, against an fp32 reference.

    python bench/weights_move.py [--steps 10] [--lr 1e-5] [--hidden 256] [--out bench/results/weights-move-cpu.txt]

For each method (spectrum, full) and precision (fp32 reference, bf16-mixed = fp32 master weights,
bf16-compensated = torch-optimi's Kahan AdamW, and `bf16-pure`: the job as it ran before precision was a
decision, bf16 weights with torch's AdamW), it trains a stand-in Llama (random init, initializer_range
0.02 like the real models) on the demo data for N steps at the learning rate (constant, no warm-up) and reports,
over the trainable base weights:

- changed: the fraction of trainable weights whose stored value differs from the start;
- update: ||W_N - W_0|| / ||W_N - W_0|| of the fp32 reference;
- error: ||(W_N - W_0) - (W_N - W_0)_ref|| / ||(W_N - W_0)_ref||: how far the run's update is from the
  reference's (bf16 autocast alone makes it non-zero: the matmuls round).

W_0 is the start as the run stores it (bf16-rounded for the bf16 runs), so rounding at load counts as no
change. CPU autocast stands in for the GPU's (same bf16 rounding of weights and optimizer arithmetic; the
matmul kernels differ): the figures are about the optimizer update, not about speed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

PRECISIONS = ("fp32", "bf16-mixed", "bf16-compensated", "bf16-pure")
SPECTRUM_PATTERNS = [
    r"^model.layers.\d+.mlp.down_proj.weight$",
    r"^model.layers.\d+.self_attn.o_proj.weight$",
]


def stand_in(path: Path, hidden: int) -> Path:
    """A 2-layer Llama with the bundled tokenizer, `hidden` wide, random weights (std 0.02)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from advisor.bundled import demo_tokenizer_dir

    tok = AutoTokenizer.from_pretrained(str(demo_tokenizer_dir()))
    cfg = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tok),
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def run(base: Path, work: Path, method: str, precision: str, steps: int, lr: float) -> dict:
    """Train with the real job; returns the trainable tensors before (as stored by the run) and after."""
    import torch
    from launchkit import make_run
    from safetensors.torch import load_file

    from launcher import precision as prec
    from launcher import train

    rd = make_run(
        work,
        base,
        method,
        max_steps=steps,
        learning_rate=lr,
        warmup_ratio=0.0,
        eval_steps=steps,
        save_steps=steps,
        precision=None if precision == "bf16-pure" else precision,
        n_rows=40,
        gradient_checkpointing=False,
        max_grad_norm=1.0,
        lr_scheduler="constant",
    )
    if method == "spectrum":
        import yaml

        d = yaml.safe_load((rd / "plan.yaml").read_text())
        d["spectrum"]["unfrozen_parameters"] = SPECTRUM_PATTERNS
        (rd / "plan.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    saved = (prec.effective, prec.load_dtype, prec.master_weights)
    if precision == "bf16-pure":  # the job before this change: bf16 weights, torch AdamW, no master copy
        prec.effective = lambda plan, cuda: ("bf16-mixed", "")
        prec.load_dtype = lambda plan, p: torch.bfloat16
        prec.master_weights = lambda model, plan, p: 0
    try:
        code = train.main([str(rd)])
    finally:
        prec.effective, prec.load_dtype, prec.master_weights = saved
    if code:
        raise SystemExit(f"{method}/{precision}: the job exited {code}")
    after = load_file(str(rd / "model" / "model.safetensors"))
    before = load_file(str(base / "model.safetensors"))
    fp32_start = precision == "fp32" or (precision == "bf16-mixed" and method == "full")  # loaded in fp32
    stored = torch.float32 if fp32_start else torch.bfloat16
    trainable = [k for k in after if _trainable(k, method) and k in before]
    return {k: (before[k].to(stored).float(), after[k].float()) for k in trainable}


def _trainable(name: str, method: str) -> bool:
    import re

    if method == "full":
        return True
    return any(re.search(p, name) for p in SPECTRUM_PATTERNS)


def compare(result: dict, reference: dict) -> dict:
    import torch

    changed = sum(int((a != b).sum()) for b, a in result.values())
    total = sum(b.numel() for b, _ in result.values())
    upd = torch.sqrt(sum(((a - b) ** 2).sum() for b, a in result.values()))
    ref_upd = torch.sqrt(sum(((a - b) ** 2).sum() for b, a in reference.values()))
    err = torch.sqrt(
        sum((((a - b) - (reference[k][1] - reference[k][0])) ** 2).sum() for k, (b, a) in result.items())
    )
    return {
        "changed": changed / total,
        "update": float(upd / ref_upd),
        "error": float(err / ref_upd),
        "params": total,
    }


def measure(steps: int, lr: float, hidden: int, methods=("spectrum", "full"), precisions=PRECISIONS) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = stand_in(Path(tmp) / "base", hidden)
        for method in methods:
            runs = {
                p: run(base, Path(tmp) / f"{method}-{p}", method, p, steps, lr)
                for p in ("fp32", *precisions)
                if p == "fp32" or p in precisions
            }
            out[method] = {p: compare(r, runs["fp32"]) for p, r in runs.items()}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    res = measure(a.steps, a.lr, a.hidden)
    lines = [
        f"# python bench/weights_move.py --steps {a.steps} --lr {a.lr:g} --hidden {a.hidden}"
        + (f" --out {a.out}" if a.out else ""),
        f"# {a.steps} optimizer steps at lr {a.lr:g}, constant, no warm-up; stand-in Llama, hidden {a.hidden}, 2 layers; CPU",
        f"{'method':<9} {'precision':<17} {'params':>9} {'changed':>8} {'update':>7} {'error':>7}",
    ]
    for method, rows in res.items():
        for p, r in rows.items():
            lines.append(
                f"{method:<9} {p:<17} {r['params']:>9,} {r['changed']:>8.1%} {r['update']:>7.2f} {r['error']:>7.2f}"
            )
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if a.out:
        a.out.write_text(text)
        a.out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
