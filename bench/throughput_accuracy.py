"""Predicted vs measured tokens/s for every committed GPU measurement; fits the throughput model.

    python bench/throughput_accuracy.py --out bench/results/throughput-accuracy-2026-12-06.txt \
        --json bench/results/throughput-accuracy-2026-12-06.json

Needs nothing but the committed results: the plain stack's calibration points
(bench/calibration/*-plain-stack-*.jsonl) and the job's side-by-side runs (bench/results/gpu-train-*.json),
all on one NVIDIA H200 so far; each point is predicted on the card it names.
Every committed point is predicted; one committed after the fit is blind. Each stack x kind of method's efficiency (rules/throughput.yaml) is fitted on the
points marked `fit` below (one each: the step's FLOPs over the measured step time, memory-bound traffic
taken off first); the points marked `blind` are left out and predicted with those fitted numbers. The fit
points agree by construction (consistency, not evidence); the blind ones are the check. The spread is
the largest blind error, rounded up to the next 5%.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CALIBRATION = sorted((ROOT / "bench" / "calibration").glob("*-plain-stack-*.jsonl"))
GPU_TRAIN = sorted((ROOT / "bench" / "results").glob("gpu-train-*.json"))
# The measured architectures (bench/calibration/measure_plain_stack.py, bench/gpu_train.py) as catalog models.
ARCH = {"llama-8b": "llama-3.1-8b", "llama-3b": "llama-3.2-3b", "llama-1b": "llama-3.2-1b"}

# Which points fit and which are left out, and why a blind point is a fair test. A measurement committed
# later (another gpu-train-*.json, another calibration file) is blind: it was not there when this was fitted.
ROLES = {
    "plain lora-8b": ("fit", "plain:adapters"),
    "plain spectrum-8b": ("fit", "plain:dense"),
    "plain qlora-8b": ("fit", "plain:qlora"),
    "job lora-8b": ("fit", "tunewise:adapters"),
    "job spectrum-8b": ("fit", "tunewise:dense"),
    "plain lora-8b no-ckpt": ("blind", "recomputation left out of the FLOPs (4 passes' worth instead of 6)"),
    "plain lora-8b liger": ("blind", "Liger's kernels are not modelled: same FLOPs, same efficiency"),
    "plain lora-8b (repeat)": ("blind", "the fit point's settings, measured again in another session"),
    "job qlora-8b": ("blind", "LoRA's efficiency + the 4-bit dequantisation traffic at the card's bandwidth"),
}
LATER = ("blind", "measured after the fit")


def _size(arch: str) -> str:
    return arch.removeprefix("llama-")


def points() -> list[dict]:
    """Every committed GPU measurement as (name, stack, settings, measured tokens/s)."""
    out = []
    for file in CALIBRATION:
        for line in file.read_text().splitlines():
            r = json.loads(line)
            if "tokens_per_s" not in r or r.get("arch") not in ARCH:
                continue  # the SNR-scan timing, an errored row, the CPU rehearsal's tiny model
            name = (
                f"plain {r['method']}-{_size(r['arch'])}"
                + ("" if r["ckpt"] else " no-ckpt")
                + (" liger" if r.get("liger") else "")
                + (f" seq{r['seq']}" if r["seq"] != 1024 else "")
                + (f" bs{r['bs']}" if r["bs"] != 4 else "")
                + (f" r{r['rank']}" if r.get("rank", 16) != 16 else "")
            )
            out.append(
                dict(
                    name=name,
                    arch=r["arch"],
                    stack="plain",
                    method=r["method"],
                    seq=r["seq"],
                    bs=r["bs"],
                    ckpt=r["ckpt"],
                    liger=bool(r.get("liger")),
                    trainable=r["params_trainable"],
                    rank=r.get("rank", 16),
                    dropout=0.05,
                    measured=r["tokens_per_s"],
                    source=file.name,
                    gpu=file.name.split("-plain-stack")[0],
                )
            )
    for i, file in enumerate(GPU_TRAIN):
        run = json.loads(file.read_text())
        later = f" ({file.stem.removeprefix('gpu-train-')})" if i else ""
        for c in run["cases"]:
            s = c["settings"]
            if s.get("arch") not in ARCH or s.get("compile"):
                continue  # torch.compile is not modelled
            common = dict(
                arch=s["arch"],
                method=s["method"],
                seq=s["seq"],
                bs=s["bs"],
                ckpt=True,
                rank=s.get("rank", 16),
                stage=s.get("stage", "sft"),
                source=file.name,
                gpu=run.get("gpu", "unknown"),
            )
            if c.get("baseline_tokens_per_s"):
                name = (
                    f"plain {c['name']}"
                    + (" (repeat)" if c["name"] == "lora-8b" and not later else "")
                    + later
                )
                out.append(
                    dict(
                        common,
                        name=name,
                        stack="plain",
                        liger=False,
                        dropout=0.05,
                        trainable=c["baseline"]["params_trainable"],
                        measured=c["baseline_tokens_per_s"],
                    )
                )
            if c.get("tunewise_tokens_per_s"):
                trainable = (
                    c.get("baseline", {}).get("params_trainable") if s["method"] == "spectrum" else None
                )
                out.append(
                    dict(
                        common,
                        name=f"job {c['name']}{later}",
                        stack="tunewise",
                        liger=s.get("liger", True),
                        dropout=s.get("lora_dropout", 0.1),
                        trainable=trainable,
                        packed=s.get("lengths", "fixed") != "fixed",
                        padding_free=bool(s.get("padding_free")),
                        measured=c["tunewise_tokens_per_s"],
                    )
                )
    return out


def config(p: dict):
    from advisor.memory import MemoryConfig

    spectrum = p["trainable"] if p["method"] == "spectrum" else None
    return MemoryConfig(
        method=p["method"],
        rank=p.get("rank", 16),
        seq_len=p["seq"],
        batch_size=p["bs"],
        grad_ckpt=p["ckpt"],
        liger=p["liger"],
        stack=p["stack"],
        lora_dropout=p["dropout"],
        packed_docs=p.get("packed", False),
        padding_free=p.get("padding_free", False),
        stage=p.get("stage", "sft"),
        spectrum_trainable_params=spectrum,
    )


def model_for(p: dict):
    from advisor.models import resolve_model

    return resolve_model(ARCH[p["arch"]])


def implied_efficiency(model, p: dict, gpu) -> float:
    """The efficiency at which the model's FLOPs take the measured step time (memory traffic first)."""
    from advisor.throughput.flops import step_work

    work = step_work(model, config(p))
    t = work.tokens / p["measured"]
    memory = (work.dequant_bytes + work.optimizer_bytes) / (gpu.bandwidth_gbs * 1e9)
    return work.flops / (gpu.peak_tflops() * 1e12 * (t - memory))


def run() -> dict:
    from advisor.throughput.gpus import find_gpu
    from advisor.throughput.model import efficiency_key, tokens_per_s

    pts = points()
    gpu_of = {p["gpu"]: find_gpu(p["gpu"]) for p in pts}
    unknown = sorted(g for g, spec in gpu_of.items() if spec is None)
    if unknown:
        raise SystemExit(f"points measured on cards missing from rules/gpus.yaml: {unknown}")
    gpu = gpu_of[pts[0]["gpu"]]
    missing = set(ROLES) - {p["name"] for p in pts}
    if missing:
        raise SystemExit(f"committed points missing: {sorted(missing)}")
    fitted: dict[str, list[float]] = {}
    for p in pts:
        role, key = ROLES.get(p["name"], LATER)
        if role == "fit":
            if efficiency_key(config(p)) != key:
                raise SystemExit(f"{p['name']}: fits {key} but the model reads {efficiency_key(config(p))}")
            fitted.setdefault(key, []).append(implied_efficiency(model_for(p), p, gpu_of[p["gpu"]]))
    eff = {k: math.exp(sum(map(math.log, v)) / len(v)) for k, v in fitted.items()}  # geometric mean
    rows = []
    for p in pts:
        role, note = ROLES.get(p["name"], LATER)
        cfg = config(p)
        key = efficiency_key(cfg)
        t = tokens_per_s(model_for(p), cfg, gpu_of[p["gpu"]], efficiency=eff[key])
        err = t.tokens_per_s / p["measured"] - 1
        rows.append(
            dict(
                name=p["name"],
                role=role,
                efficiency_key=key,
                measured=p["measured"],
                predicted=round(t.tokens_per_s, 1),
                error=round(err, 4),
                flops_per_token=round(t.flops_per_token),
                note=note if role == "blind" else "",
                source=p["source"],
            )
        )
    blind = [abs(r["error"]) for r in rows if r["role"] == "blind"]
    spread = math.ceil(max(blind) * 20 - 1e-9) / 20
    return {
        "gpu": gpu.name,
        "peak_tflops": gpu.peak_tflops(),
        "efficiency": {k: round(v, 4) for k, v in eff.items()},
        "spread": spread,
        "max_blind_error": round(max(blind), 4),
        "rows": rows,
    }


def render(res: dict, command: str) -> str:
    lines = [
        f"# {command}",
        "",
        f"Throughput model vs every committed GPU measurement (one NVIDIA {res['gpu']}, dense BF16 peak "
        f"{res['peak_tflops']:g} TFLOPS from the spec sheet). Llama-3.1-8B shapes, 4 x 1,024 tokens, r16.",
        "Fit points calibrate the efficiencies (one each, so they agree by construction: consistency, not "
        "evidence); blind points were left out of the fit and predicted.",
        "",
        "Fitted efficiencies (share of the dense peak the tensor math achieves):",
    ]
    lines += [f"  {k:<18} {v:.4f}" for k, v in res["efficiency"].items()]
    lines += [
        "",
        f"{'point':<24} {'role':<6} {'measured':>9} {'predicted':>10} {'error':>7}  GFLOP/token  note",
    ]
    for r in sorted(res["rows"], key=lambda r: (r["role"] != "fit", r["name"])):
        lines.append(
            f"{r['name']:<24} {r['role']:<6} {r['measured']:>9,.0f} {r['predicted']:>10,.0f} "
            f"{r['error']:>+7.1%}  {r['flops_per_token'] / 1e9:>11.1f}  {r['note']}"
        )
    lines += [
        "",
        f"Largest blind error: {res['max_blind_error']:.1%}; spread used for ranges: +/-{res['spread']:.0%}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the table here (and print it)")
    ap.add_argument("--json", help="write the rows and the fit as JSON here")
    args = ap.parse_args(argv)
    res = run()
    command = "python bench/throughput_accuracy.py" + "".join(
        f" --{k} {v}" for k, v in (("out", args.out), ("json", args.json)) if v
    )
    text = render(res, command)
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, **res}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
