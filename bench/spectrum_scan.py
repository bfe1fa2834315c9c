"""Benchmark `tunewise spectrum scan` on a random-initialised checkpoint of a real model's shapes.

    python bench/spectrum_scan.py --arch llama-1b --device cpu --out bench/results/spectrum-scan-llama-1b-cpu.json
    python bench/spectrum_scan.py --arch llama-8b --device cuda --out bench/results/spectrum-scan-llama-8b-h200.json

It writes the checkpoint once (sharded safetensors + index + config.json, bf16, cached under
--ckpt-dir), then times, each in a fresh cache:
  cold   - evict the weight files from the page cache (posix_fadvise DONTNEED), scan: reading from
           disk, hashing and scoring all included;
  cached - the same scan again: hashing only, scores from the cache;
  nocache- scan with the cache off and files in the page cache: reading + scoring alone
           (on CUDA also with one worker instead of four streams, for comparison).
Then, for a sample of matrices, it compares the scan's scores with an independent numpy float64
SVD and times the reference tool's method (one fp32 SVD per matrix) on the same device.

Weights: N(0, 0.02) (Llama's initializer_range) plus a rank-8 component whose strength varies by
layer and module, so that scores differ between layers as they do in trained models.
Imports only torch, safetensors, numpy and (for config.json) transformers, plus tunewise's scan.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from shapes import llama_shapes  # noqa: E402  (bench/shapes.py: the catalog's shapes)

ARCHS = {  # Llama-3.2-1B and Llama-3.1-8B shapes; "tiny" for tests
    "tiny": dict(
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=1024,
        tie_word_embeddings=True,
    ),
    "llama-1b": llama_shapes("llama-1b"),
    "llama-8b": llama_shapes("llama-8b"),
}
SHARD_BYTES = 2 << 30


def tensor_specs(a: dict) -> list[tuple[str, tuple[int, ...]]]:
    h, i, v = a["hidden_size"], a["intermediate_size"], a["vocab_size"]
    kv = a["num_key_value_heads"] * h // a["num_attention_heads"]
    specs = [("model.embed_tokens.weight", (v, h))]
    for n in range(a["num_hidden_layers"]):
        p = f"model.layers.{n}"
        specs += [
            (f"{p}.input_layernorm.weight", (h,)),
            (f"{p}.post_attention_layernorm.weight", (h,)),
            (f"{p}.self_attn.q_proj.weight", (h, h)),
            (f"{p}.self_attn.k_proj.weight", (kv, h)),
            (f"{p}.self_attn.v_proj.weight", (kv, h)),
            (f"{p}.self_attn.o_proj.weight", (h, h)),
            (f"{p}.mlp.gate_proj.weight", (i, h)),
            (f"{p}.mlp.up_proj.weight", (i, h)),
            (f"{p}.mlp.down_proj.weight", (h, i)),
        ]
    specs.append(("model.norm.weight", (h,)))
    if not a["tie_word_embeddings"]:
        specs.append(("lm_head.weight", (v, h)))
    return specs


def make_tensor(name: str, shape: tuple[int, ...], gen, device: str):
    import torch

    if len(shape) == 1:
        return torch.ones(shape, dtype=torch.bfloat16)
    w = torch.randn(shape, generator=gen, device=device) * 0.02
    if ".layers." in name:
        strength = 0.5 + 2.0 * torch.rand((), generator=gen, device=device)  # differs per matrix
        u = torch.randn(shape[0], 8, generator=gen, device=device) / math.sqrt(shape[0])
        v = torch.randn(8, shape[1], generator=gen, device=device) / math.sqrt(shape[1])
        w += strength * 0.02 * math.sqrt(max(shape)) * (u @ v)
    return w.to(torch.bfloat16).cpu()


def build_checkpoint(arch: str, root: Path, seed: int, device: str) -> Path:
    """Write (once) a sharded bf16 checkpoint; a `.complete` marker makes later runs reuse it."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    d = root / f"{arch}-seed{seed}"
    if (d / ".complete").exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator(device=device).manual_seed(seed)
    specs = tensor_specs(ARCHS[arch])
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in specs:
        nbytes = 2 * math.prod(shape)
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    weight_map = {}
    for k, group in enumerate(shards, 1):
        fname = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        save_file(
            {n: make_tensor(n, s, gen, device) for n, s in group}, str(d / fname), metadata={"format": "pt"}
        )
        weight_map.update({n: fname for n, _ in group})
        print(f"  wrote {fname}", file=sys.stderr, flush=True)
    total = sum(2 * math.prod(s) for _, s in specs)
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1)
    )
    LlamaConfig(
        **ARCHS[arch],
        head_dim=ARCHS[arch]["hidden_size"] // ARCHS[arch]["num_attention_heads"],
        torch_dtype="bfloat16",
    ).save_pretrained(d)
    (d / ".complete").write_text("ok\n")
    return d


def evict(d: Path) -> bool:
    """Drop the weight files' pages from the page cache, so the next read comes from disk."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for p in d.glob("*.safetensors"):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def reference_score(w) -> float:
    """The published formula on numpy's float64 SVD (independent of the Gram path)."""
    import numpy as np

    n, m = w.shape
    s = np.linalg.svd(w, compute_uv=False)
    s = np.where(s < 1e3 * max(n, m) * 2.0**-52 * s[0], 0.0, s)
    sigma = (np.quantile(s, 0.75) - np.quantile(s, 0.25)) / 1.349
    eps = sigma * (1 + math.sqrt(min(n, m) / max(n, m)))
    noise = s[s <= eps].sum()
    return float(s[s > eps].sum() / (noise if noise > 0 else 1.0) / s[0])


def reference_tool_score(w, device: str) -> float:
    """The reference tool's computation: torch.linalg.svdvals in fp32, torch.quantile."""
    import torch

    s = torch.linalg.svdvals(w.to(device=device, dtype=torch.float32))
    n, m = w.shape
    sigma = (torch.quantile(s, 0.75) - torch.quantile(s, 0.25)) / 1.349
    eps = sigma * (1 + math.sqrt(min(n, m) / max(n, m)))
    noise = s[s <= eps].sum()
    return float(s[s > eps].sum() / (noise if noise != 0 else 1.0) / s[0])


def compare_sample(d: Path, result, n_sample: int, device: str, seed: int) -> list[dict]:
    import torch
    from safetensors import safe_open

    from advisor.spectrum.score import matrix_score

    index = json.loads((d / "model.safetensors.index.json").read_text())["weight_map"]
    by_type: dict[str, list[str]] = {}
    for module, t in result.types.items():
        by_type.setdefault(t, []).append(module)
    rng = random.Random(seed)
    picks = [rng.choice(sorted(v)) for _, v in sorted(by_type.items())]
    rng.shuffle(picks)
    rows = []
    for module in picks[:n_sample]:
        name = f"{module}.weight"
        with safe_open(str(d / index[name]), framework="pt") as fh:
            w = fh.get_tensor(name)
        t = time.perf_counter()
        ref = reference_score(w.double().numpy())
        t_np = time.perf_counter() - t
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        sync()
        t = time.perf_counter()
        ours = matrix_score(w, device)
        sync()
        t_ours = time.perf_counter() - t
        t = time.perf_counter()
        fp32 = reference_tool_score(w, device)
        sync()
        t_fp32 = time.perf_counter() - t
        rows.append(
            {
                "module": module,
                "shape": list(w.shape),
                "scan_score": result.scores[module],
                "numpy_f64_svd_score": ref,
                "rel_err": abs(result.scores[module] - ref) / abs(ref),
                "method": ours.method,
                "fp32_svd_score": fp32,
                "fp32_rel_err": abs(fp32 - ref) / abs(ref),
                "seconds_ours": round(t_ours, 4),
                "seconds_fp32_svd": round(t_fp32, 4),
                "seconds_numpy_f64_svd": round(t_np, 3),
            }
        )
        print(
            f"  {module} {tuple(w.shape)}: rel err {rows[-1]['rel_err']:.2e} ({ours.method}), "
            f"fp32 SVD rel err {rows[-1]['fp32_rel_err']:.2e}; {t_ours:.3f} s vs fp32 SVD {t_fp32:.3f} s",
            file=sys.stderr,
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", choices=sorted(ARCHS), default="llama-1b")
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto")
    ap.add_argument("--out", help="write the JSON result here")
    ap.add_argument(
        "--ckpt-dir",
        default=os.path.join(tempfile.gettempdir(), "tunewise-bench"),
        help="where the generated checkpoint is kept between runs",
    )
    ap.add_argument("--svd-sample", type=int, default=7, help="matrices compared with numpy's float64 SVD")
    ap.add_argument("--top-percent", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    from advisor.spectrum.scanner import _resolve_device, scan

    device = _resolve_device(args.device)
    t = time.perf_counter()
    d = build_checkpoint(args.arch, Path(args.ckpt_dir), args.seed, device)
    t_build = time.perf_counter() - t
    weights_gb = sum(p.stat().st_size for p in d.glob("*.safetensors")) / 1e9
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="tunewise-bench-cache-")
    cache = d / ".tunewise-spectrum"
    for p in cache.glob("*.json") if cache.exists() else []:
        p.unlink()
    evicted = evict(d)
    load_before = round(os.getloadavg()[0], 2)  # other work on the machine skews CPU timings
    print(
        f"checkpoint {d} ({weights_gb:.2f} GB, {t_build:.1f} s to build/find); scanning on {device}",
        file=sys.stderr,
        flush=True,
    )
    cold = scan(d, top_percent=args.top_percent, device=device)
    cached = scan(d, top_percent=args.top_percent, device=device)
    nocache = scan(d, top_percent=args.top_percent, device=device, use_cache=False)
    serial = (
        scan(d, top_percent=args.top_percent, device=device, use_cache=False, workers=1)
        if device.startswith("cuda")
        else None
    )
    assert cached.cache_hit and not cold.cache_hit and cached.scores == cold.scores
    same = max(abs(nocache.scores[k] - cold.scores[k]) / abs(cold.scores[k]) for k in cold.scores)
    sample = compare_sample(d, cold, args.svd_sample, device, args.seed)
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else None
    out = {
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "arch": args.arch,
        "shapes": ARCHS[args.arch],
        "device": device,
        "gpu": gpu,
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "weights_gb": round(weights_gb, 3),
        "page_cache_evicted": evicted,
        "matrices": len(cold.scores),
        "methods": cold.methods,
        "cold_seconds": round(cold.seconds, 2),
        "cold_hash_seconds": round(cold.hash_seconds, 2),
        "hash_gb_per_s": round(weights_gb / max(cold.hash_seconds, 1e-9), 2),
        "cached_seconds": round(cached.seconds, 2),
        "nocache_seconds": round(nocache.seconds, 2),
        "nocache_one_worker_seconds": round(serial.seconds, 2) if serial else None,
        "load_average_1min_before_after": [load_before, round(os.getloadavg()[0], 2)],
        "rescan_max_rel_diff": same,
        "trainable_params": cold.trainable_params,
        "total_params": cold.total_params,
        "sample": sample,
        "sample_max_rel_err": max((r["rel_err"] for r in sample), default=None),
        "sample_fp32_svd_max_rel_err": max((r["fp32_rel_err"] for r in sample), default=None),
        "selected": {k: [i for i, _ in v] for k, v in cold.selected.items()},
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    fp32_ratio = (
        sum(r["seconds_fp32_svd"] for r in sample) / max(sum(r["seconds_ours"] for r in sample), 1e-9)
        if sample
        else float("nan")
    )
    print(
        f"{args.arch} on {gpu or device}: {len(cold.scores)} matrices, {weights_gb:.2f} GB\n"
        f"  cold scan {cold.seconds:.1f} s (hashing {cold.hash_seconds:.1f} s = {out['hash_gb_per_s']} GB/s), "
        f"cached rescan {cached.seconds:.2f} s, scan without cache {nocache.seconds:.1f} s"
        f"{f' ({serial.seconds:.1f} s with one worker)' if serial else ''}\n"
        f"  methods {cold.methods}; sample of {len(sample)} vs numpy float64 SVD: max rel err "
        f"{out['sample_max_rel_err']:.1e} (reference tool's fp32 SVD: {out['sample_fp32_svd_max_rel_err']:.1e}, "
        f"{fp32_ratio:.1f}x our time per matrix)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
