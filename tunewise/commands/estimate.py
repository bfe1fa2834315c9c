"""`tunewise estimate`: peak GPU memory of one training step, with its breakdown and what to change;
with `--gpu NAME`, its speed (tokens/s, step time) and, with `--tokens N`, the run's time.

Exit codes: 0 printed (and fits, when --gpu-memory is given); 1 does not fit --gpu-memory; 2 bad input.
"""

from __future__ import annotations

import json

from tunewise.commands.argtypes import fraction, gib, positive_int

COMPONENT_LABELS = {
    "weights": "model weights",
    "lora_adapters": "LoRA adapters",
    "optimizer_states": "optimizer states",
    "gradients": "gradients",
    "activations": "saved activations",
    "logits_loss": "logits + loss",
    "backward_work": "backward working set",
    "reference_weights": "DPO reference copy (frozen)",
    "reference_forward": "DPO reference forward",
}


def add_parser(sub):
    p = sub.add_parser(
        "estimate",
        help="predict peak GPU memory of a training step, with a breakdown",
        description="Predict the peak GPU memory of one training step (per GPU) before "
        "anything is launched, show what dominates it and what to change.",
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="M",
        help="catalog name (llama-3.1-8b), hub id, or a local directory holding config.json",
    )
    p.add_argument(
        "--method",
        required=True,
        choices=["lora", "qlora", "spectrum", "full"],
        help="what is trained: LoRA adapters, QLoRA (4-bit base), Spectrum (chosen layers) or all weights",
    )
    p.add_argument("--rank", type=positive_int, default=16, metavar="R", help="LoRA rank (default 16)")
    p.add_argument(
        "--seq-len", type=positive_int, default=1024, metavar="S", help="tokens per sequence (1024)"
    )
    p.add_argument("--batch-size", type=positive_int, default=4, metavar="B", help="micro-batch per GPU (4)")
    p.add_argument("--no-grad-ckpt", action="store_true", help="without gradient checkpointing")
    p.add_argument(
        "--liger",
        action="store_true",
        help="with Liger kernels (RMSNorm, SwiGLU; on the plain stack also its fused linear cross-entropy)",
    )
    p.add_argument(
        "--stack",
        choices=["tunewise", "plain"],
        default="tunewise",
        help="tunewise: the TRL job `tunewise launch` runs (default); plain: a plain PEFT training loop",
    )
    p.add_argument(
        "--stage",
        choices=["sft", "dpo"],
        default="sft",
        help="the step estimated: sft (default) or dpo (TRL's DPOTrainer: chosen and rejected rows of "
        "each pair in one padded batch of 2 x --batch-size rows, plus a no-grad reference forward; "
        "--batch-size counts pairs; tunewise stack only)",
    )
    p.add_argument(
        "--after-sft",
        action="store_true",
        help="with --stage dpo and an adapter: DPO continues the SFT adapter (an sft+dpo plan), and TRL "
        "keeps a frozen fp32 copy of it as the reference",
    )
    p.add_argument(
        "--spectrum-fraction",
        type=fraction,
        default=0.3,
        metavar="F",
        help="fraction of weights Spectrum unfreezes (0.3)",
    )
    p.add_argument("--gpus", type=positive_int, default=1, metavar="N", help="number of GPUs (1)")
    p.add_argument(
        "--distributed",
        choices=["ddp", "fsdp", "zero3"],
        default=None,
        help="with --gpus > 1: replicate (ddp) or shard (fsdp, zero3). Default: what `recommend` would "
        "choose: with --gpu-memory the layout that fits the largest micro-batch at --seq-len "
        "(DDP, FSDP, then FSDP + CPU offload); without it the job's default (LoRA: ddp, else fsdp)",
    )
    p.add_argument(
        "--cpu-offload",
        action="store_true",
        help="with --distributed fsdp: parameter shards, gradients and the optimizer step in host RAM",
    )
    p.add_argument(
        "--optimizer",
        choices=["adamw", "adamw_8bit", "paged_adamw_8bit"],
        default="adamw",
        help="optimizer whose states are counted: adamw (two per trainable weight), adamw_8bit "
        "(the same in 8 bits), paged_adamw_8bit (8-bit, paged to CPU under pressure)",
    )
    p.add_argument(
        "--attn", choices=["sdpa", "flash", "eager"], default="sdpa", help="attention kernel (sdpa)"
    )
    p.add_argument(
        "--precision",
        choices=["bf16-mixed", "bf16-compensated", "fp32", "fp16-mixed"],
        default=None,
        help="what the job keeps in which format: bf16-mixed (bf16 compute, fp32 master weights; the "
        "default), bf16-compensated (bf16 weights, Kahan-compensated AdamW; Spectrum/full), fp32 "
        "(Spectrum/full on GPUs without bf16), fp16-mixed (LoRA/QLoRA on GPUs without bf16)",
    )
    p.add_argument("--lora-dropout", type=float, default=0.05, metavar="P", help="LoRA dropout (0.05)")
    p.add_argument(
        "--padding-free",
        action="store_true",
        help="the job's micro-batch flattened into one packed row (TRL's padding-free layout; implied "
        "by --attn flash) instead of packed rows kept as rows",
    )
    p.add_argument(
        "--full-rows",
        action="store_true",
        help="every example fills --seq-len, so a packed row holds one document (no block-diagonal "
        "attention mask); default: rows of several shorter documents",
    )
    p.add_argument(
        "--gpu-memory",
        type=gib,
        default=None,
        metavar="GIB",
        help="GPU size to check against (exit 1 when it does not fit)",
    )
    p.add_argument(
        "--gpu",
        default=None,
        metavar="NAME",
        help="add the throughput model: tokens/s and step time on this card (a catalog name such as "
        "H200, A100-80GB, 'RTX 4090', or the full NVML name; rules/gpus.yaml)",
    )
    p.add_argument(
        "--tokens",
        type=positive_int,
        default=None,
        metavar="N",
        help="with --gpu: the run's time to train on N tokens (all epochs)",
    )
    p.add_argument(
        "--online",
        action="store_true",
        help="fetch config.json from the hub for a model not in the offline catalog",
    )
    p.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="text (a table) or json (one object on stdout)",
    )
    return p


def run(args) -> int:
    from advisor.memory import MemoryConfig, estimate
    from advisor.models import resolve_model

    model = resolve_model(args.model, allow_network=args.online)
    _check_shapes(args, model)
    if args.after_sft and args.stage != "dpo":
        from advisor.errors import UserError

        raise UserError(
            "--after-sft describes the DPO stage, and --stage is sft", "add --stage dpo, or drop --after-sft"
        )
    if args.distributed in ("fsdp", "zero3") and args.gpus < 2:
        from advisor.errors import UserError

        raise UserError(
            f"--distributed {args.distributed} shards across GPUs, and --gpus is {args.gpus}",
            "add --gpus N (2 or more), or drop --distributed for one GPU",
        )
    if args.cpu_offload and args.distributed not in (None, "fsdp"):
        from advisor.errors import UserError

        raise UserError(
            f"--cpu-offload is FSDP's, and --distributed is {args.distributed}",
            "use --distributed fsdp with --cpu-offload",
        )
    cfg = MemoryConfig(
        method=args.method,
        rank=args.rank,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        grad_ckpt=not args.no_grad_ckpt,
        liger=args.liger,
        spectrum_fraction=args.spectrum_fraction,
        n_gpus=args.gpus,
        distributed=args.distributed,
        optimizer=args.optimizer,
        attn=args.attn,
        lora_dropout=args.lora_dropout,
        stack=args.stack,
        padding_free=args.padding_free or args.attn == "flash",
        packed_docs=not args.full_rows,
        stage=args.stage,
        dpo_ref_adapter=args.after_sft,
        cpu_offload=args.cpu_offload,
        precision=args.precision or "bf16-mixed",
    )
    if args.gpus > 1 and args.distributed is None:
        cfg = default_layout(model, cfg, args.gpu_memory)
    est = estimate(model, cfg, gpu_gib=args.gpu_memory)
    fits = None if args.gpu_memory is None else est.device_gib <= args.gpu_memory
    speed = _speed(args, model, cfg)
    if args.format == "json":
        out = {
            **est.to_dict(),
            "model": model.name,
            "params_total": model.params_total,
            "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        }
        if fits is not None:
            out["gpu_memory_gib"], out["fits"] = args.gpu_memory, fits
        if speed is not None:
            out["tokens_per_s"], out["step_s"] = round(speed.tokens_per_s, 1), round(speed.step_s, 4)
            out["throughput"] = speed.to_dict()
            if args.tokens:
                out["tokens"], out["run_s"] = args.tokens, [round(x, 1) for x in speed.seconds(args.tokens)]
            plain = _plain_speed(args, model, cfg)
            if plain is not None:
                out["plain_tokens_per_s"] = round(plain.tokens_per_s, 1)
                out["speedup_vs_plain"] = round(speed.tokens_per_s / plain.tokens_per_s, 3)
        print(json.dumps(out, indent=2))
    else:
        from rich.console import Console

        console = Console()
        render_text(console, model, cfg, est, args.gpu_memory)
        if speed is not None:
            render_speed(console, speed, args.tokens, _plain_speed(args, model, cfg))
    return 1 if fits is False else 0


def _speed(args, model, cfg):
    """The throughput model's prediction on --gpu, or None without --gpu."""
    if args.gpu is None:
        if args.tokens:
            from advisor.errors import UserError

            raise UserError(
                "--tokens needs --gpu: the run's time depends on the card",
                "add --gpu NAME (e.g. --gpu H100), or drop --tokens",
            )
        return None
    from advisor.throughput import tokens_per_s

    return tokens_per_s(model, cfg, args.gpu)


def _plain_speed(args, model, cfg):
    """The same step on the plain stack (a plain PEFT loop), to predict the job's speed-up side by side."""
    from dataclasses import replace

    if cfg.stack == "plain" or cfg.stage == "dpo":
        return None
    from advisor.throughput import tokens_per_s

    return tokens_per_s(model, replace(cfg, stack="plain", packed_docs=False), args.gpu)


def render_speed(console, t, tokens: int | None, plain=None) -> None:
    """Tokens/s, step time, the run's time for --tokens, and what the prediction assumes."""
    from advisor.throughput.forecast import time_range

    gpus = f"{t.n_gpus} × {t.gpu}"
    console.print(
        f"Speed on {gpus}: [bold]{t.tokens_per_s:,.0f} tokens/s[/] ({t.tokens_per_s_low:,.0f} to "
        f"{t.tokens_per_s_high:,.0f}), {t.step_s:.3f} s per step of {t.tokens_per_step:,} tokens "
        f"({t.flops_per_token / 1e9:,.1f} GFLOP per token at {t.efficiency:.0%} of the dense peak, "
        f"{t.efficiency_key} fit)"
    )
    if plain is not None:
        console.print(
            f"A plain PEFT loop (--stack plain): {plain.tokens_per_s:,.0f} tokens/s; predicted speed-up "
            f"{t.tokens_per_s / plain.tokens_per_s:.2f}×"
        )
    if tokens:
        console.print(f"{tokens:,} tokens: [bold]{time_range(t.seconds(tokens))}[/]")
    for a in t.assumptions:
        console.print(f"  • assumed: {a}")


def default_layout(model, cfg, gpu_gib: float | None):
    """The layout `recommend` would plan for these GPUs: with a GPU size, the strategy search's pick for the
    largest micro-batch at this sequence length (advisor.strategy); without one, the job's default (LoRA: DDP,
    others: FSDP, as launcher/jobfiles.py's `distributed_mode`)."""
    from dataclasses import replace

    from advisor.memory import fit_search
    from advisor.rules import load_thresholds
    from advisor.strategy import best_layout

    margin = load_thresholds()["fit_margin"].value  # as the planner keeps free

    if gpu_gib is None:
        mode = "fsdp" if cfg.cpu_offload or cfg.method != "lora" else "ddp"
        return replace(cfg, distributed=mode)

    def fitter(m, method, n, mode, seq, gib, th):
        offload = mode == "fsdp_offload"
        c = replace(cfg, n_gpus=n, distributed="fsdp" if offload else mode, cpu_offload=offload)
        return fit_search(
            m, c, gib, margin=margin, target_effective_batch=max(8, cfg.batch_size), seq_lens=(cfg.seq_len,)
        )

    best = best_layout(model, cfg.method, [gpu_gib] * cfg.n_gpus, cfg.seq_len, {}, fitter)
    return replace(cfg, distributed=best.distributed or "ddp", cpu_offload=best.cpu_offload)


def _check_shapes(args, model) -> None:
    """Flags the model cannot take: an estimate for them is a number no job could produce."""
    from advisor.errors import UserError

    limit = model.max_position_embeddings
    if limit and args.seq_len > limit:
        raise UserError(
            f"--seq-len {args.seq_len:,} is longer than {model.name}'s context window "
            f"({limit:,} tokens, max_position_embeddings)",
            f"use --seq-len {limit} or less",
        )
    if args.method in ("lora", "qlora") and args.rank > model.hidden_size:
        raise UserError(
            f"--rank {args.rank:,} is larger than {model.name}'s hidden size ({model.hidden_size:,}): "
            "the adapter would hold more numbers than the weights it adapts",
            "use a low rank such as 8-64 (the default is 16)",
        )


def render_text(console, model, cfg, est, gpu_gib: float | None) -> None:
    """The breakdown table, the dominant component and the advice."""
    from rich.table import Table

    ckpt = "checkpointing" if cfg.grad_ckpt else "no checkpointing"
    what = f"{cfg.method}" + (f" r={cfg.rank}" if cfg.method in ("lora", "qlora") else "")
    rows = 2 * cfg.batch_size if cfg.stage == "dpo" else cfg.batch_size
    batch = f"DPO · {cfg.batch_size} pairs = {rows} rows" if cfg.stage == "dpo" else f"batch {cfg.batch_size}"
    console.print(
        f"[bold]{model.name}[/] ({model.params_total:,} parameters) · {what} · {batch} × "
        f"{cfg.seq_len} tokens = {rows * cfg.seq_len:,} tokens/step · {ckpt}"
        + (" · liger" if cfg.liger else "")
        + (
            f" · {cfg.n_gpus} GPUs, {cfg.distributed or 'ddp'}"
            + (" + CPU offload" if cfg.cpu_offload else "")
            if cfg.n_gpus > 1
            else ""
        )
        + f" · {cfg.stack} stack"
    )
    t = Table(title=f"Peak GPU memory per GPU (at the {est.phase})", title_justify="left")
    t.add_column("component")
    t.add_column("GiB", justify="right")
    t.add_column("share", justify="right")
    for k, v in sorted(est.breakdown.items(), key=lambda kv: -kv[1]):
        t.add_row(COMPONENT_LABELS.get(k, k), f"{v:.2f}", f"{v / est.peak_allocated_gib:.0%}")
    t.add_section()
    t.add_row("[bold]peak allocated[/]", f"[bold]{est.peak_allocated_gib:.2f}[/]", "")
    for k, v in est.overhead.items():
        t.add_row(f"+ {k.replace('_', ' ')}", f"{v:.2f}", "")
    t.add_row("[bold]GPU shows in use[/]", f"[bold]{est.device_gib:.2f}[/]", "")
    console.print(t)
    from advisor.precision import LABEL

    b = est.bytes_per_param
    what = "adapter" if cfg.method in ("lora", "qlora") else "trainable"
    console.print(
        f"Precision: [bold]{est.precision}[/] ({LABEL[est.precision]}): bytes per {what} parameter "
        f"{b['weight']:g} weight + {b['gradient']:g} gradient + {b['optimizer']:g} optimizer = "
        f"{b['trainable_total']:g}; frozen weights {b['frozen']:g}"
    )
    console.print(
        f"Dominant: [bold]{COMPONENT_LABELS.get(est.dominant, est.dominant)}[/] "
        f"({est.breakdown.get(est.dominant, 0):.2f} GiB)"
    )
    if gpu_gib is not None:
        ok = est.device_gib <= gpu_gib
        console.print(
            f"{'[green]Fits' if ok else '[red]Does not fit'}[/] a {gpu_gib:g} GiB GPU "
            f"({est.device_gib:.1f} GiB needed)"
        )
    for line in est.advice:
        console.print(f"  • {line}")
