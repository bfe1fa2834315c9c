"""Where a training step's time goes: run a training script unchanged under torch.profiler.

    python bench/gpu_profile.py --out DIR [--skip 2] [--steps 2] -- -m launcher.train RUN_DIR
    python bench/gpu_profile.py --out DIR -- bench/calibration/measure_plain_stack.py --one '{...}'

The target runs in this process (as `python -m MODULE` / `python SCRIPT` would run it). The profiler's
window is moved by the optimizer itself (a global optimizer step hook), so the same wrapper profiles
TRL's Trainer, the shared calibration loop, or any script that calls `optimizer.step()`, without a
line changed in them: `--skip` optimizer steps are left out (model load, warm-up), one more warms the
profiler up, and the next `--steps` are recorded.

Writes DIR/profile.json and DIR/profile.txt: per optimizer step, wall time, time the device was busy
(kernels), kernel count; device time by kernel category (matmul, attention, elementwise, copy/cast,
norm/activation kernels, loss/reduction, dropout, optimizer, other); the top kernels; and the top operators
with their input shapes (a LoRA adapter's skinny matmuls show up as (tokens x in) @ (in x rank)). On a
machine without a GPU the same tables are built from CPU time (a rehearsal, not a GPU figure).
Profiled steps run slower than unprofiled ones: speed figures come from bench/gpu_train.py, not here.
"""

from __future__ import annotations

import argparse
import json
import re
import runpy
import sys
import time
from pathlib import Path

# Kernel (or, on CPU, operator) name -> category. First match wins; names as CUDA/cuBLAS/Triton emit them.
CATEGORIES = [
    ("optimizer", r"adam|multi_tensor|foreach|fused_adam"),
    ("dropout", r"dropout|bernoulli"),
    ("attention", r"flash|fmha|attention|sdpa|efficient_attention|_efficient"),
    ("matmul", r"gemm|nvjet|xmma|cutlass|cublas|splitk|matmul|^aten::(mm|addmm|bmm|baddbmm|linear)$"),
    ("norm / activation", r"rms|layer_?norm|swiglu|silu|gelu|rope|rotary|liger"),
    ("loss / reduction", r"softmax|cross_entropy|nll|logprob|logsumexp|reduce|argmax|max_|sum_|entropy"),
    ("copy / cast", r"copy|cast|convert|memcpy|memset|fill|to_copy|cat_|index|gather|scatter"),
    ("elementwise", r"elementwise|vectorized|unrolled|^aten::(mul|add|div|sub|neg|pow|rsqrt|tanh|exp|where)"),
]


def category(name: str) -> str:
    low = name.lower()
    for cat, pattern in CATEGORIES:
        if re.search(pattern, low):
            return cat
    return "other"


def _device_time(e) -> float:
    """Self time on the device of one key_averages entry, in microseconds (attribute renamed across torch)."""
    for attr in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(e, attr):
            return float(getattr(e, attr))
    return 0.0


def _total_device_time(e) -> float:
    for attr in ("device_time_total", "cuda_time_total"):
        if hasattr(e, attr):
            return float(getattr(e, attr))
    return 0.0


def summarise(prof, *, steps: int, wall_s: list[float], on_gpu: bool) -> dict:
    """Tables from a finished profiler window of `steps` optimizer steps."""
    from torch.autograd import DeviceType

    events = prof.key_averages()
    if on_gpu:  # kernels: events that ran on the device
        kernels = [
            (e.key, _device_time(e), e.count)
            for e in events
            if getattr(e, "device_type", None) == DeviceType.CUDA and _device_time(e) > 0
        ]
    else:  # CPU rehearsal: operators' self CPU time
        kernels = [
            (e.key, float(e.self_cpu_time_total), e.count)
            for e in events
            if e.self_cpu_time_total > 0 and not e.key.startswith("ProfilerStep")
        ]
    busy_us = sum(t for _, t, _ in kernels)
    cats: dict[str, float] = {}
    for name, t, _ in kernels:
        cats[category(name)] = cats.get(category(name), 0.0) + t
    top = sorted(kernels, key=lambda k: -k[1])[:30]
    ops = prof.key_averages(group_by_input_shape=True)
    timed = [
        (e.key, str(e.input_shapes), _total_device_time(e) if on_gpu else float(e.cpu_time_total), e.count)
        for e in ops
        if e.key.startswith("aten::")
    ]
    top_ops = sorted(timed, key=lambda o: -o[2])[:30]
    wall_ms = 1000 * sum(wall_s) / max(1, len(wall_s))
    per = 1000.0 * steps  # µs over the window -> ms per step
    return {
        "time_source": "device kernels" if on_gpu else "CPU operators (rehearsal)",
        "steps_profiled": steps,
        "wall_ms_per_step": round(wall_ms, 2),
        "busy_ms_per_step": round(busy_us / per, 2),
        "busy_fraction": round(busy_us / per / wall_ms, 3) if wall_ms and on_gpu else None,
        "kernels_per_step": round(sum(c for _, _, c in kernels) / steps, 1),
        "categories_ms_per_step": {
            k: round(v / per, 2) for k, v in sorted(cats.items(), key=lambda kv: -kv[1])
        },
        "top_kernels": [
            {
                "name": n[:160],
                "ms_per_step": round(t / per, 3),
                "calls_per_step": round(c / steps, 1),
                "category": category(n),
            }
            for n, t, c in top
        ],
        "top_ops": [
            {
                "op": k,
                "shapes": s[:200],
                "ms_per_step": round(t / per, 3),
                "calls_per_step": round(c / steps, 1),
            }
            for k, s, t, c in top_ops
        ],
    }


def render(res: dict, command: str) -> str:
    lines = [
        f"$ {command}",
        "",
        f"time from: {res['time_source']}; {res['steps_profiled']} optimizer steps profiled",
        f"wall {res['wall_ms_per_step']} ms/step, busy {res['busy_ms_per_step']} ms/step"
        + (f" ({res['busy_fraction']:.0%} of wall)" if res["busy_fraction"] is not None else "")
        + f", {res['kernels_per_step']} kernels/step",
        "",
        "by category (ms per step):",
    ]
    lines += [f"  {k:<20}{v:>10.2f}" for k, v in res["categories_ms_per_step"].items()]
    lines += ["", "top kernels (ms/step, calls/step, category):"]
    lines += [
        f"  {k['ms_per_step']:>9.3f} {k['calls_per_step']:>8.1f}  {k['category']:<18} {k['name'][:100]}"
        for k in res["top_kernels"]
    ]
    lines += ["", "top operators by total time incl. children (ms/step, calls/step, input shapes):"]
    lines += [
        f"  {o['ms_per_step']:>9.3f} {o['calls_per_step']:>8.1f}  {o['op']:<28} {o['shapes'][:110]}"
        for o in res["top_ops"]
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print(
            "usage: gpu_profile.py --out DIR [--skip N] [--steps N] -- (-m MODULE | SCRIPT) ARGS...",
            file=sys.stderr,
        )
        return 2
    cut = argv.index("--")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--skip", type=int, default=2, help="optimizer steps before the profiler warms up")
    ap.add_argument("--steps", type=int, default=2, help="optimizer steps recorded")
    args = ap.parse_args(argv[:cut])
    target = argv[cut + 1 :]
    if not target:
        print("gpu_profile.py: nothing to run after --", file=sys.stderr)
        return 2

    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook
    from torch.profiler import ProfilerActivity, profile, schedule

    on_gpu = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    command = " ".join(["python", "bench/gpu_profile.py", *argv])
    marks: list[float] = []
    done: dict = {}

    def ready(prof) -> None:
        first = args.skip + 1  # the warm-up step's end opens the recorded window
        if len(marks) < first + args.steps:
            return  # the script ended inside the window (the profiler stops on exit): a partial window is no figure
        wall = [b - a for a, b in zip(marks[first - 1 :], marks[first:], strict=False)][: args.steps]
        done["result"] = summarise(prof, steps=args.steps, wall_s=wall, on_gpu=on_gpu)

    prof = profile(
        activities=activities,
        record_shapes=True,
        schedule=schedule(wait=args.skip, warmup=1, active=args.steps, repeat=1),
        on_trace_ready=ready,
    )

    def on_step(optimizer, a, kw) -> None:
        if on_gpu:
            torch.cuda.synchronize()  # a step's wall time ends when its kernels do
        marks.append(time.perf_counter())
        prof.step()

    handle = register_optimizer_step_post_hook(on_step)
    code = 0
    with prof:
        try:
            if target[0] == "-m":
                sys.argv = [target[1], *target[2:]]
                runpy.run_module(target[1], run_name="__main__", alter_sys=True)
            else:
                sys.argv = list(target)
                runpy.run_path(target[0], run_name="__main__")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    handle.remove()
    if "result" not in done:
        print(
            f"gpu_profile.py: the target made {len(marks)} optimizer steps; {args.skip + 1 + args.steps} are needed "
            "(raise its steps or lower --skip/--steps)",
            file=sys.stderr,
        )
        return code or 1
    res = {"command": command, "exit_code": code, **done["result"]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out / "profile.txt").write_text(render(res, command))
    print(f"[gpu_profile] {res['wall_ms_per_step']} ms/step wall; tables in {args.out}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
