"""Side-by-side speed and peak memory: the plain Hugging Face stack vs the job tunewise launches.

Usage (on a GPU machine; every case runs in its own process for clean memory stats):
    python bench/gpu_train.py --out bench/results/gpu-train-$(date +%F).json [--budget 420]
    python bench/gpu_train.py --tiny --out /tmp/gpu-train-tiny.json      # CPU rehearsal, tiny shapes

Cases (issue 7): `lora-8b`, `qlora-8b`, `spectrum-8b` at Llama-3.1-8B shapes (random weights, no
downloads), LoRA r16 on all linear layers, 4 x 1,024 tokens per optimizer step, checkpointing on.
  baseline  = the plain stack, measured by bench/calibration/measure_plain_stack.py --one (PEFT + AdamW loop);
  tunewise  = `python -m launcher.train RUN_DIR` on a plan with the same settings (packed data);
  predicted = `tunewise estimate` for the tunewise settings.
A variable-length case (`varlen-1b`) compares useful (non-padding) tokens/s of TRL's SFTTrainer with its
defaults against the tunewise job on the same data. `lora-8b-nodrop` / `lora-8b-nopack` measure one speed
lever each (the job only). `--profile DIR` runs each job under bench/gpu_profile.py (where the time goes).
Writes {"gpu", "cases": [{"name", "baseline_tokens_per_s", "tunewise_tokens_per_s", "baseline_peak_gib",
"tunewise_peak_gib", "predicted_peak_gib", ...}]}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from shapes import llama_shapes  # noqa: E402

GiB = 1024**3
ARCH = {name: llama_shapes(name) for name in ("llama-8b", "llama-3b", "llama-1b")}
ARCH["tiny"] = dict(
    vocab_size=2048,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    tie_word_embeddings=False,
)
ENV = dict(
    os.environ,
    PYTHONUNBUFFERED="1",
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    HF_HUB_DISABLE_TELEMETRY="1",
    TRANSFORMERS_VERBOSITY="error",
    TOKENIZERS_PARALLELISM="false",
)


def _device():
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def llama_config(arch: str):
    from transformers import LlamaConfig

    return LlamaConfig(**ARCH[arch], max_position_embeddings=8192, rope_theta=500000.0)


def make_checkpoint(arch: str, root: Path) -> Path:
    """A random-initialised bf16 checkpoint of `arch` shapes, with the bundled tokenizer (cached)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = root / f"rand-{arch}"
    if (path / "config.json").exists():
        return path
    dev = _device()
    torch.manual_seed(0)  # the same random weights every run: a rerun measures the same model
    with torch.device(dev):
        model = AutoModelForCausalLM.from_config(llama_config(arch), dtype=torch.bfloat16)
    model.save_pretrained(path, max_shard_size="5GB")
    tok = AutoTokenizer.from_pretrained(ROOT / "examples/demo/tokenizer")
    tok.save_pretrained(path)
    del model
    if dev == "cuda":
        torch.cuda.empty_cache()
    return path


def _words(tokenizer, n: int, rng) -> str:
    """A text of `n` tokens (give or take the first): words the byte-level vocabulary holds whole with
    their leading space ("Ġword"), so " word" is one token. (Drawing raw vocabulary entries put the
    literal "Ġ" into the text and made every word ~4 tokens: the varlen data's median was ~740 tokens.)"""
    vocab = sorted(
        w[1:] for w in tokenizer.get_vocab() if w.startswith("Ġ") and w[1:].isalpha() and len(w) > 3
    )
    return " ".join(rng.choice(vocab[:1500]) for _ in range(n))


def write_text_data(path: Path, tokenizer, *, rows: int, lengths: str, seed: int = 0) -> None:
    """`fixed`: every row longer than 1,024 tokens (each packed row is one full sequence, no padding);
    `quarter`: 250-token documents, four to a packed row of 1,024 (a block-diagonal mask in every row);
    `varlen`: a realistic long-tailed distribution (log-normal, median ~200 tokens, capped at 1,024)."""
    import random

    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for _ in range(rows):
            if lengths == "fixed":
                n = 1200
            elif lengths == "quarter":
                n = 250
            else:
                n = min(1024, max(16, int(rng.lognormvariate(5.3, 0.8))))
            f.write(json.dumps({"text": _words(tokenizer, n, rng)}) + "\n")


def write_preference_data(path: Path, tokenizer, *, rows: int, seq: int, seed: int = 0) -> None:
    """Preference pairs whose prompt (a quarter of `seq`) + answer (`seq`) exceed `seq` tokens, chosen and
    rejected alike: every DPO row is truncated to max_length, so the step's shape is fixed (as the `fixed`
    SFT rows). (TRL drops a pair whose prompt alone exceeds max_length.)"""
    import random

    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for _ in range(rows):
            f.write(
                json.dumps(
                    {
                        "prompt": _words(tokenizer, seq // 4, rng),
                        "chosen": _words(tokenizer, seq, rng),
                        "rejected": _words(tokenizer, seq, rng),
                    }
                )
                + "\n"
            )


def _spectrum_patterns(n_layers: int, fraction: float = 0.3) -> list[str]:
    """The baseline's evenly spaced layers, as scan-style patterns (random weights carry no SNR signal)."""
    k = max(1, round(fraction * n_layers))
    chosen = sorted({round(i * (n_layers - 1) / max(1, k - 1)) for i in range(k)})
    types = [
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    ]
    return [f"^model.layers.{i}.{t}.weight$" for i in chosen for t in types]  # Axolotl escapes the dots


def tunewise_plan(spec: dict, ckpt: Path, *, tiny: bool):
    """The plan `tunewise recommend` would write for these settings, with the speed switches on."""
    from advisor.plan import DataSpec, DPOSpec, LoraSpec, QuantSpec, SpectrumSpec, TrainingPlan

    method, stage = spec["method"], spec.get("stage", "sft")
    plan = TrainingPlan(
        model=str(ckpt),
        method=method,
        stage=stage,
        data=DataSpec(train="data/train.jsonl", format="preference" if stage == "dpo" else "text"),
        dpo=DPOSpec() if stage == "dpo" else None,
        max_length=spec["seq"],
        packing=spec.get("packing", True),
        padding_free=spec.get("padding_free", False),
        completion_only_loss=False,
        micro_batch_size=spec["bs"],
        grad_accum=1,
        learning_rate=2e-4,
        max_steps=spec["steps"] + 2,
        warmup_ratio=0.0,
        lora=LoraSpec(r=16, alpha=32, dropout=spec.get("lora_dropout", 0.1)),  # the plan default (TW504)
        quantization=QuantSpec() if method == "qlora" else None,
        spectrum=SpectrumSpec(unfrozen_parameters=_spectrum_patterns(ARCH[spec["arch"]]["num_hidden_layers"]))
        if method == "spectrum"
        else None,
        gradient_checkpointing=True,
        liger=spec.get("liger", True),
        attn_implementation="sdpa",
        torch_compile=spec.get("compile", False),
        bf16=not tiny,
        eval_steps=10_000,
        early_stopping_patience=None,
        save_steps=10_000,
        logging_steps=1,
    )
    if method == "spectrum":
        plan.lora = None
    return plan


def _estimate(spec: dict, ckpt: Path, *extra: str) -> dict | None:
    """`tunewise estimate --format json` for the same settings."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tunewise",
            "estimate",
            "--model",
            str(ckpt),
            "--method",
            spec["method"],
            "--seq-len",
            str(spec["seq"]),
            "--batch-size",
            str(spec["bs"]),
            *(["--liger"] if spec.get("liger", True) else []),
            *(["--padding-free"] if spec.get("padding_free") else []),
            *(["--full-rows"] if spec.get("lengths", "fixed") == "fixed" else []),
            *(["--stage", "dpo"] if spec.get("stage") == "dpo" else []),
            *extra,
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
    )
    try:
        return json.loads(out.stdout)
    except ValueError:
        print(f"estimate failed: {out.stderr[-500:]}", flush=True)
        return None


def predicted_peak(spec: dict, ckpt: Path) -> float | None:
    """`tunewise estimate` for the same settings (peak allocated, GiB)."""
    est = _estimate(spec, ckpt)
    return round(est["peak_allocated_gib"], 3) if est else None


def predicted_speed(spec: dict, ckpt: Path, gpu: str) -> dict:
    """The throughput model's tokens/s for the job and the plain stack on this card (`estimate --gpu`),
    recorded before the run so the table's blind check gains a point; {} on CPU or an unknown card."""
    if gpu == "cpu":
        return {}
    est = _estimate(spec, ckpt, "--gpu", gpu)
    if not est or "tokens_per_s" not in est:
        return {}
    return {
        "predicted_tokens_per_s": est["tokens_per_s"],
        "predicted_baseline_tokens_per_s": est.get("plain_tokens_per_s"),
    }


def _rate(metrics: Path, skip: int = 2) -> tuple[float | None, float | None]:
    """Non-padding tokens/s over the steps after `skip` warm-up steps, and the last peak memory row."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "loss" in r and "tokens_seen" in r]
    rows = [r for r in rows if r["step"] >= skip]
    peak = max((r.get("gpu_mem_gib") or 0 for r in rows), default=None) or None
    if len(rows) < 2:
        return None, peak
    a, b = rows[0], rows[-1]
    return round((b["tokens_seen"] - a["tokens_seen"]) / (b["time"] - a["time"]), 1), peak


def _profiled(cmd: list[str], profile: Path | None, name: str) -> list[str]:
    """`cmd` run under bench/gpu_profile.py (tables in PROFILE/NAME), or as it is."""
    if profile is None:
        return cmd
    return [sys.executable, str(ROOT / "bench/gpu_profile.py"), "--out", str(profile / name), "--", *cmd[1:]]


def run_tunewise(spec: dict, ckpt: Path, work: Path, *, tiny: bool, profile: Path | None = None) -> dict:
    """Write a run directory for the plan and launch `python -m launcher.train` on it."""
    from transformers import AutoTokenizer

    from launcher.rundir import new_run_dir, write_run_files

    run = new_run_dir(work / f"run-{spec['name']}")
    tok = AutoTokenizer.from_pretrained(ckpt)
    rows = (
        (spec["steps"] + 4) * spec["bs"] * {"fixed": 2, "quarter": 8, "pairs": 1}.get(spec.get("lengths"), 12)
    )
    if spec.get("lengths") == "pairs":
        write_preference_data(run / "data/train.jsonl", tok, rows=rows, seq=spec["seq"])
    else:
        write_text_data(run / "data/train.jsonl", tok, rows=rows, lengths=spec.get("lengths", "fixed"))
    write_run_files(run, tunewise_plan(spec, ckpt, tiny=tiny), {})
    t = time.perf_counter()
    p = subprocess.run(
        _profiled([sys.executable, "-m", "launcher.train", str(run)], profile, f"{spec['name']}-tunewise"),
        env=ENV,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    res = {"wall_s": round(time.perf_counter() - t, 1), "returncode": p.returncode}
    if p.returncode:
        res["error"] = (p.stderr or p.stdout)[-1500:]
        return res
    summary = json.loads((run / "summary.json").read_text())
    res["tokens_per_s"], _ = _rate(run / "metrics.jsonl")
    res["peak_gib"] = summary.get("peak_gib_measured")
    res["peak_reserved_gib"], res["device_gib"] = (
        summary.get("peak_reserved_gib"),
        summary.get("device_gib_measured"),
    )
    res["trainable_params"] = summary.get("trainable_params")
    res["loss_first"], res["loss_last"] = summary.get("loss_first"), summary.get("loss_last")
    return res


def run_trl_defaults(spec: dict, ckpt: Path, work: Path) -> dict:
    """TRL's SFTTrainer with its defaults (no packing, padding) and the same LoRA, batch and max_length."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from launcher.callbacks import MetricsLog

    cuda = torch.cuda.is_available()
    tok = AutoTokenizer.from_pretrained(ckpt)
    data = work / f"trl-{spec['name']}" / "train.jsonl"
    write_text_data(data, tok, rows=(spec["steps"] + 4) * spec["bs"] * 12, lengths="varlen")
    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.bfloat16 if cuda else torch.float32)
    # TRL's own defaults, batch size included (8: per_device_train_batch_size is left alone).
    cfg = SFTConfig(
        output_dir=str(data.parent / "out"),
        max_length=spec["seq"],
        max_steps=spec["steps"] + 2,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=not cuda,
        bf16=cuda,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
    )
    metrics = data.parent / "metrics.jsonl"
    metrics.unlink(missing_ok=True)  # MetricsLog appends: a rerun in the same --work would mix two runs' rows
    tr = SFTTrainer(
        model=model,
        args=cfg,
        train_dataset=load_dataset("json", data_files=str(data), split="train"),
        processing_class=tok,
        callbacks=[MetricsLog(metrics, "sft")],
        peft_config=LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
        ),
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    tr.train()
    rate, _ = _rate(metrics)
    return {
        "tokens_per_s": rate,
        "peak_gib": round(torch.cuda.max_memory_allocated() / GiB, 3) if cuda else None,
        "batch_size": cfg.per_device_train_batch_size,
    }


def params_of(ckpt: Path) -> int:
    from advisor.models import resolve_model

    return resolve_model(str(ckpt)).params_total


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def _child(kind: str, spec: dict, ckpt: str, work: str, tiny: bool) -> None:
    res = run_trl_defaults(spec, Path(ckpt), Path(work))
    print("RESULT " + json.dumps(res), flush=True)


def _result_line(p: subprocess.CompletedProcess) -> dict:
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    return json.loads(lines[-1][7:]) if lines else {"error": (p.stderr or p.stdout)[-1500:]}


def run_baseline(spec: dict, ckpt: Path, timeout: float, profile: Path | None = None) -> dict:
    """The plain stack, measured by the shared calibration script itself (`--one`, its own process):
    PEFT LoRA r16 dropout 0.05 / QLoRA with k-bit preparation / evenly spaced Spectrum, fused AdamW."""
    calib = dict(
        arch=spec["arch"],
        method=spec["method"],
        rank=spec["rank"],
        seq=spec["seq"],
        bs=spec["bs"],
        ckpt=True,
        steps=spec["steps"],
        fraction=0.3,
        ckpt_dir=str(ckpt),
    )
    cmd = [sys.executable, str(ROOT / "bench/calibration/measure_plain_stack.py"), "--one", json.dumps(calib)]
    p = subprocess.run(
        _profiled(cmd, profile, f"{spec['name']}-baseline"),
        env=ENV,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    res = _result_line(p)
    if "peak_alloc_gib" in res:
        res["peak_gib"] = res.pop("peak_alloc_gib")
    return res


def _in_child(kind: str, spec: dict, ckpt: Path, work: Path, tiny: bool, timeout: float) -> dict:
    p = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            kind,
            json.dumps(spec),
            str(ckpt),
            str(work),
            *(["--tiny"] if tiny else []),
        ],
        env=ENV,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return _result_line(p)


def cases(tiny: bool) -> list[dict]:
    a8, a1 = ("tiny", "tiny") if tiny else ("llama-8b", "llama-1b")
    steps = 3 if tiny else 8
    base = dict(rank=16, seq=128 if tiny else 1024, bs=4, steps=steps, lengths="fixed", padding_free=False)
    return [
        dict(base, name="lora-8b", arch=a8, method="lora", baseline=True),
        dict(base, name="spectrum-8b", arch=a8, method="spectrum", baseline=True),
        dict(base, name="qlora-8b", arch=a8, method="qlora", baseline=True),
        # Speed levers, each against lora-8b's tunewise row of the same run: no LoRA dropout (PEFT skips the
        # dropout kernel and its saved mask), and no packing (each 1,024-token row alone: no packed position
        # ids, so SDPA can take its flash kernel instead of a block-diagonal mask).
        dict(base, name="lora-8b-nodrop", arch=a8, method="lora", lora_dropout=0.0),
        # The batch layout: the job keeps packed rows as rows (SDPA spans 1,024 tokens); `-flat` is TRL's
        # padding-free row of 4,096 with its block-diagonal mask (the job until 2026-11-28, 2nd session).
        # Full-length rows are one document each (no mask at all); `-docs4` packs four 250-token documents
        # per row, so every row carries a mask, as real data does.
        dict(base, name="lora-8b-flat", arch=a8, method="lora", padding_free=True),
        dict(base, name="lora-8b-docs4", arch=a8, method="lora", lengths="quarter"),
        dict(base, name="lora-8b-docs4-flat", arch=a8, method="lora", lengths="quarter", padding_free=True),
        dict(base, name="lora-8b-nopack", arch=a8, method="lora", packing=False),
        # torch.compile: fewer, fused kernels and less Python per step (PEFT's LoRA forward is Python per module).
        dict(base, name="lora-8b-compile", arch=a8, method="lora", compile=True),
        dict(base, name="varlen-1b", arch=a1, method="lora", lengths="varlen", trl_defaults=True),
        dict(base, name="varlen-1b-flat", arch=a1, method="lora", lengths="varlen", padding_free=True),
        dict(base, name="lora-1b", arch=a1, method="lora"),
        dict(base, name="qlora-1b", arch=a1, method="qlora"),
        dict(base, name="spectrum-1b", arch=a1, method="spectrum"),
        # The DPO stage (issue 3: its estimate has no GPU point yet): 4 pairs = 8 rows of 1,024 tokens.
        dict(base, name="dpo-1b", arch=a1, method="lora", stage="dpo", lengths="pairs"),
    ]


def selected(specs: list[dict], only: str) -> list[dict]:
    """The cases `--only` names, in the order it names them (the budget cuts the last ones first)."""
    if not only:
        return specs
    by_name = {s["name"]: s for s in specs}
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        sys.exit(f"gpu_train.py: unknown case(s) {', '.join(unknown)}; cases: {', '.join(by_name)}")
    return [by_name[n] for n in names]


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], sys.argv[5], "--tiny" in sys.argv)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/tunewise-bench"))
    ap.add_argument("--budget", type=float, default=420.0, help="seconds; later cases are skipped past it")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes on CPU: a rehearsal of the script")
    ap.add_argument("--only", default="", help="comma-separated case names, run in this order")
    ap.add_argument("--no-baseline", action="store_true", help="measure only the tunewise job")
    ap.add_argument(
        "--checkpoint-only", metavar="ARCH", help="just write the random checkpoint of ARCH into --work"
    )
    ap.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run every job under bench/gpu_profile.py, tables in DIR/CASE-{tunewise,baseline}; its "
        "rows are marked profiled (2 slower steps: not speed figures of record)",
    )
    args = ap.parse_args()
    if args.checkpoint_only:
        print(make_checkpoint(args.checkpoint_only, args.work))
        return 0
    start = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    result = {
        "gpu": gpu_name(),
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(sys.argv),
        "cases": [],
        "profiled": args.profile is not None,
    }
    ckpts: dict[str, Path] = {}
    for spec in selected(cases(args.tiny), args.only):
        left = args.budget - (time.perf_counter() - start)
        if left < 30:
            result["cases"].append({"name": spec["name"], "skipped": "time budget"})
            continue
        if spec["arch"] not in ckpts:
            ckpts[spec["arch"]] = make_checkpoint(spec["arch"], args.work)
        ckpt = ckpts[spec["arch"]]
        row = {"name": spec["name"], "settings": spec}
        row["predicted_peak_gib"] = predicted_peak(spec, ckpt)
        row.update(predicted_speed(spec, ckpt, result["gpu"]))
        tw = run_tunewise(spec, ckpt, args.work, tiny=args.tiny, profile=args.profile)
        row.update(
            tunewise_tokens_per_s=tw.get("tokens_per_s"),
            tunewise_peak_gib=tw.get("peak_gib"),
            tunewise_device_gib=tw.get("device_gib"),
            tunewise=tw,
        )
        ref = None
        left = args.budget - (time.perf_counter() - start)
        if (spec.get("baseline") or spec.get("trl_defaults")) and (left < 45 or args.no_baseline):
            row["baseline"] = {"skipped": "time budget" if left < 45 else "--no-baseline"}
        elif spec.get("baseline"):
            ref = run_baseline(spec, ckpt, timeout=max(30, left), profile=args.profile)
        elif spec.get("trl_defaults"):
            ref = _in_child("trl", spec, ckpt, args.work, args.tiny, timeout=max(30, left))
        if ref is not None:
            row.update(
                baseline_tokens_per_s=ref.get("tokens_per_s"),
                baseline_peak_gib=ref.get("peak_gib"),
                baseline=ref,
            )
            if ref.get("tokens_per_s") and tw.get("tokens_per_s"):
                row["speedup"] = round(tw["tokens_per_s"] / ref["tokens_per_s"], 3)
            if ref.get("peak_gib") and tw.get("peak_gib"):
                row["memory_ratio"] = round(tw["peak_gib"] / ref["peak_gib"], 3)
        if tw.get("tokens_per_s"):
            # Model FLOPs utilisation against the H200's measured bf16 matmul rate (790 TFLOP/s), counting
            # 6 N FLOPs per token (forward, recompute under checkpointing, backward to the inputs) as the
            # shared calibration README does; N = all parameters of the base model.
            n = params_of(ckpt)
            row["tunewise_mfu"] = round(tw["tokens_per_s"] * 6 * n / 790e12, 4)
            if ref and ref.get("tokens_per_s"):
                row["baseline_mfu"] = round(ref["tokens_per_s"] * 6 * n / 790e12, 4)
        if row.get("predicted_peak_gib") and tw.get("peak_gib"):
            row["predicted_error"] = round(row["predicted_peak_gib"] / tw["peak_gib"] - 1, 4)
        row["elapsed_s"] = round(time.perf_counter() - start, 1)
        result["cases"].append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("settings",)}), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(result, indent=2) + "\n"
        )  # after every case: a cut-off run keeps its rows
    return 0


if __name__ == "__main__":
    sys.exit(main())
