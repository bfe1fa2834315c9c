"""Bytes per parameter, per method and precision, as the memory model counts them (advisor/precision.py,
advisor/memory/parts.py `param_bytes`), and the whole-step peak per parameter for a 7B/8B model.

    python bench/bytes_per_param.py [--out bench/results/bytes-per-param.txt]

Pure arithmetic (the estimator, no GPU): what the planner sizes each method with. The peak column is the
estimator's peak allocated for one step (batch 1 x 1,024 tokens, checkpointing) divided by the model's
parameter count, so it includes activations and the loss.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from advisor.memory import MemoryConfig, estimate  # noqa: E402
from advisor.models import resolve_model  # noqa: E402
from advisor.precision import ALLOWED, LEGACY  # noqa: E402

MODELS = ("llama-2-7b", "llama-3.1-8b")


def rows() -> list[str]:
    out = [
        f"{'model':<13}{'method':<9}{'precision':<22}{'weight':>7}{'grad':>6}{'optim':>7}{'train':>7}{'frozen':>7}"
        f"{'peak GiB':>10}{'peak B/param':>13}"
    ]
    for name in MODELS:
        m = resolve_model(name)
        for method, precisions in ALLOWED.items():
            for p in (*precisions, *((LEGACY,) if method in ("spectrum", "full") else ())):
                e = estimate(m, MemoryConfig(method, seq_len=1024, batch_size=1, precision=p))
                b = e.bytes_per_param
                label = p + (" (old job)" if p == LEGACY else "")
                out.append(
                    f"{name:<13}{method:<9}{label:<22}{b['weight']:>7g}{b['gradient']:>6g}{b['optimizer']:>7g}"
                    f"{b['trainable_total']:>7g}{b['frozen']:>7g}{e.peak_allocated_gib:>10.1f}"
                    f"{e.peak_allocated_gib * 1024**3 / m.params_total:>13.1f}"
                )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    head = [
        "# python bench/bytes_per_param.py" + (f" --out {a.out}" if a.out else ""),
        "# bytes per trainable parameter (weight + gradient + optimizer = train; LoRA/QLoRA: per adapter "
        "parameter) and per frozen base weight; peak: one step, batch 1 x 1,024, checkpointing, tunewise stack",
    ]
    text = "\n".join(head + rows()) + "\n"
    print(text, end="")
    if a.out:
        a.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
