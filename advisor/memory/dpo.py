"""The DPO stage's training step: what it holds, from trl 1.16's `trl/trainer/dpo_trainer.py`.

The job runs TRL's DPOTrainer with the plan's micro-batch (launcher/train.py `trainer_config`). One step:

- Rows. `DataCollatorForPreference` puts the prompt+chosen sequences of the micro-batch first and the
  prompt+rejected ones after them: 2 × micro-batch rows, each truncated to `max_length` (`keep_start`), right
  padded to the longest row of the batch, with an attention mask. No packing, and `padding_free=True` is
  switched off with a warning in 1.16, so the rows are padded rows; chosen and rejected of unequal length
  leave padding, so transformers builds a mask (SDPA: bool rows × seq², leaving its GQA path exactly as a
  packed row does). The estimate takes the longest pair to fill `max_length`.
- Policy forward (`_compute_loss`): the model with grad, checkpointing as configured, through TRL's fused LM
  head (`add_fused_lm_head`, outputs log_probs, entropy, mean_logits, is_top1): the same
  `ChunkedLogProbFunction` as SFT, one (≤4,096 tokens × 32,768) tile in the compute dtype, fp32 running
  statistics. It scores the positions whose label is not -100 (prompt and padding are masked) on Triton
  devices; elsewhere (CPU) every position. The estimate counts every position (the GPU scores fewer).
- Reference forward, after the policy forward and before backward, so every activation the policy saved
  is still alive: `torch.no_grad()` with checkpointing disabled. With an adapter and no `ref_model` (the job
  passes `ref_model=None`), it is the same model with the adapter disabled (`use_adapter(..., None)`), or a
  frozen "ref" copy of the adapter when training continues an existing one (DPO after SFT; fp32,
  `dpo_ref_adapter`). Full and
  Spectrum training load a second, frozen copy of the base model in the policy's dtype
  (`create_model_from_path`): resident for the whole stage. No grad, so the reference keeps only its
  per-token log-probabilities; what it holds transiently is one layer's working set, then its final hidden
  states, their copy for the head and one logits tile.
- Loss: per-sequence sums of the log-probabilities (tiny), the sigmoid loss, then one backward through the
  policy graph, as in SFT. `precompute_ref_log_probs` is off (default), `disable_dropout` is on.

So the DPO step is the SFT step of 2 × micro-batch padded rows with a mask (the backward and optimizer
moments unchanged), plus the reference weights (full/Spectrum) and one more moment: the reference forward
on top of the policy's saved activations. Checked on CPU against real DPOTrainer steps
(bench/memory_trace.py `dpo_grid`, docs/memory.md "DPO stage").
"""

from __future__ import annotations

from dataclasses import replace

from advisor.memory.config import MemoryConfig
from advisor.memory.parts import (
    TRL_HEAD_TOKENS,
    TRL_HEAD_VOCAB,
    Parts,
    attn_mask_bytes,
    attn_mask_bytes_per_layer,
    base_weight_bytes,
    effective_attn,
    residual_bytes,
    sft_step_parts,
    stream_bytes,
    trainable_params,
)
from advisor.models import ModelFacts, count_params

REFERENCE_PHASE = "reference forward"


def dpo_rows(cfg: MemoryConfig):
    """The SFT-shaped view of a DPO step: 2 × micro-batch padded rows of `seq_len`, carrying a mask."""
    return replace(cfg, stage="sft", batch_size=2 * cfg.batch_size, packed_docs=True, padding_free=False)


def reference_weight_bytes(m: ModelFacts, cfg: MemoryConfig) -> float:
    """TRL's frozen reference copy: none with adapters (the adapter is disabled instead); for full and
    Spectrum training the base model loaded again in the policy's `dtype` (its first parameter's): fp32 for
    full fine-tuning with fp32 master weights (loaded in fp32) or in fp32 precision, else bf16 (Spectrum's
    frozen embedding leads); sharded like the policy under FSDP/ZeRO-3 (bf16 there). Found by the CPU trace."""
    if cfg.method not in ("full", "spectrum"):
        return 0.0
    shards = cfg.n_gpus if cfg.distributed in ("fsdp", "zero3") and cfg.n_gpus > 1 else 1
    total = count_params(m)["total"]
    if shards > 1:
        return 2 * total / shards
    pb = base_weight_bytes(cfg)
    return (pb.weight if cfg.method == "full" else pb.frozen) * total


def reference_adapter_bytes(m: ModelFacts, cfg: MemoryConfig) -> float:
    """DPO continuing an adapter (after SFT): TRL adds a "ref" adapter, a copy of the trained one. PEFT creates
    it in fp32 and it stays fp32 (TRL's bf16 cast of a quantized model's adapters only touches trainable ones)."""
    if not cfg.dpo_ref_adapter or cfg.method not in ("lora", "qlora"):
        return 0.0
    shards = cfg.n_gpus if cfg.distributed in ("fsdp", "zero3") and cfg.n_gpus > 1 else 1
    return 4 * trainable_params(m, cfg) / shards


def reference_layer_bytes(m: ModelFacts, cfg: MemoryConfig, rows) -> float:
    """One decoder layer of the no-grad reference forward at its widest: the embedding output (the model's
    forward keeps it to the end), the layer's input, the residual after attention and the normalised MLP
    input, and either the MLP's activation, up projection and their product (3 × intermediate) or attention's
    q, k, v, the repeated k/v and the output (+ the scores under eager) with the layer's mask copy; plus the
    forward's own mask. QLoRA dequantises one weight at a time. (The CPU trace lists exactly these.) A
    "ref" adapter (DPO after SFT) is active in this forward and widens the MLP's moment."""
    s = stream_bytes(cfg)
    tokens = rows.batch_size * rows.seq_len
    h, i, q, kv = m.hidden_size, m.intermediate_size, m.q_dim, m.kv_dim
    attn = (4 * q + 2 * kv) * s * tokens + attn_mask_bytes_per_layer(m, rows)
    if effective_attn(m, rows) == "eager":
        attn += rows.batch_size * m.num_heads * rows.seq_len**2 * (2 * s + 4)
    mlp = 3 * i * s  # activation, up projection, their product
    if reference_adapter_bytes(m, cfg):
        # The "ref" adapter runs: PEFT casts the input to fp32 and adds lora_B's scaled output out of place,
        # so an intermediate-wide projection holds the activation, its base output, lora_B's output and the
        # scaled copy (traced on CPU).
        mlp = max(4 * i * s + 4 * h, i * s + 4 * i + h * s)
    r = residual_bytes(cfg)  # fp32 for full fine-tuning with fp32 master weights (the reference is fp32 too)
    work = 4 * h * r * tokens + max(mlp * tokens, attn) + attn_mask_bytes(m, rows)
    if cfg.method == "qlora" or (r == 4 and s == 2):
        work += max(h * i, h * q) * 2  # one weight dequantised, or cast to bf16 by autocast
    return work


def reference_head_bytes(m: ModelFacts, cfg: MemoryConfig, rows) -> float:
    """The reference's fused head: its final hidden states, the copy the head scores, one logits tile."""
    s = stream_bytes(cfg)
    tokens = rows.batch_size * rows.seq_len
    return (
        2 * m.hidden_size * residual_bytes(cfg) * tokens + min(tokens, TRL_HEAD_TOKENS) * TRL_HEAD_VOCAB * s
    )


def dpo_step_parts(m: ModelFacts, cfg: MemoryConfig) -> Parts:
    """Resident parts and moments of one DPO step on the tunewise stack (see the module docstring)."""
    rows = dpo_rows(cfg)
    p = sft_step_parts(m, rows)
    phases = {k: dict(v) for k, v in p.phase_parts.items()}
    ref_weights = reference_weight_bytes(m, cfg) + reference_adapter_bytes(m, cfg)
    tokens = rows.batch_size * rows.seq_len
    # At the reference forward the policy holds what it saved for backward (as at the loss) and the hidden
    # states its fused head saved.
    held = phases["loss"]["activations"] + m.hidden_size * residual_bytes(cfg) * tokens
    ref = {
        "activations": held,
        "reference_forward": max(reference_layer_bytes(m, cfg, rows), reference_head_bytes(m, cfg, rows)),
    }
    if residual_bytes(cfg) == 4 and stream_bytes(cfg) == 2:
        # fp32 master weights under bf16 autocast: the policy forward's cached bf16 casts of its trainable
        # matmul weights live until the autocast region ends, after the reference forward (CPU trace)
        c = count_params(m)
        ref["reference_forward"] += 2 * (
            c["linear"] + c["lm_head"] + (c["embed"] if m.tie_word_embeddings else 0)
        )
        # and the policy's fused head keeps a bf16 cast of its fp32 output weight for backward, from its forward
        # through the loss (the CPU trace of the DPO step; the SFT step's head shows none)
        head = 2 * m.vocab_size * m.hidden_size
        ref["activations"] += head
        phases["loss"]["activations"] += head
    if "weights" in phases["loss"]:  # FSDP: the policy's gathered units stay gathered through the forward
        ref["weights"] = phases["loss"]["weights"]
    phases[REFERENCE_PHASE] = ref
    totals = {k: sum(v.values()) for k, v in phases.items()}
    phase = max(totals, key=totals.get)
    resident = {k: p.at_peak[k] for k in ("weights", "lora_adapters", "optimizer_states")}
    # The SFT peak's "weights" may include FSDP's gathered units: take the resident shards from the SFT parts.
    resident["weights"] = p.at_peak["weights"] - p.phase_parts[p.phase].get("weights", 0.0)
    if ref_weights:
        resident["reference_weights"] = ref_weights
    at_peak = dict(resident)
    for k, v in phases[phase].items():
        at_peak[k] = at_peak.get(k, 0.0) + v
    return Parts(
        at_peak=at_peak,
        phase=phase,
        loss_blocks=p.loss_blocks,
        paged_bytes=p.paged_bytes,
        trainable_params=p.trainable_params,
        phase_totals=totals,
        resident=p.resident + ref_weights,
        phase_parts=phases,
        host_bytes=p.host_bytes,
    )
