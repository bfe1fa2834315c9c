"""Packed rows that stay rows: the job's batch layout under SDPA and eager attention.

TRL packs examples with BFD into rows of `max_length` and then, always with BFD, flattens the
micro-batch into a single padding-free row of micro-batch × max_length tokens. That layout is made for
FlashAttention-2's variable-length kernel, which attends within each document. SDPA and eager attention
have no such kernel: transformers gives them a block-diagonal mask over the whole flattened row
(built from the restarting position ids), and the kernel computes every query-key pair of it, masked or
not: (micro-batch × max_length)² pairs where a batch of rows computes micro-batch × max_length²
(bench/padding_waste.py counts 4,078 pairs per useful token against 1,027 at micro-batch 4). The mask
itself, and the additive copy SDPA keeps in every layer, shrink by the same factor.

`PackedRowsCollator` keeps TRL's own per-row collation (its packed position ids, its labels) and only
leaves the rows unflattened: no attention mask, so transformers still finds the documents from the
position ids, now per row; the first token of each document is not a target (as TRL's padding-free
path does), nor is the short padding at a row's end. Same documents, same targets, same loss: checked in
tests/test_packing.py against the flattened row.
"""

from __future__ import annotations

from typing import Any


def keeps_rows(plan, stage: str) -> bool:
    """Whether the job feeds packed rows as rows (SFT with packing, padding_free off, SDPA or eager)."""
    return stage == "sft" and plan.packing and not plan.flat_packing


class PackedRowsCollator:
    """TRL's language-modeling collator without the flattening: a (micro-batch, longest row) batch."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        self.inner = DataCollatorForLanguageModeling(
            pad_token_id=pad_token_id,
            padding_free=False,
            return_position_ids=True,
            pad_to_multiple_of=pad_to_multiple_of,
        )

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        out = self.inner(examples)
        # No attention mask: with one, transformers would skip the packed-sequence detection and let every
        # document of a row attend to the ones before it.
        out.pop("attention_mask", None)
        # A document's first token is not predicted from the previous document; padding (position 0) is no target.
        out["labels"][out["position_ids"] == 0] = -100
        return out


def use_packed_rows(trainer, plan, stage: str) -> bool:
    """Give an SFTTrainer built by the job the row layout when the plan allows it; say which layout runs.

    TRL refuses a custom collator together with BFD packing (its padding-free mode), so the collator is
    swapped after construction, before any data loader exists."""
    if not keeps_rows(plan, stage):
        if stage == "sft" and plan.packing:
            print(
                f"[tunewise] packing: the micro-batch runs as one flattened row (padding_free: {plan.padding_free}, "
                f"attention: {plan.attn_implementation})",
                flush=True,
            )
        return False
    pad = trainer.processing_class.pad_token_id if hasattr(trainer.processing_class, "pad_token_id") else None
    if pad is None:
        pad = getattr(getattr(trainer.processing_class, "tokenizer", None), "pad_token_id", None)
    trainer.data_collator = PackedRowsCollator(pad, getattr(trainer.args, "pad_to_multiple_of", None))
    print(
        f"[tunewise] packing: {plan.micro_batch_size} packed rows of up to {plan.max_length} tokens per "
        f"micro-batch ({plan.attn_implementation} attention spans one row)",
        flush=True,
    )
    return True
