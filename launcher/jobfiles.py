"""The files that describe how to run a plan: plan.yaml, launch.sh, slurm.sbatch, accelerate.yaml.

Also the exact process command the launcher starts (`train_command`), so launch.sh documents what
actually runs. Commands are argument lists; where they are shown as shell text they are quoted with
`shlex`.
"""

from __future__ import annotations

import math
import shlex
import sys
from pathlib import Path
from string import Template

import yaml

from advisor import __version__
from advisor.plan import TrainingPlan

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text(encoding="utf-8"))


def _summary(plan: TrainingPlan) -> str:
    # It goes into `#` comment lines: a newline in a model path must not start a shell or YAML line.
    model = "".join(c if c.isprintable() else "?" for c in str(plan.model))
    return f"{model} · {plan.method} · {plan.stage} · {plan.n_gpus} GPU(s)"


def train_command(
    run_dir: str | Path,
    plan: TrainingPlan,
    *,
    python: str | None = None,
    extra: list[str] | None = None,
    cpu_processes: int | None = None,
) -> list[str]:
    """The argument list that runs `launcher.train` for this plan.

    One GPU: a plain Python process. Several GPUs: `accelerate launch` with the run's accelerate.yaml.
    `cpu_processes` > 1 (smoke runs of multi-GPU plans, tests): torchrun with the gloo backend, the
    same multi-process code path without GPUs.
    """
    # -P: the working directory (the run directory) is never put on sys.path, so a `yaml.py` or
    # `launcher/` left there is not imported; the processes torchrun/accelerate start get PYTHONSAFEPATH.
    py = python or sys.executable
    rd = str(run_dir)
    tail = ["-m", "launcher.train", rd, *(extra or [])]
    if cpu_processes and cpu_processes > 1:
        return [
            py,
            "-P",
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={cpu_processes}",
            *tail,
        ]
    if plan.n_gpus > 1:
        return [
            py,
            "-P",
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(Path(rd) / "accelerate.yaml"),
            "--num_processes",
            str(plan.n_gpus),
            *tail,
        ]
    return [py, "-P", *tail]


def plan_yaml(plan: TrainingPlan) -> str:
    head = (
        f"# tunewise {__version__} training plan: {_summary(plan)}\n"
        "# Run it:  tunewise launch RUN_DIR   (or ./launch.sh; add --smoke for a CPU dry run)\n"
        "# This file is the single source of truth for the job; `reasons` says where each value came from.\n"
    )
    return head + plan.to_yaml()


def launch_sh(plan: TrainingPlan) -> str:
    cmd = shlex.join(train_command("RUN_DIR", plan, python="python")).replace("RUN_DIR", "$RUN_DIR")
    return _template("launch.sh").substitute(summary=_summary(plan), command=cmd)


def slurm_sbatch(plan: TrainingPlan) -> str:
    gpus = max(1, plan.n_gpus)
    if gpus > 1:
        # One accelerate launcher per node; it starts one process per GPU and joins the others over TCP.
        # SLURM_NODEID differs per node, so the command is expanded by a shell on each node.
        inner = (
            'accelerate launch --config_file accelerate.yaml --num_machines "$SLURM_NNODES" '
            f'--num_processes "$(( SLURM_NNODES * {gpus} ))" --machine_rank "$SLURM_NODEID" '
            '--main_process_ip "$MAIN_ADDR" --main_process_port 29500 -m launcher.train "$RUN_DIR"'
        )
        launcher = "bash -c " + shlex.quote(inner)
    else:
        launcher = 'python -P -m launcher.train "$RUN_DIR"'
    name = (
        "tunewise-" + "".join(c if c.isalnum() or c in "-_." else "-" for c in plan.model.split("/")[-1])[:40]
    )
    limit, why = slurm_time(plan)
    return _template("slurm.sbatch").substitute(
        summary=_summary(plan),
        gpus=gpus,
        cpus=8 * gpus,
        job_name=name,
        launcher=launcher,
        time=limit,
        time_why=why,
    )


# Slurm's --time from the plan's forecast: the longest predicted run x this margin + a fixed allowance for
# what the forecast leaves out (loading the model and data, saving, the end-of-run evaluation), rounded up
# to a quarter hour. A job that still runs out of time checkpoints on SIGTERM and resumes when resubmitted.
SLURM_TIME_MARGIN = 1.5
SLURM_TIME_ALLOWANCE_S = 30 * 60
SLURM_TIME_UNKNOWN = "24:00:00"


def slurm_time(plan: TrainingPlan) -> tuple[str, str]:
    """(HH:MM:SS or D-HH:MM:SS for #SBATCH --time, the comment saying where it comes from)."""
    sp = plan.speed
    if sp is None or not sp.run_s:
        return SLURM_TIME_UNKNOWN, (
            "no time forecast for this plan (see `speed` in plan.yaml's reasons): "
            "a 24-hour limit; set your own"
        )
    longest = sp.run_s[2]
    limit = math.ceil((longest * SLURM_TIME_MARGIN + SLURM_TIME_ALLOWANCE_S) / 900) * 900
    d, rest = divmod(limit, 86400)
    h, rest = divmod(rest, 3600)
    text = (f"{d}-" if d else "") + f"{h:02d}:{rest // 60:02d}:00"
    return text, (
        f"the forecast's longest run ({longest / 3600:.1f} h on {sp.n_gpus} × {sp.gpu}) × "
        f"{SLURM_TIME_MARGIN:g} + {SLURM_TIME_ALLOWANCE_S // 60} min for loading, saving and the final "
        "evaluation, rounded up to 15 min"
    )


def accelerate_yaml(plan: TrainingPlan) -> str:
    """An accelerate config for `plan.n_gpus` processes on one machine (Slurm overrides the machine count)."""
    mode = plan.distributed_mode
    cfg: dict = {
        "compute_environment": "LOCAL_MACHINE",
        "num_machines": 1,
        "machine_rank": 0,
        "num_processes": plan.n_gpus,
        "mixed_precision": "bf16" if plan.bf16 else "no",
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": False,
        "main_training_function": "main",
    }
    if mode == "ddp":
        cfg["distributed_type"] = "MULTI_GPU"
    elif mode == "fsdp":
        cfg["distributed_type"] = "FSDP"
        cfg["fsdp_config"] = {
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_backward_prefetch": "BACKWARD_PRE",
            "fsdp_cpu_ram_efficient_loading": True,
            # The planner turns offload on only when no layout without it fits (it is much slower).
            "fsdp_offload_params": bool(plan.cpu_offload),
            "fsdp_sharding_strategy": "FULL_SHARD",
            "fsdp_state_dict_type": "SHARDED_STATE_DICT",
            "fsdp_sync_module_states": True,
            # Spectrum and full mix frozen and trainable tensors in one wrapped unit: that needs the
            # original parameters. (Q)LoRA keeps FSDP's flat parameters (the FSDP+QLoRA recipe).
            "fsdp_use_orig_params": plan.method in ("spectrum", "full"),
        }
    elif mode == "zero3":
        cfg["distributed_type"] = "DEEPSPEED"
        cfg["deepspeed_config"] = {
            "zero_stage": 3,
            "offload_optimizer_device": "none",
            "offload_param_device": "none",
            "zero3_init_flag": True,
            "zero3_save_16bit_model": True,
        }
    head = (
        f"# accelerate config for: {_summary(plan)} ({mode})\n"
        "# Used by: accelerate launch --config_file accelerate.yaml -m launcher.train RUN_DIR\n"
    )
    return head + yaml.safe_dump(cfg, sort_keys=False)
