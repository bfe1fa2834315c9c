"""Predicted vs measured peak GPU memory for every committed measurement.

    .venv/bin/python bench/memory_accuracy.py [--out bench/results/memory-accuracy-DATE.txt] [--json F]

Reads `bench/calibration/*.jsonl` and `bench/results/gpu-*.json[l]` (rows with the fields arch, method,
rank, seq, bs, ckpt, liger, fraction, peak_alloc_gib, device_used_gib_end; rows without a peak, e.g.
errors or timings, are skipped). `arch` is a key of ARCH below (the measuring script's shapes) or any
`--model` spec tunewise resolves (catalog name, hub id in the catalog). Exit 1 when the accuracy goal
is missed: peak allocated within 7% median and 15% worst, device figure within 20% worst.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from advisor.memory import MemoryConfig, estimate  # noqa: E402
from advisor.models import facts_from_config, resolve_model  # noqa: E402

# The measuring script's shapes (bench/calibration/measure_plain_stack.py, ARCH).
ARCH = {"llama-8b": "llama-3.1-8b", "llama-3b": "llama-3.2-3b", "llama-1b": "llama-3.2-1b"}
TINY = {"model_type": "llama", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": False}
GOAL = {"peak_median": 0.07, "peak_worst": 0.15, "device_worst": 0.20}


def load_rows(root: Path = ROOT) -> list[dict]:
    files = sorted(glob.glob(str(root / "bench/calibration/*.jsonl")))
    files += sorted(glob.glob(str(root / "bench/results/gpu-*.json*")))
    rows = []
    for f in files:
        text = Path(f).read_text()
        items = json.loads(text) if f.endswith(".json") else [json.loads(ln) for ln in text.splitlines() if ln.strip()]
        for r in items if isinstance(items, list) else [items]:
            if isinstance(r, dict) and r.get("peak_alloc_gib") and r.get("arch"):
                rows.append({**r, "_file": Path(f).name})
    return rows


def model_for(arch: str):
    if arch == "tiny":
        return facts_from_config(TINY, name="tiny", source="local")
    return resolve_model(ARCH.get(arch, arch))


def config_for(r: dict) -> MemoryConfig:
    return MemoryConfig(method=r["method"], rank=int(r.get("rank") or 16), seq_len=int(r["seq"]),
                        batch_size=int(r["bs"]), grad_ckpt=bool(r.get("ckpt", True)), liger=bool(r.get("liger", False)),
                        spectrum_fraction=float(r.get("fraction") or 0.3), lora_dropout=float(r.get("lora_dropout", 0.05)),
                        attn=r.get("attn", "sdpa"), optimizer=r.get("optimizer", "adamw"))


def compare(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        model, cfg = model_for(r["arch"]), config_for(r)
        if r["method"] == "spectrum" and r.get("params_trainable"):
            cfg = replace(cfg, spectrum_trainable_params=int(r["params_trainable"]))
        e = estimate(model, cfg)
        dev = r.get("device_used_gib_end")
        out.append({"file": r["_file"], "arch": r["arch"], "method": r["method"], "rank": cfg.rank, "seq": cfg.seq_len,
                    "bs": cfg.batch_size, "ckpt": cfg.grad_ckpt, "liger": cfg.liger,
                    "pred_peak": e.peak_allocated_gib, "meas_peak": r["peak_alloc_gib"],
                    "err_peak": e.peak_allocated_gib / r["peak_alloc_gib"] - 1,
                    "pred_dev": e.device_gib, "meas_dev": dev,
                    "err_dev": (e.device_gib / dev - 1) if dev else None, "phase": e.phase})
    return out


def render(res: list[dict], command: str) -> tuple[str, bool]:
    lines = [f"$ {command}", f"# {datetime.date.today().isoformat()}  points: {len(res)}", ""]
    head = (f"{'arch':<9}{'method':<9}{'r':>4}{'seq':>6}{'bs':>4}{'ckpt':>6}{'liger':>6}  "
            f"{'peak pred':>9}{'meas':>8}{'err':>8}  {'device pred':>11}{'meas':>8}{'err':>8}  phase")
    lines += [head, "-" * len(head)]
    for x in res:
        dev_err = f"{x['err_dev']:+.1%}" if x["err_dev"] is not None else "n/a"
        meas_dev = f"{x['meas_dev']:.2f}" if x["meas_dev"] else "n/a"
        lines.append(f"{x['arch']:<9}{x['method']:<9}{x['rank']:>4}{x['seq']:>6}{x['bs']:>4}{x['ckpt']!s:>6}"
                     f"{x['liger']!s:>6}  {x['pred_peak']:>9.2f}{x['meas_peak']:>8.2f}{x['err_peak']:>+8.1%}  "
                     f"{x['pred_dev']:>11.2f}{meas_dev:>8}{dev_err:>8}  {x['phase']}")
    peak = [abs(x["err_peak"]) for x in res]
    dev = [abs(x["err_dev"]) for x in res if x["err_dev"] is not None]
    med, worst = (statistics.median(peak), max(peak)) if peak else (0.0, 0.0)
    dworst = max(dev) if dev else 0.0
    ok = bool(res) and med <= GOAL["peak_median"] and worst <= GOAL["peak_worst"] and dworst <= GOAL["device_worst"]
    lines += ["", f"peak allocated |error|: median {med:.1%}, worst {worst:.1%}  (goal: 7% / 15%)",
              f"device figure  |error|: median {statistics.median(dev) if dev else 0:.1%}, worst {dworst:.1%}"
              "  (goal: 20%)", f"result: {'PASS' if ok else 'FAIL'}"]
    return "\n".join(lines) + "\n", ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="also write the table here")
    ap.add_argument("--json", help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    res = compare(load_rows())
    text, ok = render(res, "python bench/memory_accuracy.py" + (f" --out {args.out}" if args.out else ""))
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
