"""The host's share of a training step: Llama-3.1-8B's structure at negligible width, on CPU.

    OMP_NUM_THREADS=1 .venv/bin/python bench/host_overhead.py --out bench/results/host-overhead-cpu-DATE.txt

A GPU step is at least as long as the Python, dispatch and autograd work the host does to issue its
kernels. That work depends on how many modules and operators run, not on their width, so this bench
keeps the 8B model's structure (32 layers, q/k/v/o + gate/up/down, 32 heads over 8 KV heads, LoRA r16 on
all 224 linear layers) and shrinks the widths until the arithmetic is noise: what remains is the host
work. Each variant runs on one CPU thread:
  plain, no adapters   frozen base, inputs require grad (backward still runs through every layer)
  plain LoRA           PEFT LoRA dropout 0.05, checkpointing, fused AdamW: the calibration loop
  plain LoRA, no dropout
  tunewise job         `python -m launcher.train` on the gpu_train.py plan (LoRA dropout 0.1, TRL,
                       logging every step); its extra over "no adapters" is LoRA plus the Trainer
  tunewise, no dropout / tunewise, torch.compile
The figures are this machine's CPU, not the GPU host's: they say how much host work a step needs, to
be set against the measured GPU step (0.63-0.68 s for LoRA at 8B, 4 x 1,024 tokens, H200).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import gpu_train  # noqa: E402

NARROW_8B = dict(
    vocab_size=2048,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    tie_word_embeddings=False,
)
SEQ, BS, STEPS, WARM = 16, 4, 6, 3


def plain_step_ms(*, lora: bool, dropout: float) -> float:
    """Fastest ms per step of the calibration loop's shape (model(labels).loss, backward, AdamW): the
    least disturbed by whatever else the machine runs."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    cfg = LlamaConfig(**NARROW_8B, max_position_embeddings=8192)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
    model.config.use_cache = False
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=16, lora_alpha=32, lora_dropout=dropout, target_modules="all-linear", task_type="CAUSAL_LM"
            ),
        )
    else:
        model.requires_grad_(False)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    params = [p for p in model.parameters() if p.requires_grad] or [torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    model.train()
    times = []
    for i in range(WARM + STEPS):
        x = torch.randint(0, cfg.vocab_size, (BS, SEQ))
        t = time.perf_counter()
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= WARM:
            times.append(time.perf_counter() - t)
    return 1000 * min(times)


def job_step_ms(work: Path, name: str, **spec) -> float | None:
    """ms per optimizer step of the launched job (from its metrics.jsonl, after two warm-up steps)."""
    spec = dict(
        name=name,
        arch="narrow-8b",
        method="lora",
        rank=16,
        seq=SEQ,
        bs=BS,
        steps=STEPS + 2,
        lengths="fixed",
        **spec,
    )
    res = gpu_train.run_tunewise(spec, gpu_train.make_checkpoint("narrow-8b", work), work, tiny=True)
    if not res.get("tokens_per_s"):
        print(f"{name}: {res.get('error', res)}", file=sys.stderr)
        return None
    return 1000 * BS * SEQ / res["tokens_per_s"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--work", type=Path, default=Path("/tmp/tunewise-host-overhead"))
    ap.add_argument(
        "--no-compile", action="store_true", help="skip the torch.compile variant (slow to compile)"
    )
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    gpu_train.ARCH["narrow-8b"] = NARROW_8B
    gpu_train.ENV.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    args.work.mkdir(parents=True, exist_ok=True)
    rows = [
        ("plain, no adapters", plain_step_ms(lora=False, dropout=0.0)),
        ("plain LoRA (dropout 0.05)", plain_step_ms(lora=True, dropout=0.05)),
        ("plain LoRA, no dropout", plain_step_ms(lora=True, dropout=0.0)),
        ("tunewise job (dropout 0.1)", job_step_ms(args.work, "job")),
        ("tunewise job, no dropout", job_step_ms(args.work, "job-nodrop", lora_dropout=0.0)),
    ]
    if not args.no_compile:
        rows.append(("tunewise job, torch.compile", job_step_ms(args.work, "job-compile", compile=True)))
    base = rows[0][1]
    modules = NARROW_8B["num_hidden_layers"] * 7
    lines = [
        f"$ OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} python bench/host_overhead.py "
        + " ".join(sys.argv[1:]),
        "",
        f"# {time.strftime('%Y-%m-%d')}, torch {torch.__version__}, one CPU thread; Llama-3.1-8B structure "
        f"(32 layers, 224 LoRA r16 modules) at hidden {NARROW_8B['hidden_size']}, {BS} x {SEQ} tokens",
        f"{'variant':<32}{'ms/step':>10}{'vs no adapters':>16}{'per LoRA module':>18}",
    ]
    for name, ms in rows:
        if ms is None:
            lines.append(f"{name:<32}{'failed':>10}")
            continue
        extra = ms - base
        # Only the plain rows differ from "no adapters" by the adapters alone; the job adds the Trainer's
        # own per-step work (TRL's loss and metrics, logging every step as gpu_train.py's plan does).
        per = f"{1000 * extra / modules:>14.0f} µs" if name.startswith("plain LoRA") else ""
        lines.append(f"{name:<32}{ms:>10.1f}{extra:>+16.1f}{per:>18}")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
