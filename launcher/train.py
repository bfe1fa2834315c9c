"""Train the plan in a run directory with TRL: the script `tunewise launch` runs.

    python -m launcher.train RUN_DIR [--max-steps N] [--save-steps N]
    accelerate launch --config_file RUN_DIR/accelerate.yaml -m launcher.train RUN_DIR

It reads top to bottom like TRL's own `trl/scripts/sft.py`: plan -> data -> model (+ 4-bit
quantisation / LoRA / Spectrum freezing) -> trainer -> train -> save -> summary. Everything it does
is decided by RUN_DIR/plan.yaml; edit that (or this script) freely. Running it again on the same
directory resumes from the last checkpoint (optimizer, scheduler and RNG state), after checking that
the plan, data and base model are the ones the checkpoint was made with.

Exit codes: 0 done; 2 bad input (plan, data, missing model); 75 out of memory in the first steps (the
launcher steps down and retries); 130 stopped by SIGTERM/Ctrl-C after saving a checkpoint; 1 failed.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time
from pathlib import Path

from advisor.errors import UserError
from advisor.plan import TrainingPlan
from launcher import fingerprint
from launcher.packing import use_packed_rows
from launcher.rundir import final_dir
from launcher.summary import write_summary

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_OOM, EXIT_STOPPED = 1, 2, 75, 130
GiB = 1024**3
OOM_EARLY_STEPS = 10  # an OOM after this many steps is not a micro-batch problem the ladder can fix
DONE_MARKER = "tunewise_stage_done.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m launcher.train", description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path, help="run directory holding plan.yaml")
    ap.add_argument(
        "--max-steps", type=int, default=None, help="stop after N optimizer steps (overrides the plan)"
    )
    ap.add_argument(
        "--save-steps", type=int, default=None, help="checkpoint every N steps (overrides the plan)"
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from launcher.jobcontrol import StopRequest, hold_for_job, release

    stop = StopRequest()  # first, so a Ctrl-C or SIGTERM in the job's first seconds is a stop, not a crash
    try:
        return _main(argv, stop, hold_for_job)
    finally:
        stop.restore()
        release()


def _main(argv: list[str] | None, stop, hold_for_job) -> int:
    args = parse_args(argv)
    run_dir = args.run_dir.resolve()
    if os.environ.get("TUNEWISE_ALLOW_NETWORK") != "1":
        # The job never reaches the network unless the user allowed it (`tunewise launch --allow-network`).
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
            os.environ[var] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        plan = TrainingPlan.load(run_dir / "plan.yaml")
        hold_for_job(
            run_dir
        )  # the run stays locked until this process ends, whatever happens to the launcher
    except UserError as e:
        print(f"tunewise: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    stop.watch_launcher()
    code = EXIT_FAILED
    try:
        code = run_stages(run_dir, plan, args, stop)
    finally:
        if is_main_process():
            end_summary(run_dir, code, stop)
    if code == 0 and is_main_process():
        from launcher.evaluation import evaluate_at_end

        evaluate_at_end(run_dir, plan)  # plan.evaluation decides; never fails the finished job
    return code


def end_summary(run_dir: Path, code: int, stop) -> None:
    """summary.json always ends in a final status, even when the job stops before training or fails in a
    way no handler saw; and the error path itself never fails (the disk may be full)."""
    from launcher.summary import read_summary

    status = read_summary(run_dir).get("status")
    if status in (None, "running") and code != 0:
        if stop.requested or code == EXIT_STOPPED:
            safe_summary(run_dir, status="stopped")
        else:
            safe_summary(
                run_dir,
                status="failed",
                error=read_summary(run_dir).get("error")
                or f"the training job ended with exit code {code} (see train.log)",
            )


def safe_summary(run_dir: Path, **values) -> None:
    """write_summary for error paths: a failure to write is reported, never raised over the real error."""
    try:
        write_summary(run_dir, **values)
    except Exception as e:  # noqa: BLE001 - e.g. a full disk; the original error matters more
        print(f"[tunewise] could not update summary.json: {e}", file=sys.stderr, flush=True)


def run_stages(run_dir: Path, plan: TrainingPlan, args: argparse.Namespace, stop) -> int:
    stages = ["sft", "dpo"] if plan.stage == "sft+dpo" else [plan.stage]
    for i, stage in enumerate(stages):
        if (final_dir(run_dir, plan, stage, last=i == len(stages) - 1) / DONE_MARKER).exists():
            continue  # finished on an earlier launch
        try:
            code = train_stage(run_dir, plan, stage, i, stages, args, stop)
        except UserError as e:
            print(f"tunewise: error: {e}", file=sys.stderr)
            if is_main_process():
                safe_summary(run_dir, status="failed", stage=stage, method=plan.method, error=e.message)
            return EXIT_BAD_INPUT
        except Exception as e:  # a crash: the record says so (and why) before the traceback
            from launcher.summary import read_summary

            done = read_summary(run_dir)
            if is_main_process() and not (done.get("status") == "failed" and done.get("stage") == stage):
                write_summary(
                    run_dir,
                    status="failed",
                    stage=stage,
                    method=plan.method,
                    error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                )
            raise
        if code:
            return code
    return 0


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def train_stage(
    run_dir: Path,
    plan: TrainingPlan,
    stage: str,
    index: int,
    stages: list[str],
    args: argparse.Namespace,
    stop,
) -> int:
    import torch
    from transformers import AutoTokenizer, EarlyStoppingCallback

    from launcher import precision as prec
    from launcher.callbacks import (
        FaultInjection,
        LogLastStep,
        MarkComplete,
        MetricsLog,
        SpeedProbe,
        StopOnSignal,
        stage_metrics,
    )
    from launcher.checkpoints import newest_complete

    main_proc = is_main_process()
    cuda = torch.cuda.is_available()
    precision, note = prec.effective(plan, cuda)
    if note:
        print(f"[tunewise] precision: {note}", flush=True)
    out_dir = run_dir / "output" / stage
    # The newest checkpoint a resume can use; a save that was cut off is set aside, not resumed from.
    ckpt, skipped = newest_complete(out_dir, set_aside=main_proc)
    for note in skipped:
        print(f"[tunewise] {note}", flush=True)
    last_ckpt = str(ckpt) if ckpt else None

    # 1. Resume only the job the checkpoint belongs to.
    if last_ckpt:
        fingerprint.check(run_dir, plan)
        print(f"[tunewise] resuming {stage} from {last_ckpt}", flush=True)
    elif index == 0 and main_proc:
        fingerprint.save(run_dir, plan)

    # 2. Data: JSONL in a TRL-native format (messages / prompt+completion / text / preference).
    train_ds, eval_ds = load_data(run_dir, plan, stage)

    # 3. Tokenizer and model. A DPO stage after SFT continues from the SFT adapter.
    try:
        tokenizer = AutoTokenizer.from_pretrained(plan.model, trust_remote_code=plan.trust_remote_code)
    except OSError as e:
        raise not_local(plan, e) from None
    if stage == "sft" and plan.completion_only_loss:
        from launcher.chatdata import prepare

        train_ds, eval_ds, note = prepare(tokenizer, train_ds, eval_ds)
        if note:
            print(f"[tunewise] {note}", flush=True)
    left_out = 0
    if stage == "dpo" or plan.completion_only_loss:  # a row whose prompt fills max_length trains nothing
        from launcher.trainable import drop_untrainable

        smoke = "smoke" in plan.reasons  # launcher/smoke.py's plan: max_length cut to 256 for speed
        train_ds, left_out = drop_untrainable(tokenizer, train_ds, plan.max_length, smoke=smoke)
        eval_ds, _ = drop_untrainable(
            tokenizer, eval_ds, plan.max_length, what="validation", required=False, smoke=smoke
        )
    model = load_model(plan, cuda, precision)
    peft_config = lora_config(plan)
    if stage == "dpo" and index > 0:
        model = continue_from(model, plan, final_dir(run_dir, plan, "sft", last=False))
        peft_config = None
    if plan.method == "spectrum":
        n = freeze_for_spectrum(model, plan.spectrum.unfrozen_parameters)
        print(f"[tunewise] spectrum: {n:,} parameters trainable", flush=True)
    if prec.master_weights(model, plan, precision):
        print(
            f"[tunewise] precision {precision}: fp32 master weights for the trainable base weights",
            flush=True,
        )

    # 4. Trainer.
    config = trainer_config(plan, stage, out_dir, train_ds, eval_ds, args, cuda, precision)
    sp = plan.speed
    speed = SpeedProbe(
        run_dir / "metrics.jsonl",
        stage,
        sp.step_s.get(stage) if sp else None,
        sp.tokens_per_s.get(stage) if sp else None,
        compare=cuda,
    )
    callbacks = [
        StopOnSignal(stop),
        MarkComplete(),
        MetricsLog(run_dir / "metrics.jsonl", stage),
        speed,
        FaultInjection(),
        LogLastStep(),
    ]
    if eval_ds is not None and plan.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=plan.early_stopping_patience))
    if stage == "dpo":
        from trl import DPOTrainer

        # ref_model=None: with an adapter, TRL uses the model itself with the adapter disabled (or,
        # continuing from SFT, a frozen copy of the SFT adapter) as the reference.
        trainer = DPOTrainer(
            model=model,
            ref_model=None,
            args=config,
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=callbacks,
        )
    else:
        from trl import SFTTrainer

        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=callbacks,
        )
        use_packed_rows(trainer, plan, stage)
        fit_eval_interval(trainer, plan, args)
    trainer.optimizer_cls_and_kwargs = prec.optimizer_cls_and_kwargs(plan, precision, config)
    from launcher.schedule import shift_schedule

    shift_schedule(trainer)  # warm-up never spends a step at learning rate 0

    # 5. Train (resuming optimizer, scheduler and RNG state from the checkpoint when there is one).
    base = dict(
        stage=stage,
        method=plan.method,
        precision=precision,
        output_dir=str(run_dir / "output"),
        **stage_prediction(plan, stage),
        resumed_from=last_ckpt,
        **({"rows_left_out": left_out} if left_out else {}),  # no trainable token at max_length
    )
    if main_proc:
        write_summary(run_dir, status="running", error=None, **base)
    if stop.requested:  # stopped while loading: nothing trained, nothing to save
        print(
            f"[tunewise] stopped before training ({stop.requested}). Run the same launch command again.",
            flush=True,
        )
        return EXIT_STOPPED
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.monotonic()
    try:
        trainer.train(resume_from_checkpoint=last_ckpt)
    except torch.OutOfMemoryError as e:
        step = trainer.state.global_step
        early = step < OOM_EARLY_STEPS and not last_ckpt
        if main_proc:
            safe_summary(
                run_dir,
                status="failed",
                steps=step,
                error=f"out of memory at step {step}: {e}",
                oom=early,
                **base,
            )
        print(f"[tunewise] out of memory at step {step}", file=sys.stderr, flush=True)
        return EXIT_OOM if early else EXIT_FAILED
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            if main_proc:
                safe_summary(
                    run_dir,
                    status="failed",
                    steps=trainer.state.global_step,
                    error=f"{type(e).__name__}: {e}",
                    **base,
                )
            raise
        # A full disk: say so plainly. A checkpoint it cut short is set aside on the next launch.
        step = trainer.state.global_step
        msg = f"the disk is full at step {step} ({e.strerror}); training stopped"
        if main_proc:
            safe_summary(run_dir, status="failed", steps=step, error=msg, **base)
        print(
            f"tunewise: error: {msg}\nfix: free space under {run_dir} (older checkpoints in {out_dir} can go), "
            "then launch again to resume from the last complete checkpoint",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_FAILED
    except Exception as e:
        if main_proc:
            safe_summary(
                run_dir,
                status="failed",
                steps=trainer.state.global_step,
                error=f"{type(e).__name__}: {e}",
                **base,
            )
        raise

    # 6. Save and summarise.
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    st = trainer.state
    timing = speed.result(
        time.monotonic() - started,
        st.global_step - (speed.first_step or 0),
        sp.steps.get(stage) if sp else None,
        sp.stage_s.get(stage, [None])[0] if sp else None,
    )
    result = dict(
        steps=st.global_step,
        trainable_params=trainable,
        **measured_memory(cuda),
        **stage_metrics(run_dir / "metrics.jsonl", stage),
        **timing,
        **base,
    )
    if stop.requested:
        if main_proc:
            write_summary(run_dir, status="stopped", **result)
        print(
            f"[tunewise] stopped at step {trainer.state.global_step}; checkpoint in {out_dir}. "
            "Run the same launch command again to resume.",
            flush=True,
        )
        return EXIT_STOPPED
    last = index == len(stages) - 1
    target = final_dir(run_dir, plan, stage, last=last)
    if getattr(trainer, "is_fsdp_enabled", False):
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(target))
    if main_proc:
        tokenizer.save_pretrained(str(target))  # the same chat template at inference as in training
        (target / DONE_MARKER).write_text(f'{{"stage": "{stage}", "steps": {trainer.state.global_step}}}\n')
        summary = write_summary(
            run_dir,
            status="completed" if last else "running",
            adapter_dir=str(target) if plan.method in ("lora", "qlora") else None,
            model_dir=str(target),
            **result,
        )
        print_result(summary, cuda)
    return 0


def measured_memory(cuda: bool) -> dict:
    """This process's GPU memory over the stage, measured the way bench/calibration/ measures the plain
    stack: peak allocated (`torch.cuda.max_memory_allocated`, what the estimator predicts), peak reserved
    by the caching allocator, and the device figure: what the GPU shows in use now, at the end of
    training, while the allocator still holds its reserve (`torch.cuda.mem_get_info`, device-wide, so
    another process on the same GPU counts too). All null on CPU."""
    if not cuda:
        return {"peak_gib_measured": None, "peak_reserved_gib": None, "device_gib_measured": None}
    import torch

    free, total = torch.cuda.mem_get_info()
    return {
        "peak_gib_measured": round(torch.cuda.max_memory_allocated() / GiB, 3),
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / GiB, 3),
        "device_gib_measured": round((total - free) / GiB, 3),
    }


def load_data(run_dir: Path, plan: TrainingPlan, stage: str):
    """Train and validation datasets for a stage; preference rows feed SFT with their chosen answer."""
    from launcher.datafile import jsonl_dataset

    def load(rel: str | None):
        if not rel:
            return None
        path = run_dir / rel
        if not path.is_file():
            raise UserError(
                f"data file {path} does not exist", "regenerate the run with `tunewise recommend --out`"
            )
        return jsonl_dataset(path)

    train_rel, val_rel = plan.data.train, plan.data.validation
    if stage == "dpo" and plan.stage == "sft+dpo" and plan.dpo and plan.dpo.dataset:
        train_rel, val_rel = plan.dpo.dataset, plan.dpo.validation
    train, val = load(train_rel), load(val_rel)
    if train is None:
        raise UserError(
            "the plan names no training data (data.train)", "run `tunewise recommend --out` with a dataset"
        )
    preference = "chosen" in train.column_names and "rejected" in train.column_names
    if stage == "dpo" and not preference:
        raise UserError(
            f"DPO needs preference rows (prompt, chosen, rejected); {train_rel} has "
            f"{', '.join(train.column_names)}",
            "point dpo.dataset at a preference file",
        )
    if stage == "sft" and preference:
        train, val = (_chosen_as_completion(d) if d is not None else None for d in (train, val))
    if val is not None and stage == "dpo" and "chosen" not in val.column_names:
        val = None
    return train, val


def _chosen_as_completion(ds):
    return ds.map(
        lambda r: {"prompt": r["prompt"], "completion": r["chosen"]}, remove_columns=ds.column_names
    )


def load_model(plan: TrainingPlan, cuda: bool, precision: str):
    """The base model in the dtype `precision` loads it in (launcher/precision.py); 4-bit NF4 for QLoRA
    (double quantisation, 16-bit compute)."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from launcher.families import resolve_attention
    from launcher.precision import load_dtype

    attn, note = resolve_attention(
        plan.attn_implementation, plan.model, cuda=cuda, trust_remote_code=plan.trust_remote_code
    )
    if note:
        print(f"[tunewise] attention: {note}", flush=True)
    kwargs = dict(
        dtype=load_dtype(plan, precision), attn_implementation=attn, trust_remote_code=plan.trust_remote_code
    )
    if plan.method == "qlora":
        q = plan.quantization
        fsdp = plan.distributed_mode == "fsdp"
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=q.quant_type,
            bnb_4bit_use_double_quant=q.double_quant,
            bnb_4bit_compute_dtype=getattr(torch, q.compute_dtype),
            # FSDP shards the 4-bit weights only when they are stored in a float dtype.
            bnb_4bit_quant_storage=torch.bfloat16 if fsdp else torch.uint8,
        )
        if not fsdp:
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0")) if cuda else "cpu"}
    try:
        return AutoModelForCausalLM.from_pretrained(plan.model, **kwargs)
    except OSError as e:
        raise not_local(plan, e) from None


def not_local(plan: TrainingPlan, e: OSError) -> UserError:
    """The base model (its tokenizer or weights) cannot be read: offline and not downloaded, most often."""
    return UserError(
        f"base model {plan.model!r} is not available locally ({str(e).splitlines()[0]})",
        f"download it where there is network (`hf download {plan.model} --local-dir DIR`) and "
        "set `model: DIR` in plan.yaml, or launch with --allow-network",
    )


def lora_config(plan: TrainingPlan):
    if plan.method not in ("lora", "qlora"):
        return None
    from peft import LoraConfig

    lo = plan.lora
    return LoraConfig(
        r=lo.r,
        lora_alpha=lo.alpha,
        lora_dropout=lo.dropout,
        target_modules=lo.target_modules,
        task_type="CAUSAL_LM",
    )


def continue_from(model, plan: TrainingPlan, sft_dir: Path):
    """DPO after SFT: load the SFT result (adapter, or the full/Spectrum model) as the starting point."""
    if plan.method in ("lora", "qlora"):
        from peft import PeftModel

        return PeftModel.from_pretrained(model, str(sft_dir), is_trainable=True)
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(sft_dir), dtype=model.dtype)


def freeze_for_spectrum(model, patterns: list[str]) -> int:
    """Freeze everything, then unfreeze the parameters the Spectrum scan selected (Axolotl's
    `unfrozen_parameters` semantics, see `advisor.spectrum.select_unfrozen`). A pattern that matches
    nothing is an error: the scan was made for another model. Never a silent full fine-tune."""
    from advisor.spectrum import select_unfrozen

    keep = set(select_unfrozen([name for name, _ in model.named_parameters()], patterns))
    n = 0
    for name, param in model.named_parameters():
        param.requires_grad = name in keep
        n += param.numel() if param.requires_grad else 0
    return n


def trainer_config(
    plan: TrainingPlan,
    stage: str,
    out_dir: Path,
    train_ds,
    eval_ds,
    args,
    cuda: bool,
    precision: str = "fp32",
):
    """SFTConfig / DPOConfig from the plan. Precision (autocast) from `precision`; GPU speed switches:
    fused AdamW, Liger, packing."""
    import importlib.util

    from launcher.precision import autocast_flags

    save_steps = args.save_steps or plan.save_steps
    eval_steps = plan.eval_steps
    early = eval_ds is not None and bool(plan.early_stopping_patience)
    if early and save_steps % eval_steps:
        eval_steps = save_steps  # keeping the best checkpoint needs saves on evaluation steps
    optim = plan.optimizer
    if cuda and optim == "adamw_torch":
        optim = "adamw_torch_fused"
    liger = plan.liger and cuda and importlib.util.find_spec("liger_kernel") is not None
    if plan.liger and not liger:
        print("[tunewise] liger: not used (needs a GPU and the liger-kernel package)", flush=True)
    micro_batch, accum = plan.stage_batch(stage)  # DPO: its own batch when the SFT one does not fit its step
    common = dict(
        output_dir=str(out_dir),
        per_device_train_batch_size=micro_batch,
        per_device_eval_batch_size=micro_batch,
        gradient_accumulation_steps=accum,
        max_steps=args.max_steps or plan.max_steps or -1,
        warmup_steps=plan.warmup_ratio,
        lr_scheduler_type=plan.lr_scheduler,
        weight_decay=plan.weight_decay,
        max_grad_norm=plan.max_grad_norm,
        logging_steps=plan.logging_steps,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=plan.save_total_limit,
        eval_strategy="steps" if eval_ds is not None else "no",
        eval_steps=eval_steps,
        load_best_model_at_end=early,
        metric_for_best_model="eval_loss" if early else None,
        greater_is_better=False if early else None,
        **autocast_flags(precision),
        use_cpu=not cuda,
        **_checkpointing(plan.gradient_checkpointing),
        optim=optim,
        use_liger_kernel=liger,
        torch_compile=plan.torch_compile,
        report_to=["tensorboard"],
        seed=plan.seed,
        max_length=plan.max_length,
        disable_tqdm=True,
        logging_first_step=True,
        save_only_model=False,
        include_num_input_tokens_seen="non_padding",  # tokens/s in metrics.jsonl and the progress line, DPO too
    )
    if stage == "dpo":
        from trl import DPOConfig

        d = plan.dpo
        return DPOConfig(
            beta=d.beta if d else 0.1,
            learning_rate=d.learning_rate if d else 5e-6,
            num_train_epochs=d.epochs if d else 1.0,
            **common,
        )
    from trl import SFTConfig

    conversational = "messages" in train_ds.column_names
    prompt_completion = "completion" in train_ds.column_names
    return SFTConfig(
        learning_rate=plan.learning_rate,
        num_train_epochs=plan.epochs,
        packing=plan.packing,
        # Loss on what the model should produce, not on the prompt ("Data Preparation Best Practices").
        assistant_only_loss=plan.completion_only_loss and conversational,
        completion_only_loss=plan.completion_only_loss if prompt_completion else None,
        **common,
    )


def stage_prediction(plan: TrainingPlan, stage: str) -> dict:
    """The planner's estimate summary.json compares the measured peak with: the plan's own for its first stage
    (SFT, or DPO for a DPO-only plan); the DPO step's (`dpo.predicted_*`) for the DPO stage after SFT."""
    src = plan.dpo if stage == "dpo" and plan.stage != "dpo" and plan.dpo is not None else plan
    return {"peak_gib_predicted": src.predicted_peak_gib, "device_gib_predicted": src.predicted_device_gib}


def fit_eval_interval(trainer, plan: TrainingPlan, args: argparse.Namespace) -> None:
    """Evaluate (and checkpoint) at least twice an epoch, as the plan intends. The planner counts steps
    before packing, and without token counts it cannot know how many rows the examples pack into; the
    data loader knows. Only ever lowers the interval; an explicit --save-steps is left alone."""
    a = trainer.args
    if a.eval_strategy == "no" or args.save_steps:
        return
    per_epoch = max(1, len(trainer.get_train_dataloader()) // max(1, a.gradient_accumulation_steps))
    horizon = a.max_steps if a.max_steps and a.max_steps > 0 else per_epoch
    want = max(1, horizon // 2)
    if a.eval_steps <= want:
        return
    print(
        f"[tunewise] evaluating and checkpointing every {want} steps (plan: {a.eval_steps}): packed, one epoch "
        f"is {per_epoch} optimizer steps",
        flush=True,
    )
    a.eval_steps = a.save_steps = want


def _checkpointing(on: bool) -> dict:
    """Gradient (activation) checkpointing, non-reentrant; transformers 5 renamed the arguments."""
    from transformers import TrainingArguments

    name = (
        "activation_checkpointing"
        if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
        else "gradient_checkpointing"
    )
    return {name: on, f"{name}_kwargs": {"use_reentrant": False}}


def print_result(summary: dict, cuda: bool) -> None:
    def num(v):
        return f"{v:.4g}" if isinstance(v, int | float) else "-"

    loss = f"loss {num(summary.get('loss_first'))} -> {num(summary.get('loss_last'))}"
    print(
        f"[tunewise] {summary['stage']} done: {summary.get('steps')} steps, {loss}, "
        f"eval_loss {num(summary.get('eval_loss'))}",
        flush=True,
    )
    if summary.get("wall_s_predicted") and cuda:  # the throughput model's feedback
        print(
            f"[tunewise] time: {summary['wall_s_measured'] / 60:,.1f} min measured, "
            f"{summary['wall_s_predicted'] / 60:,.1f} min predicted for these steps",
            flush=True,
        )
    if cuda:  # the estimator's feedback, shown after every GPU run
        print(
            f"[tunewise] peak GPU memory: measured {summary.get('peak_gib_measured')} GiB, "
            f"predicted {summary.get('peak_gib_predicted')} GiB allocated; the GPU showed "
            f"{summary.get('device_gib_measured')} GiB in use, predicted {summary.get('device_gib_predicted')} GiB",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
