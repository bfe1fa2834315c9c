"""The attention implementation a model family trains with: never one transformers refuses for its class.

Pure data and arithmetic (no transformers import): the planner calls `choose_attention` with the model's
facts, and the job (launcher/train.py) checks the choice against the loaded class before it builds the
model (`launcher.families.resolve_attention`), so a plan edited by hand, or a family this table does not
know, still loads.

- SDPA (PyTorch's fused attention) is the default: every GPU, no extra package, and it masks packed
  documents per row (launcher/packing.py).
- Gemma-2 soft-caps its attention scores (`attn_logit_softcapping`, tanh before the softmax). SDPA has
  no hook for that, so transformers refuses SDPA for `Gemma2ForCausalLM` at load time; eager attention
  computes the capping. FlashAttention-2 also supports the soft-cap, so `flash_attention_2` is fine where
  the package is installed; the planner does not assume it is.
- Any other family that soft-caps attention scores is treated the same way (the cap is the reason,
  not the family's name).
"""

from __future__ import annotations

from dataclasses import dataclass

# Families whose transformers class refuses SDPA (`_supports_sdpa = False` in transformers 5.x).
NO_SDPA_FAMILIES = {"gemma2"}
# What the plan may name; the estimator's short names are advisor.memory.ATTENTION.
IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")


@dataclass(frozen=True)
class AttentionChoice:
    implementation: str  # sdpa | eager | flash_attention_2
    reason: str


def choose_attention(family: str | None, attn_logit_softcapping: float | None = None) -> AttentionChoice:
    """The attention implementation for a family (transformers' `model_type`) and why."""
    if family in NO_SDPA_FAMILIES or attn_logit_softcapping:
        cap = f" (cap {attn_logit_softcapping:g})" if attn_logit_softcapping else ""
        return AttentionChoice(
            "eager",
            f"eager attention: {family or 'this model'} soft-caps its attention scores{cap}, which PyTorch SDPA "
            "cannot apply, so transformers refuses SDPA for this model class; eager computes the cap (it "
            "keeps the seq x seq scores for backward, counted in the memory estimate). flash_attention_2 also "
            "applies the cap and may be set instead where the flash-attn package is installed",
        )
    return AttentionChoice(
        "sdpa",
        "PyTorch SDPA attention works on every GPU and masks packed documents per row; FlashAttention-2 "
        "(part of the guide's recommended stack) can be switched on where installed",
    )
