"""Assistant-only loss for chat templates without `{% generation %}` markers.

TRL's `assistant_only_loss` masks the loss with the template's generation markers; for a template without
them it swaps in a patched copy for the ~30 templates it knows, and raises a ValueError in
`SFTTrainer.__init__` for every other one (most ChatML fine-tunes, Mistral, Zephyr, TinyLlama, SmolLM...).
The job then rewrites each conversation as prompt-completion rows, which TRL masks without markers: one row
per assistant turn, the conversation before it as the prompt (system and user turns, earlier assistant
turns) and the turn itself as the completion. Every assistant turn is trained exactly once, with its end
token; no other token is. Earlier turns are repeated as context in later rows (more tokens per epoch for
long conversations, the same trained tokens).

This is only exact when the template renders the prompt (with the generation prompt) as a prefix of the
whole conversation; the job checks that on the data before training and refuses with the fix otherwise.
"""

from __future__ import annotations

from advisor.errors import UserError


def needs_turn_rows(tokenizer) -> bool:
    """True when TRL cannot mask assistant turns with this tokenizer's template (no generation markers and
    not one TRL can patch)."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    template = getattr(tokenizer, "chat_template", None)
    if not template or has_generation_markers(template):
        return False
    try:
        get_training_chat_template(tokenizer)
    except ValueError:
        return True
    return False


def turn_rows(messages: list[dict]) -> list[dict]:
    """One prompt-completion row per assistant turn of a conversation."""
    return [
        {"prompt": messages[:i], "completion": [m]}
        for i, m in enumerate(messages)
        if m.get("role") == "assistant" and i > 0
    ]


def as_turn_rows(ds):
    """A conversational dataset (column `messages`) as prompt-completion rows, one per assistant turn."""
    from datasets import Dataset

    rows = [r for conv in ds["messages"] for r in turn_rows(conv)]
    if not rows:
        raise UserError(
            "no conversation has an assistant turn after another message",
            "each row's messages need a user (or system) turn followed by an assistant turn",
        )
    return Dataset.from_list(rows)


def check_prefix(tokenizer, ds, limit: int = 200) -> None:
    """The template renders each row's prompt (with the generation prompt) as a prefix of prompt + completion:
    otherwise masking by the prompt's length would train the wrong tokens."""
    for i, row in enumerate(ds.select(range(min(limit, len(ds))))):
        prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
        if not full.startswith(prompt):
            raise UserError(
                f"the model's chat template has no {{% generation %}} markers, and it does not render a "
                f"conversation's start as a prefix of the whole (row {i + 1}), so the assistant turns cannot be "
                "told apart for assistant-only loss",
                "add {% generation %} ... {% endgeneration %} around the assistant content in the tokenizer's "
                "chat template, or give the data as prompt/completion rows",
            )


def prepare(tokenizer, train_ds, eval_ds):
    """(train, eval, note): conversations turned into per-turn prompt-completion rows when the template
    needs it, else unchanged with an empty note."""
    if train_ds is None or "messages" not in train_ds.column_names or not needs_turn_rows(tokenizer):
        return train_ds, eval_ds, ""
    train = as_turn_rows(train_ds)
    check_prefix(tokenizer, train)
    val = as_turn_rows(eval_ds) if eval_ds is not None and "messages" in eval_ds.column_names else eval_ds
    note = (
        f"the chat template has no {{% generation %}} markers (and TRL cannot patch it): {len(train_ds):,} "
        f"conversations train as {len(train):,} prompt-completion rows, one per assistant turn, so the loss "
        "stays on the assistant turns"
    )
    return train, val, note
