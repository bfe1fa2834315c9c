"""Numeric precision as a decision: what the job keeps in which format, and what each costs per parameter.

Four precisions (`plan.precision`, `tunewise estimate --precision`):

- `bf16-mixed` — bf16 mixed precision with fp32 master weights: the trainable weights, their gradients
  and AdamW's two moments are fp32 (4 + 4 + 8 = 16 bytes per trainable parameter); frozen weights stay
  bf16 (2); matmuls run in bf16 under autocast. For LoRA this is PEFT's default (fp32 adapters on a bf16
  base). The reference: an update of lr x ~1 always lands in an fp32 weight.
- `bf16-compensated` — bf16 weights, gradients and moments, and an AdamW with Kahan summation
  (`torch-optimi`'s `AdamW(kahan_sum=True)`): a bf16 compensation buffer carries the part of each update
  the bf16 weight could not hold, so small updates accumulate instead of rounding away. 2 (weight) + 2
  (gradient) + 4 (moments) + 2 (compensation) = 10 bytes per trainable parameter. For Spectrum and full
  fine-tuning when fp32 master weights do not fit.
- `fp32` — everything fp32 (4 + 4 + 8 = 16 per trainable parameter, 4 per frozen one, fp32 activations):
  Spectrum and full fine-tuning on a GPU without bf16 (T4, V100). fp16 has too few exponent bits for
  weights and moments, and fp16 autocast needs fp32 master weights anyway.
- `fp16-mixed` — LoRA/QLoRA on a GPU without bf16: fp16 base weights, fp32 adapters, fp16 autocast with a
  loss scaler.

Why not plain bf16 AdamW (what the job ran before): at |w| ~ 0.02 a bf16 weight's half-ulp is ~6e-5, larger
than an AdamW step at lr 1e-5, so most weights never change (bench/results/weights-move-*.txt).
Pure data: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

PRECISIONS = ("bf16-mixed", "bf16-compensated", "fp32", "fp16-mixed")
# The job before precision was a decision (bf16 weights, torch AdamW in bf16, no master copy): the memory
# model keeps it only to compare with the GPU measurements made of it (bench/memory_accuracy.py). No plan
# runs it: most updates at Spectrum/full learning rates round away.
LEGACY = "bf16-pure"
ALLOWED = {
    "lora": ("bf16-mixed", "fp16-mixed", "fp32"),
    "qlora": ("bf16-mixed", "fp16-mixed"),
    "spectrum": ("bf16-mixed", "bf16-compensated", "fp32"),
    "full": ("bf16-mixed", "bf16-compensated", "fp32"),
}
LABEL = {
    "bf16-mixed": "bf16 mixed precision with fp32 master weights",
    "bf16-compensated": "bf16 weights with a Kahan-compensated AdamW (torch-optimi)",
    "fp32": "fp32 (no bf16 on this GPU)",
    "fp16-mixed": "fp16 mixed precision, fp32 adapters (no bf16 on this GPU)",
}


@dataclass(frozen=True)
class Bytes:
    """Bytes per parameter by part: a trainable base weight (weight, gradient, optimizer states) and a frozen one."""

    weight: int
    grad: int
    states: int
    frozen: int
    stream: int  # activations and the residual stream

    @property
    def trainable(self) -> int:
        return self.weight + self.grad + self.states


def base_bytes(precision: str) -> Bytes:
    """Per-parameter bytes for the base model's weights under `precision` (Spectrum / full; AdamW)."""
    return {
        "bf16-mixed": Bytes(4, 4, 8, 2, 2),
        "bf16-compensated": Bytes(2, 2, 6, 2, 2),
        LEGACY: Bytes(2, 2, 4, 2, 2),
        "fp32": Bytes(4, 4, 8, 4, 4),
        "fp16-mixed": Bytes(4, 4, 8, 2, 2),
    }[precision]


def default_precision(method: str, bf16_gpu: bool | None) -> str:
    """The precision a method runs at by default: fp32 master weights with bf16 compute where the GPU has
    bf16; without it fp16 autocast for adapters and fp32 for Spectrum/full."""
    if bf16_gpu is False:
        return "fp16-mixed" if method in ("lora", "qlora") else "fp32"
    return "bf16-mixed"


def fallbacks(method: str, bf16_gpu: bool | None) -> list[str]:
    """Precisions to try in order when the default does not fit: Spectrum/full on a bf16 GPU may drop the
    fp32 master copy for a compensated bf16 optimizer; nothing else has a cheaper precision that still trains."""
    first = default_precision(method, bf16_gpu)
    if method in ("spectrum", "full") and first == "bf16-mixed":
        return [first, "bf16-compensated"]
    return [first]


def check(method: str, precision: str, *, legacy: bool = False) -> str | None:
    """None when `precision` is valid for `method`, else the problem. `legacy`: also the old pure-bf16 job
    (the memory model's comparison with measurements made of it)."""
    if legacy and precision == LEGACY:
        return None
    if precision not in PRECISIONS:
        return f"precision {precision!r} (allowed: {', '.join(PRECISIONS)})"
    if precision not in ALLOWED.get(method, PRECISIONS):
        return f"precision {precision!r} does not apply to {method} (allowed: {', '.join(ALLOWED[method])})"
    return None


def reason(method: str, precision: str, *, bf16_gpu: bool | None, fell_back: bool = False) -> str:
    """Why the plan runs at `precision`, for the report."""
    b = base_bytes(precision)
    if precision == "bf16-mixed" and method in ("spectrum", "full"):
        return (
            f"{LABEL[precision]}: the trainable weights, their gradients and AdamW's moments are fp32 "
            f"({b.trainable} bytes per trainable parameter, frozen weights {b.frozen}), so updates at the "
            "planned learning rate land in the weights; plain bf16 weights would round most of them away "
            "(measurement: bench/results/weights-move-cpu.txt)"
        )
    if precision == "bf16-compensated":
        why = "fp32 master weights do not fit the GPU" if fell_back else "asked for"
        return (
            f"{LABEL[precision]}: {why}; the compensation buffer keeps the part of each update a bf16 weight "
            f"cannot hold ({b.trainable} bytes per trainable parameter instead of 16) "
            "(measurement: bench/results/weights-move-cpu.txt)"
        )
    if precision == "fp32":
        if bf16_gpu is False:
            return (
                "fp32: the GPU has no bfloat16 (compute capability below 8.0) and fp16 is too coarse for "
                "updating base weights: weights, gradients, AdamW moments and activations in fp32 "
                f"({b.trainable} bytes per trainable parameter, {b.frozen} per frozen one)"
            )
        return "fp32 throughout (asked for)"
    if precision == "fp16-mixed":
        return (
            "fp16 mixed precision: the GPU has no bfloat16 (compute capability below 8.0); the frozen base in "
            "fp16, the adapters in fp32 with a loss scaler"
        )
    if method == "qlora":
        return (
            "bf16 mixed precision: the frozen base in 4-bit NF4 computing in bf16; TRL casts a quantized model's "
            "adapters to bf16"
        )
    return (
        "bf16 mixed precision: the frozen base in bf16, the adapters in fp32 (PEFT's default) under bf16 "
        "autocast"
    )
