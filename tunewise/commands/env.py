"""`tunewise env`: versions, GPUs and CUDA, for bug reports."""

from __future__ import annotations

import json
import platform
import sys
from importlib import metadata

PACKAGES = [
    "tunewise",
    "torch",
    "transformers",
    "peft",
    "trl",
    "bitsandbytes",
    "datasets",
    "accelerate",
    "liger-kernel",
    "safetensors",
    "tokenizers",
    "nvidia-ml-py",
    "rich",
    "questionary",
    "common-expression-language",
]


def add_parser(sub):
    p = sub.add_parser("env", help="print versions, GPUs and CUDA (paste into bug reports)")
    p.add_argument("--format", choices=["text", "json"], default="text", help="text or json (on stdout)")
    return p


def collect() -> dict:
    from advisor.hardware import detect_gpus

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    det = detect_gpus()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "driver": det.driver,
        "cuda_driver_version": det.cuda_driver_version,
        "gpus": [g.to_dict() for g in det.gpus],
        "gpu_note": det.reason,
    }


def run(args) -> int:
    info = collect()
    if args.format == "json":
        print(json.dumps(info, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]tunewise env[/]  python {info['python']}  ({info['platform']})")
    t = Table("package", "version")
    for k, v in info["packages"].items():
        t.add_row(k, v or "[dim]not installed[/]")
    console.print(t)
    if info["gpus"]:
        console.print(f"NVIDIA driver {info['driver']}, CUDA driver API {info['cuda_driver_version']}")
        for g in info["gpus"]:
            console.print(
                f"  GPU {g['index']}: {g['name']}, {g['memory_gib']} GiB "
                f"({g['free_gib']} GiB free), compute capability {g['compute_capability']}, "
                f"bf16 {'yes' if g['bf16'] else 'no'}"
            )
    else:
        console.print(f"GPUs: none ({info['gpu_note']})")
    return 0
