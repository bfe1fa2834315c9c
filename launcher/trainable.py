"""Leave out the rows that would train on nothing.

TRL truncates each row to `max_length` keeping its start. With the loss on the answer only (prompt-completion
rows, assistant turns, DPO's chosen and rejected), a row whose prompt alone reaches `max_length` keeps no token
the loss counts: unpacked, TRL's SFT drops it quietly; packed (BFD), it still fills a slot of a packed row and
trains nothing; in DPO its chosen and rejected sides are both empty. The planner states how many such rows the
plan's length leaves (advisor/seqlen.py); the job measures them again with the model's own tokenizer, logs how
many it leaves out, and refuses when none is left. Plain text trains on every token: nothing is left out.
"""

from __future__ import annotations

from collections.abc import Mapping

from advisor.errors import UserError

_BATCH = 256


def _ids(out) -> list:
    """`input_ids` of a tokenizer or chat-template call (a mapping in recent transformers, a list before)."""
    return out["input_ids"] if isinstance(out, Mapping) else out


def prompt_lengths(tokenizer, ds) -> list[int] | None:
    """Tokens before the first trainable one, per row, as TRL tokenizes the row: the prompt (with the
    generation prompt for a conversation), or a conversation's turns before its first assistant turn. None when
    every token trains (plain text)."""
    cols = ds.column_names
    if "prompt" in cols and ("completion" in cols or "chosen" in cols):
        prompts = ds["prompt"]
        if prompts and isinstance(prompts[0], list):
            return [_chat_len(tokenizer, p) for p in prompts]
        out: list[int] = []
        for i in range(0, len(prompts), _BATCH):
            out += [len(x) for x in _ids(tokenizer(prompts[i : i + _BATCH]))]
        return out
    if "messages" in cols:
        out = []
        for msgs in ds["messages"]:
            first = next((i for i, m in enumerate(msgs) if m.get("role") == "assistant"), len(msgs))
            out.append(_chat_len(tokenizer, msgs[:first]) if first else 0)
        return out
    return None


def _chat_len(tokenizer, messages: list[dict]) -> int:
    return len(_ids(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)))


def drop_untrainable(
    tokenizer, ds, max_length: int, *, what: str = "training", required: bool = True, smoke: bool = False
):
    """(`ds` without the rows whose prompt reaches `max_length`, how many were left out); when every row goes,
    None for a dataset that is not `required` (a validation split: no evaluation), and `ds` unchanged for a
    `smoke` run (its short max_length is the smoke's, not the plan's: the pipeline still runs).

    Raises:
        UserError: every row of a required dataset is left out.
    """
    if ds is None or len(ds) == 0:
        return ds, 0
    lengths = prompt_lengths(tokenizer, ds)
    if lengths is None:
        return ds, 0
    keep = [i for i, n in enumerate(lengths) if n < max_length]
    dropped = len(ds) - len(keep)
    if not dropped:
        return ds, 0
    if not keep and smoke:
        print(
            f"[tunewise] smoke: every {what} row's prompt fills the smoke's max_length {max_length:,}; kept so the "
            "pipeline runs (the real plan's length is longer)",
            flush=True,
        )
        return ds, 0
    if not keep and not required:
        print(
            f"[tunewise] every {what} row's prompt fills max_length {max_length:,}: no {what} loss to measure",
            flush=True,
        )
        return None, dropped
    if not keep:
        raise UserError(
            f"every {what} row's prompt is at least max_length {max_length:,} tokens: no row keeps a token to "
            "train on",
            "raise max_length in plan.yaml (if the GPU's memory allows) or shorten the prompts, then launch again",
        )
    print(
        f"[tunewise] {dropped:,} of {len(ds):,} {what} rows keep no trainable token at max_length "
        f"{max_length:,} (the prompt alone fills it): left out",
        flush=True,
    )
    return ds.select(keep), dropped
