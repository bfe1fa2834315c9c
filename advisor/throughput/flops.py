"""The work one training step does: matrix-multiply FLOPs and the memory traffic that is not hidden
behind them, per method and stage, from the model's shapes and the estimator's `MemoryConfig`.

Counted per token of one micro-batch on one GPU (2 FLOPs per multiply-add):

- forward: every decoder linear and the LM head (2 × weights), attention's two score products
  (QKᵀ and PV: 4 × q_dim per key attended), LoRA's A and B (2 × r × (in + out) per wrapped linear);
- backward to activations: the same linears again (frozen weights still pass the gradient down; with
  checkpointing the inputs require grad, so it runs through every layer), attention 2.5 × its forward
  (fused kernels recompute the scores), LoRA 2 × its forward (input and weight gradients);
- weight gradients only where weights train: Spectrum's unfrozen linears, every linear and the head
  for full fine-tuning (embeddings take a scatter, no FLOPs);
- recomputation under checkpointing: the decoder layers' forward once more (not the head);
- attention by the rows the job really runs: a packed row of several documents carries a mask, which
  SDPA's kernels cannot skip, so every query attends the whole row (span = row length, or micro-batch ×
  row length when flattened under a mask); plain full rows run causally (half the keys, on average);
  FlashAttention-2's varlen kernel attends within each document causally;
- DPO: chosen and rejected rows (2 × pairs padded rows with a mask) through the policy, plus the
  reference forward of both (no grad, no recomputation, no adapters).

Traffic that runs at memory speed rather than tensor speed, in bytes: QLoRA's dequantisation of every
4-bit linear on each pass (read NF4 + statistics, write bf16), and the optimizer step (read weight,
gradient and AdamW's two moments, write three of them) once per optimizer step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from advisor.memory.dpo import dpo_rows
from advisor.memory.parts import (
    NF4_BYTES_PER_PARAM,
    adapter_bytes,
    attn_span,
    effective_attn,
    flattened,
    lora_modules,
    packed_sdpa,
    trainable_params,
)
from advisor.models import ModelFacts, linear_params_per_layer

# Fused attention backward (FlashAttention-2, SDPA's efficient kernel): five score-sized products against
# the forward's two, 2.5 x (FlashAttention-2 paper, section 3.2). Eager's autograd: four, 2 x.
ATTN_BACKWARD_FUSED = 2.5
ATTN_BACKWARD_EAGER = 2.0
# Fused AdamW per trainable weight per step: read weight, gradient, m, v; write weight, m, v.
ADAMW_ACCESSES = 7


@dataclass
class StepWork:
    """One micro-batch on one GPU: the tokens it holds, its tensor FLOPs and its memory-bound bytes."""

    tokens: int  # token positions the step runs (DPO: chosen and rejected rows)
    flops: float  # 16-bit tensor math of one micro-batch
    parts: dict[str, float] = field(default_factory=dict)  # FLOPs by component, per micro-batch
    dequant_bytes: float = 0.0  # per micro-batch (QLoRA)
    optimizer_bytes: float = 0.0  # per optimizer step

    @property
    def flops_per_token(self) -> float:
        return self.flops / self.tokens


def keys_per_query(m: ModelFacts, cfg, mean_doc_tokens: float | None = None) -> float:
    """Average keys each query's score row is computed over, in the layout the step runs."""
    attn = effective_attn(m, cfg)
    if attn == "flash" and flattened(cfg):
        doc = min(mean_doc_tokens or cfg.seq_len, cfg.seq_len)  # varlen: causal within each document
        return (doc + 1) / 2
    if attn == "eager" or packed_sdpa(m, cfg):
        return attn_span(cfg)  # a materialised or masked score matrix: nothing skipped
    return (cfg.seq_len + 1) / 2  # is_causal on full rows: the upper triangle is skipped


def step_work(m: ModelFacts, cfg, *, mean_doc_tokens: float | None = None) -> StepWork:
    """FLOPs and memory-bound bytes of one micro-batch of `cfg` (a `MemoryConfig`) on one GPU."""
    dpo = cfg.stage == "dpo"
    run = dpo_rows(cfg) if dpo else cfg
    tokens = run.batch_size * run.seq_len
    lin = m.num_layers * linear_params_per_layer(m)
    head = m.vocab_size * m.hidden_size
    keys = keys_per_query(m, run, mean_doc_tokens)  # DPO's padded rows carry a mask, as packed rows do
    attn_f = 4 * m.q_dim * m.num_layers * keys
    attn_b = (ATTN_BACKWARD_EAGER if effective_attn(m, cfg) == "eager" else ATTN_BACKWARD_FUSED) * attn_f
    adapters = cfg.method in ("lora", "qlora")
    ad_f = 2 * m.num_layers * sum(cfg.rank * (a + b) for a, b in lora_modules(m)) if adapters else 0.0
    trained = trainable_params(m, cfg)
    if cfg.method == "spectrum":
        weight_grads = 2 * trained
    elif cfg.method == "full":
        weight_grads = 2 * (lin + head)
    else:
        weight_grads = 0.0
    per_token = {
        "forward": 2 * lin + 2 * head + attn_f + ad_f,
        "recompute": (2 * lin + attn_f + ad_f) if cfg.grad_ckpt else 0.0,
        "backward_activations": 2 * lin + 2 * head + attn_b + ad_f,
        "weight_gradients": weight_grads + ad_f,
        "reference_forward": (2 * lin + 2 * head + attn_f) if dpo else 0.0,
    }
    parts = {k: v * tokens for k, v in per_token.items() if v}
    passes = 2 + cfg.grad_ckpt + dpo  # forward, backward (+ recompute, + the reference forward)
    dequant = lin * (NF4_BYTES_PER_PARAM + 2) * passes if cfg.method == "qlora" else 0.0
    elem = adapter_bytes(cfg) if adapters else 2
    return StepWork(
        tokens=tokens,
        flops=sum(parts.values()),
        parts=parts,
        dequant_bytes=dequant,
        optimizer_bytes=ADAMW_ACCESSES * elem * trained,
    )
