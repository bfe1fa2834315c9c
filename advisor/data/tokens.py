"""Token statistics with the model's tokenizer: lengths, truncation, trainable tokens, template checks.

Rows are rendered the way TRL will render them (the chat template for conversations; prompt and
completion with EOS appended otherwise) and batch-encoded. For each row we measure the total length
and the length of what comes before the first trainable token (the prompt): a row whose prompt
alone reaches `max_length` keeps no trainable tokens after truncation, so its loss is zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from advisor.errors import UserError

SAMPLE_ROWS = 20_000  # rows tokenised at most; larger files are sampled (and the report says so)
_BATCH = 512
GUIDE = "Practical Tools and Getting Started"  # "start with 512–1,024 token sequences"


def load_tokenizer(spec: Any, *, what: str = "tokenizer"):
    """A tokenizer object as is, or one loaded from a local path / cached name (never downloaded)."""
    if spec is None or not isinstance(spec, str):
        return spec
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(spec, local_files_only=True, trust_remote_code=False)
    except Exception as e:  # transformers raises OSError, ValueError, and others for missing files
        raise UserError(
            f"cannot load a {what} from {spec!r} locally: {str(e).splitlines()[0]}",
            "pass a directory holding tokenizer files (tokenizer.json / tokenizer_config.json), "
            "or a model already in the Hugging Face cache",
        ) from e


@dataclass
class TokenResult:
    lengths: list[int] = field(default_factory=list)  # total tokens per measured row
    prompt_lengths: list[int] = field(default_factory=list)  # tokens before the first trainable one
    lines: list[int] = field(default_factory=list)  # the row's line, aligned with lengths
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, chat-template error)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (kind, message) about the tokenizer


def measure(rows: list[tuple[int, dict]], fmt: str, tok) -> TokenResult:
    """Token lengths of normalised rows `(line, row)` in format `fmt`."""
    res = TokenResult()
    has_template = bool(getattr(tok, "chat_template", None))
    conversational = fmt == "messages" or (rows and isinstance(next(iter(rows[0][1].values())), list))
    if conversational and has_template:
        from advisor.data.template_guard import probe

        probe(
            tok, repr(getattr(tok, "name_or_path", None) or "the tokenizer")
        )  # a runaway template: UserError
    template = getattr(tok, "chat_template", None)
    if fmt == "messages" and isinstance(template, str) and not _has_generation_markers(template):
        res.notes.append(
            (
                "no-generation-markers",
                "the tokenizer's chat template has no {% generation %} markers, which assistant-only loss "
                "needs: unless TRL knows a patched copy of this template, the job trains each assistant turn "
                "as a prompt-completion row (the conversation before it as the prompt)",
            )
        )
    if conversational and not has_template:
        res.notes.append(
            (
                "chat-template",
                "the tokenizer has no chat template; TRL needs one for "
                "conversational data (lengths below use a plain 'role: content' layout)",
            )
        )
    fulls, prompts, lines, owner = [], [], [], []
    for line, row in rows:
        # A preference pair is two sequences (prompt + chosen, prompt + rejected), both truncated to
        # max_length: each side is measured and the pair counts as its longer one, in tokens.
        sides = (
            [dict(row, chosen=row[k], rejected=row[k]) for k in ("chosen", "rejected")]
            if fmt == "preference"
            else [row]
        )
        try:
            rendered = [_render(side, fmt, tok, has_template) for side in sides]
        except Exception as e:  # a Jinja template can raise anything (TemplateError, TypeError, ...)
            res.errors.append((line, f"chat template failed: {str(e).splitlines()[0][:200]}"))
            continue
        for full, prompt in rendered:
            fulls.append(full)
            prompts.append(prompt)
            owner.append(len(lines))
        lines.append(line)
    special = not conversational  # chat templates write BOS themselves
    eos_extra = 0 if conversational else 1  # TRL appends EOS to plain text and completions
    lengths, prompt_lengths = [0] * len(lines), [0] * len(lines)
    for i in range(0, len(fulls), _BATCH):
        f_ids = tok(fulls[i : i + _BATCH], add_special_tokens=special)["input_ids"]
        p_ids = tok(prompts[i : i + _BATCH], add_special_tokens=special)["input_ids"]
        for j, (f, p, text) in enumerate(zip(f_ids, p_ids, prompts[i : i + _BATCH], strict=True)):
            k = owner[i + j]
            lengths[k] = max(lengths[k], len(f) + eos_extra)
            prompt_lengths[k] = max(prompt_lengths[k], len(p) if text else 0)
    res.lengths, res.prompt_lengths = lengths, prompt_lengths
    res.lines = lines
    _check_eos(tok, fulls, rows, fmt, conversational, res)
    return res


def _has_generation_markers(template: str) -> bool:
    """The template marks the assistant's tokens for TRL's assistant-only loss ({% generation %} ...)."""
    return "generation" in template and "endgeneration" in template


def _render(row: dict, fmt: str, tok, has_template: bool) -> tuple[str, str]:
    """(full text, prompt text) as the trainer will see them."""

    def chat(msgs, gen=False):
        if has_template:
            from advisor.data.template_guard import render

            return render(tok, msgs, add_generation_prompt=gen)
        return "".join(f"{m['role']}: {m.get('content') or ''}\n" for m in msgs)

    if fmt == "messages":
        msgs = row["messages"]
        first = next(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        return chat(msgs), chat(msgs[:first], gen=True)
    if fmt == "text":
        return row["text"], ""
    prompt = row["prompt"]
    answer = row["completion"] if fmt == "prompt-completion" else row["chosen"]  # measure() passes each side
    if isinstance(prompt, list) or isinstance(answer, list):
        return chat(list(prompt) + list(answer)), chat(list(prompt), gen=True)
    return prompt + answer, prompt


def _check_eos(tok, fulls: list[str], rows, fmt: str, conversational: bool, res: TokenResult) -> None:
    eos = getattr(tok, "eos_token", None)
    if not eos:
        res.notes.append(
            ("missing-eos", "the tokenizer has no end-of-sequence token: the model may not learn to stop")
        )
        return
    if not conversational or not fulls or not getattr(tok, "chat_template", None):
        return
    # Look at what the template writes after the last assistant answer of the first rendered row.
    row = rows[0][1]
    msgs = row.get("messages") or row.get("completion") or row.get("chosen") or []
    last = next((m.get("content") for m in reversed(msgs) if m["role"] == "assistant"), None)
    text = fulls[0]
    at = text.rfind(last) if last else -1
    if at >= 0 and eos not in text[at + len(last) :]:
        res.notes.append(
            (
                "missing-eos",
                f"the chat template does not close assistant turns with the EOS "
                f"token {eos!r}: the model may not learn to stop",
            )
        )


def percentile(sorted_vals: list[int], q: float) -> int:
    """Nearest-rank percentile (an actual row length, never interpolated)."""
    k = max(0, math.ceil(q * len(sorted_vals)) - 1)
    return sorted_vals[k]


def stats(lengths: list[int]) -> dict:
    s = sorted(lengths)
    return {
        "p50": percentile(s, 0.50),
        "p95": percentile(s, 0.95),
        "max": s[-1],
        "mean": round(sum(s) / len(s), 1),
    }


def histogram(lengths: list[int], bins: int = 12) -> list[dict]:
    """Equal-width bins from 0 to the longest row."""
    top = max(lengths)
    width = max(1, math.ceil((top + 1) / bins))
    counts = [0] * bins
    for n in lengths:
        counts[min(n // width, bins - 1)] += 1
    return [{"lo": i * width, "hi": (i + 1) * width - 1, "count": c} for i, c in enumerate(counts)]


def round_up_length(n: int) -> int:
    """A token count rounded up to a multiple of 64 (up to 1,024) or 128 (beyond)."""
    step = 64 if n <= 1024 else 128
    return max(step, math.ceil(n / step) * step)


def recommend_max_length(st: dict, model_max: int | None = None) -> tuple[int, str]:
    """The length that covers every measured row: the longest rounded up, capped at the model's context;
    and why. Covering the longest rather than the p95 matters when prompts are long and answers short: the
    rows past a p95 cut lose their answer, not their prompt's tail."""
    longest, p95 = st["max"], st["p95"]
    rec = round_up_length(longest)
    why = (
        f"the longest measured row is {longest:,} tokens (p95 {p95:,}): rounded up to {rec:,}, every row fits "
        f"whole; the guide's 512–1,024 is where to start, and packing fills the rest of a longer row "
        f'("{GUIDE}")'
    )
    if model_max and 0 < model_max < rec:
        why += f"; capped at the model's context of {model_max:,} tokens"
        rec = model_max
    return rec, why


@dataclass(frozen=True)
class LengthCut:
    """What a sequence length does to the measured rows (figures scaled to all rows when sampled)."""

    max_length: int
    truncated: int  # rows longer than max_length
    tokens_lost: int  # tokens past max_length, over all truncated rows
    zero_trainable: int  # rows whose prompt alone fills max_length: no trainable token is left
    estimated: bool = False  # from a sample of the rows


def cut_at(
    lengths: list[int],
    prompt_lengths: list[int],
    max_length: int,
    *,
    completion_only: bool = True,
    scale: float = 1.0,
) -> LengthCut:
    """Truncation at `max_length` of rows measured as (total, prompt) tokens. The job keeps each row's start
    (TRL truncates the end), so a row whose prompt reaches `max_length` keeps no token of its answer; with
    loss on every token (plain text, or `completion_only` off) no row keeps none."""
    truncated = lost = zero = 0
    for n, p in zip(lengths, prompt_lengths, strict=True):
        if n > max_length:
            truncated += 1
            lost += n - max_length
        zero += completion_only and p >= max_length
    return LengthCut(
        max_length, round(truncated * scale), round(lost * scale), round(zero * scale), scale != 1.0
    )
