"""Generate answers with a model (batched, left-padded, greedy) and measure the system metrics.

Per request latency is the wall time of the batch it was generated in (what a caller of a batched server
waits); tokens/s is generated tokens over generation time; peak memory is `torch.cuda.max_memory_allocated`
on a GPU and the process's peak resident set on CPU (a high-water mark over the whole process).
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

GiB = 1024**3


@dataclass
class Outputs:
    texts: list[str]
    nll: np.ndarray | None = None  # rows of [summed NLL of the reference, reference tokens]
    system: dict = field(default_factory=dict)


def load(model_dir: str, adapter: Path | None = None, *, trust_remote_code: bool = False):
    """(model, tokenizer) in eval mode; an adapter directory is applied on top of the base model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    own = adapter is not None and (adapter / "tokenizer_config.json").is_file()
    tok = AutoTokenizer.from_pretrained(
        str(adapter) if own else model_dir, trust_remote_code=trust_remote_code
    )
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, trust_remote_code=trust_remote_code)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    return model.to("cuda" if cuda else "cpu").train(False), tok  # inference mode (no dropout)


def _render(tok, messages: list[dict], *, generation_prompt: bool = True) -> str:
    if tok.chat_template:
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    # No chat template (a base model): the turns as plain text, the answer after "Answer:".
    text = "\n\n".join(m["content"] for m in messages)
    return text + ("\nAnswer: " if generation_prompt else "")


def _peak_gib(cuda: bool) -> float:
    import torch

    if cuda:
        return round(torch.cuda.max_memory_allocated() / GiB, 3)
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(kib * (1 if sys.platform == "darwin" else 1024) / GiB, 3)


def new_token_budget(tok, references: list[str], cap: int) -> int:
    """Tokens each answer may generate: twice the longest reference answer (in this tokenizer's tokens) plus
    8, within the plan's `max_new_tokens`. An answer that long is already wrong for every reference-based
    metric, and a base model that rambles would otherwise spend the whole cap on every prompt."""
    longest = max((len(tok(r, add_special_tokens=False)["input_ids"]) for r in references if r), default=0)
    return max(1, min(cap, 2 * longest + 8)) if longest else cap


def generate(model, tok, prompts: list[list[dict]], *, max_new_tokens: int, batch_size: int) -> Outputs:
    import torch

    cuda = next(model.parameters()).is_cuda
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    texts, latencies, new_tokens, gen_s = [], [], [], 0.0
    stop = [
        t for t in {tok.eos_token_id, getattr(model.generation_config, "eos_token_id", None)} if t is not None
    ]
    stop = [x for t in stop for x in (t if isinstance(t, list) else [t])]
    for start in range(0, len(prompts), batch_size):
        batch = [_render(tok, p) for p in prompts[start : start + batch_size]]
        enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=not tok.chat_template)
        enc = enc.to(model.device)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stop,
                pad_token_id=tok.pad_token_id,
            )
        dt = time.perf_counter() - t0
        gen_s += dt
        for row in out[:, enc["input_ids"].shape[1] :]:
            ids = row.tolist()
            n = next((i + 1 for i, t in enumerate(ids) if t in stop), len(ids))
            new_tokens.append(n)
            texts.append(tok.decode(ids[:n], skip_special_tokens=True).strip())
            latencies.append(dt)
    system = {
        "latency_p50_s": round(float(np.percentile(latencies, 50)), 3),
        "latency_p95_s": round(float(np.percentile(latencies, 95)), 3),
        "tokens_per_s": round(sum(new_tokens) / gen_s, 1) if gen_s else None,
        "peak_memory_gib": _peak_gib(cuda),
        "output_tokens_mean": round(float(np.mean(new_tokens)), 1),
    }
    return Outputs(texts, system=system)


def reference_nll(
    model, tok, prompts: list[list[dict]], references: list[str], *, batch_size: int
) -> np.ndarray:
    """Summed negative log-likelihood of each reference answer after its prompt, and its token count
    (teacher-forced; for held-out perplexity)."""
    import torch

    rows = []
    for start in range(0, len(prompts), batch_size):
        ids, spans = [], []
        for p, r in zip(
            prompts[start : start + batch_size], references[start : start + batch_size], strict=True
        ):
            prompt = tok(_render(tok, p), add_special_tokens=not tok.chat_template)["input_ids"]
            full = tok(
                _render(tok, p + [{"role": "assistant", "content": r}], generation_prompt=False)
                if tok.chat_template
                else _render(tok, p) + r,
                add_special_tokens=not tok.chat_template,
            )
            full = full["input_ids"]
            ids.append(full)
            spans.append((min(len(prompt), len(full) - 1), len(full)))
        width = max(len(x) for x in ids)
        pad = tok.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=model.device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=model.device)
        with torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=mask).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        target = input_ids[:, 1:]
        tok_nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        for b, (s, e) in enumerate(spans):
            off = width - len(ids[b])
            # Tokens s..e-1 of the row are the answer; position t predicts token t+1.
            seg = tok_nll[b, off + s - 1 : off + e - 1]
            rows.append([float(seg.sum()), float(seg.numel())])
    return np.array(rows)
