"""The plan's precision as the job runs it (advisor/precision.py defines the four and their bytes).

- `bf16-mixed`: the base loads in bf16; after freezing, every trainable base weight (Spectrum's selection,
  or all of them for full fine-tuning, which loads in fp32 directly) becomes fp32, so gradients and AdamW's
  moments are fp32 too; bf16 autocast runs the matmuls. LoRA adapters are fp32 already (PEFT).
- `bf16-compensated`: bf16 weights, and torch-optimi's AdamW with Kahan summation instead of torch's.
- `fp32`: fp32 weights, no autocast.
- `fp16-mixed`: fp16 base, fp32 adapters, fp16 autocast with the loss scaler (GPU only; on CPU: fp32).

A plan written before `precision` existed (`precision: null`) runs what its `bf16` flag meant on a GPU,
with fp32 master weights for Spectrum/full, and fp32 on CPU as before.
"""

from __future__ import annotations

from advisor.precision import default_precision


def effective(plan, cuda: bool) -> tuple[str, str]:
    """(precision the job runs, a note when it differs from the plan's)."""
    p = plan.precision
    if p is None:
        if not cuda:
            return "fp32", ""
        return default_precision(plan.method, plan.bf16), ""
    if p == "fp16-mixed" and not cuda:
        return "fp32", "fp16-mixed needs a GPU (fp16 autocast with a loss scaler): fp32 on CPU"
    return p, ""


def load_dtype(plan, precision: str):
    """The dtype `from_pretrained` loads the base in."""
    import torch

    if precision == "fp32" or (precision == "bf16-mixed" and plan.method == "full"):
        return torch.float32
    if precision == "fp16-mixed":
        return torch.float16
    return torch.bfloat16


def autocast_flags(precision: str) -> dict:
    """TrainingArguments' mixed-precision switches."""
    return {"bf16": precision in ("bf16-mixed", "bf16-compensated"), "fp16": precision == "fp16-mixed"}


def master_weights(model, plan, precision: str) -> int:
    """fp32 master copies of the trainable base weights (Spectrum/full under bf16-mixed): cast in place,
    so gradients and optimizer states follow. Returns how many parameters were upcast."""
    import torch

    if precision != "bf16-mixed" or plan.method not in ("spectrum", "full"):
        return 0
    n = 0
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
            n += p.numel()
    return n


def optimizer_cls_and_kwargs(plan, precision: str, args) -> tuple | None:
    """torch-optimi's Kahan-compensated AdamW for `bf16-compensated` (betas, eps and weight decay as the
    plan's AdamW); None: the Trainer's own optimizer from `plan.optimizer`."""
    if precision != "bf16-compensated":
        return None
    try:
        from optimi import AdamW
    except ImportError:
        from advisor.errors import UserError

        raise UserError(
            "the plan's precision bf16-compensated needs the torch-optimi package",
            "pip install torch-optimi (it depends on torch only), or set precision: bf16-mixed "
            "in plan.yaml if fp32 master weights fit",
        ) from None
    return AdamW, {
        "lr": args.learning_rate,
        "betas": (args.adam_beta1, args.adam_beta2),
        "eps": args.adam_epsilon,
        "weight_decay": args.weight_decay,
        "kahan_sum": True,
    }
