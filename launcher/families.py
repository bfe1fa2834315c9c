"""Per-family loading checks the job makes before it builds the model.

The plan names an attention implementation (advisor/attention.py chose it per family). Here the job
checks it against what the installed transformers class accepts and what this machine has: SDPA on a
class that refuses it (Gemma-2, or an unknown family in a local folder) becomes eager; FlashAttention-2
without the flash-attn package or without a GPU becomes the family's default. Each change is printed
with its reason; the job never dies in `from_pretrained` over the attention implementation.
"""

from __future__ import annotations

import importlib.util


def model_class(model: str, trust_remote_code: bool = False):
    """The causal-LM class transformers would build for `model` (config only, no weights); None if unknown."""
    try:
        from transformers import AutoConfig
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

        cfg = AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
        return MODEL_FOR_CAUSAL_LM_MAPPING[type(cfg)], cfg
    except Exception:  # remote code, an unknown config: let from_pretrained decide and report
        return None, None


def resolve_attention(
    requested: str, model: str, *, cuda: bool, trust_remote_code: bool = False
) -> tuple[str, str]:
    """(implementation to load with, note or "") for the plan's `attn_implementation`."""
    from advisor.attention import choose_attention

    cls, cfg = model_class(model, trust_remote_code)
    family = getattr(cfg, "model_type", None)
    fallback = choose_attention(family, getattr(cfg, "attn_logit_softcapping", None)).implementation
    if cls is not None and fallback == "sdpa" and not getattr(cls, "_supports_sdpa", True):
        fallback = "eager"
    if requested == "flash_attention_2":
        if not cuda or importlib.util.find_spec("flash_attn") is None:
            why = "no GPU" if not cuda else "the flash-attn package is not installed"
            return fallback, f"flash_attention_2 asked for, but {why}: {fallback} attention instead"
        if cls is not None and not getattr(cls, "_supports_flash_attn", True):
            return (
                fallback,
                f"{cls.__name__} does not support flash_attention_2: {fallback} attention instead",
            )
        return requested, ""
    if requested == "sdpa" and cls is not None and not getattr(cls, "_supports_sdpa", True):
        return "eager", (
            f"{cls.__name__} refuses SDPA attention in this transformers version: eager attention "
            "instead (more memory for the attention scores than the plan's estimate if it "
            "assumed SDPA)"
        )
    return requested, ""
