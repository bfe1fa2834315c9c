"""The recommended plan, unedited, on a real model: recommend --probe -> launch --cpu -> the end-of-job verdict.

    python bench/e2e_recommended.py --rows 200 --out bench/results/e2e-recommended-cpu.md

What a user runs, nothing hand-set: SmolLM2-135M-Instruct (tests/realmodel.py) and `--rows` rows of the
dates-in-words -> ISO 8601 task (tests/realmodel.py `date_task`, prompt-completion), an answers file with a
success target (exact match 0.5) and no GPU. `recommend --probe` measures 5-shot prompting first (in the
100-1,000 band that measurement decides fine-tuning, rule TW122), writes the run, and `launch --cpu` trains
the plan as written and evaluates it. Written: the commands, the machine and its load, the plan's batch
arithmetic (examples per optimizer step, steps), the wall time of each phase, eval.json's table and verdict.
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

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def tunewise(*args, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "tunewise", *map(str, args)], cwd=cwd, capture_output=True, text=True
    )
    return r, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--work", type=Path, default=Path("/tmp/tunewise-bench-e2e"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "e2e-recommended-cpu.md")
    args = ap.parse_args()

    import realmodel

    from launcher.evaluation.section import markdown

    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")
    work = args.work / f"rows-{args.rows}-{int(time.time())}"
    work.mkdir(parents=True)
    base = realmodel.smollm2_dir()
    realmodel.write_jsonl(
        work / "dates.jsonl", realmodel.date_task(args.rows, seed=0, fmt="prompt-completion")
    )
    answers = realmodel.date_answers(base, "dates.jsonl")
    (work / "answers.yaml").write_text(yaml.safe_dump(answers), encoding="utf-8")
    load_before = os.getloadavg()
    rec, t_rec = tunewise(
        "recommend", "--answers", "answers.yaml", "--no-detect", "--probe", "--out", "run", cwd=work
    )
    if rec.returncode != 0:
        print(rec.stdout + rec.stderr, file=sys.stderr)
        return 1
    plan = yaml.safe_load((work / "run" / "plan.yaml").read_text())
    launch, t_launch = tunewise("launch", "run", "--cpu", cwd=work)
    if launch.returncode != 0:
        print(launch.stdout + launch.stderr, file=sys.stderr)
        return 1
    result = json.loads((work / "run" / "eval.json").read_text())
    summary = json.loads((work / "run" / "summary.json").read_text())
    load_after = os.getloadavg()
    reasons = plan["reasons"]
    report = json.loads((work / "run" / "report.json").read_text())
    lines = [
        "# The recommended plan, unedited, on a real model (CPU)",
        "",
        f"Command: `python bench/e2e_recommended.py --rows {args.rows}`, which runs, in a fresh folder:",
        "",
        "    tunewise recommend --answers answers.yaml --no-detect --probe --out run",
        "    tunewise launch run --cpu",
        "",
        f"Machine: {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}; load average before "
        f"{load_before[0]:.1f}, after {load_after[0]:.1f} (a shared machine: wall times are upper bounds).",
        "",
        f"Data: {args.rows} rows of dates in words -> ISO 8601 (prompt-completion); answers: task extraction, "
        "clear task, success exact match >= 0.5, no GPU. Model: SmolLM2-135M-Instruct (tests/realmodel.py).",
        "",
        "## What recommend decided",
        "",
        f"- approach: {report['approach']} (rules fired: {', '.join(r for r in report['fired'] if r.startswith('TW1'))})",
        f"- method {plan['method']}, lr {plan['learning_rate']:g}, epochs {plan['epochs']:g}, max_length "
        f"{plan['max_length']}, packing {plan['packing']}, micro-batch {plan['micro_batch_size']} x accumulation "
        f"{plan['grad_accum']}",
        f"- micro-batch: {reasons['micro_batch_size']}",
        f"- learning rate: {reasons['learning_rate']}",
        "",
        "## Wall time",
        "",
        f"- recommend with the probe: {t_rec:.0f} s",
        f"- launch (training + end-of-job evaluation): {t_launch:.0f} s; the evaluation alone "
        f"{result.get('wall_s', 0):.0f} s ({result['n_examples']} held-out examples x {len(result['models'])} models, "
        f"at most {result.get('max_new_tokens')} new tokens)",
        f"- training: {summary['steps']} optimizer steps in {summary['wall_s_measured']:.0f} s, loss "
        f"{summary['loss_first']:.3f} -> {summary['loss_last']:.3f}, validation loss {summary['eval_loss']:.3f}",
        "",
        markdown(result),
    ]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
