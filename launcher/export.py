"""`tunewise export RUN_DIR --merge`: fold the adapter into the base weights, and write inference.py.

QLoRA trained against 4-bit weights; merging into 4-bit weights would round the adapter away, so the
base is reloaded in bf16 (dequantised) and the adapter merged into that. Small differences from the
4-bit model seen during training are expected. Spectrum and full fine-tuning already produce a whole
model: there is nothing to merge.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from advisor.errors import UserError
from advisor.plan import TrainingPlan
from launcher.rundir import atomic_write, is_secret_name, new_run_dir
from launcher.summary import read_summary

INFERENCE = '''"""Chat with the model this run trained, using the chat template it was trained with.

    python inference.py "How do I rotate an API key?"
"""

import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

MODEL = {model!r}{adapter_line}

tokenizer = AutoTokenizer.from_pretrained({tok_dir!r})  # saved with the training chat template
model = AutoModelForCausalLM.from_pretrained(MODEL, dtype="auto", device_map="auto")
{peft_block}
messages = [{{"role": "user", "content": sys.argv[1] if len(sys.argv) > 1 else "Hello!"}}]
inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                       return_dict=True).to(model.device)
with torch.no_grad():
    out = model.generate(**inputs, max_new_tokens=256, do_sample=False)
print(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
'''


@contextmanager
def offline(allow_network: bool):
    """No network and no token while the block runs, unless allowed: the hub variables are set before
    torch/transformers/peft are imported (some of their plugins fetch kernels at import time), and
    secret variables are hidden so no request could carry one."""
    if allow_network:
        yield
        return
    names = [
        "HF_HUB_OFFLINE",
        "HF_DATASETS_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_HUB_DISABLE_TELEMETRY",
        *[k for k in os.environ if is_secret_name(k)],
    ]
    saved = {k: os.environ.get(k) for k in names}
    for k in names:
        os.environ.pop(k, None)
    os.environ.update({k: "1" for k in names[:4]})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def result_dir(run_dir: Path, plan: TrainingPlan) -> Path:
    summary = read_summary(run_dir)
    d = summary.get("adapter_dir") or summary.get("model_dir")
    d = Path(d) if d else run_dir / ("adapter" if plan.method in ("lora", "qlora") else "model")
    if not d.is_dir():
        raise UserError(
            f"{run_dir} has no trained result yet ({d} is missing)", f"run `tunewise launch {run_dir}` first"
        )
    return d


def write_inference(run_dir: Path, plan: TrainingPlan, *, merged: Path | None = None) -> Path:
    """RUN_DIR/inference.py: loads the merged model, or the base plus the adapter."""
    trained = result_dir(run_dir, plan)
    if merged is not None or plan.method not in ("lora", "qlora"):
        model = merged or trained
        text = INFERENCE.format(model=str(model), adapter_line="", tok_dir=str(model), peft_block="")
    else:
        text = INFERENCE.format(
            model=plan.model,
            adapter_line=f"\nADAPTER = {str(trained)!r}",
            tok_dir=str(trained),
            peft_block="\nfrom peft import PeftModel\n\nmodel = PeftModel.from_pretrained(model, ADAPTER)\n",
        )
    return atomic_write(run_dir / "inference.py", text)


def export(
    run_dir: str | Path,
    *,
    merge: bool = True,
    out: str | Path | None = None,
    say=print,
    allow_network: bool = False,
) -> Path | None:
    """Merge the run's adapter into its base model (bf16) in a new directory; write inference.py.
    Returns the merged model directory (None when there was nothing to merge). Offline unless
    `allow_network`: the base model comes from a local folder or the HF cache, and no request (with
    HF_TOKEN or without) leaves the machine."""
    run_dir = Path(run_dir).expanduser().resolve()
    plan = TrainingPlan.load(run_dir / "plan.yaml")
    trained = result_dir(run_dir, plan)
    if not merge or plan.method not in ("lora", "qlora"):
        if merge:
            say(f"{plan.method}: {trained} is already a whole model; nothing to merge")
        write_inference(run_dir, plan)
        say(f"wrote {run_dir / 'inference.py'}")
        return None
    with offline(allow_network):
        return _merge(run_dir, plan, trained, out=out, say=say, allow_network=allow_network)


def _merge(run_dir: Path, plan: TrainingPlan, trained: Path, *, out, say, allow_network: bool) -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if plan.method == "qlora":
        say(
            "QLoRA: merging into a dequantised bf16 copy of the base model (the 4-bit weights used in "
            "training cannot hold the merged result); expect small numerical differences"
        )
    offline = {} if allow_network else {"local_files_only": True, "token": False}
    try:
        base = AutoModelForCausalLM.from_pretrained(
            plan.model, dtype=torch.bfloat16, trust_remote_code=plan.trust_remote_code, **offline
        )
    except OSError:
        raise UserError(
            f"base model {plan.model!r} is not available locally",
            "download it and set `model: DIR` in plan.yaml, or pass --allow-network",
        ) from None
    merged = PeftModel.from_pretrained(base, str(trained), **offline).merge_and_unload()
    # Absolute, because inference.py names it and may be run from any folder.
    target = new_run_dir(Path(out).expanduser().resolve() if out else run_dir / "merged")  # never overwritten
    merged.save_pretrained(str(target))
    AutoTokenizer.from_pretrained(str(trained), **offline).save_pretrained(str(target))
    write_inference(run_dir, plan, merged=target)
    say(f"merged model in {target}; wrote {run_dir / 'inference.py'}")
    return target
