"""The byte counts behind `advisor.memory.estimate`: what each part of a training step holds.

Each function returns bytes. "Per token per layer" counts are what autograd saves for backward in one
decoder layer (PyTorch + transformers + PEFT as they run on CUDA), written from the code paths:

- RMSNorm (llama family) upcasts its input to fp32 and saves that copy: 4·H per norm. Liger's norm
  saves the input in its own dtype instead.
- Attention through SDPA/flash saves q (after RoPE), k, v and the output; eager attention also saves
  the fp32 softmax and its bf16 copy (heads × seq per token) and the repeated k/v.
- The gated MLP saves gate and up outputs and the activation (3·I); Liger's SwiGLU recomputes the
  activation (2·I).
- A frozen linear saves nothing (its input gradient needs only the weight); a trainable one saves
  its input. A LoRA module casts its input to fp32 (adapters are fp32), and with dropout saves the
  dropout output (fp32) and a bool mask: 5 bytes per input feature; without dropout only the fp32
  copy (shared between q/k/v when the stream is already fp32, as in QLoRA).
- QLoRA: `prepare_model_for_kbit_training` upcasts embeddings, norms and lm_head to fp32, so the
  residual stream, every activation and the logits are fp32 (4 bytes) instead of bf16.

Two stacks (`cfg.stack`). "plain" is the loop above: PEFT as it comes, `model(labels=...).loss`, no
autocast (bench/calibration/measure_plain_stack.py). "tunewise" is the job `tunewise launch` runs
(launcher/train.py, TRL's SFTTrainer, read from trl 1.16's source):
- no `prepare_model_for_kbit_training`: QLoRA's embeddings, norms and lm_head stay bf16, so does the
  residual stream; TRL casts the trainable LoRA weights of a quantized model to bf16 (their gradients
  and AdamW's m and v follow the parameter's dtype); LoRA on bf16 weights stays fp32 (PEFT's default);
- bf16 autocast (accelerate wraps the forward): a LoRA module's matmul saves a bf16 cast of its input,
  so an fp32 adapter keeps 2 bytes per input feature (+ the dropout mask), not the fp32 dropout output;
- TRL's fused LM head (`add_fused_lm_head`, `ChunkedLogProbFunction`): logits exist one
  4,096-token × 32,768-vocabulary tile at a time, the hidden-state gradient is accumulated in fp32;
- `use_liger_kernel` applies Liger's RMSNorm/SwiGLU/RoPE only (TRL turns its fused linear
  cross-entropy off in favour of the fused head);
- packing with BFD: TRL flattens the micro-batch into one padding-free row of batch × seq tokens
  (`padding_free`, for FlashAttention-2); under SDPA and eager the job keeps the packed rows as rows
  (launcher/packing.py). Either way a row of several documents carries a block-diagonal mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from advisor.memory.config import MemoryConfig
from advisor.models import ModelFacts, count_params, linear_params_per_layer

# NF4 with double quantisation: 4 bits per weight, one 8-bit absmax per 64-weight block, and one fp32
# scale per 256 of those blocks (QLoRA paper, section 2; bitsandbytes defaults blocksize 64 / 256).
NF4_BYTES_PER_PARAM = 0.5 + 1 / 64 + 4 / (64 * 256)
# bitsandbytes 8-bit optimizers: two uint8 states plus one fp32 absmax per 256-value block each.
# Parameters with fewer than 4,096 values keep 32-bit states (bnb's min_8bit_size).
ADAM8_BYTES_PER_PARAM = 2 * (1 + 4 / 256)
# TRL's fused LM head (trl/kernels/chunked_logprob.py): TOKEN_CHUNK_SIZE and the chunk_size that
# trl.trainer.utils passes (_CHUNKED_LOGPROB_CHUNK_SIZE); its tile buffer is this size whatever the vocabulary.
TRL_HEAD_TOKENS = 4096
TRL_HEAD_VOCAB = 32768


@dataclass
class Parts:
    at_peak: dict[str, float]  # component -> bytes, at the moment of the peak
    phase: str
    loss_blocks: float  # bytes of the loss's large transient blocks (drives the allocator reserve)
    paged_bytes: float  # optimizer states in managed memory (not in max_memory_allocated)
    trainable_params: int
    # every moment's bytes on top of the resident parts (the peak is the largest); for benchmarks
    phase_totals: dict[str, float] = field(default_factory=dict)
    resident: float = 0.0
    phase_parts: dict[str, dict[str, float]] = field(default_factory=dict)  # each moment's components
    host_bytes: float = 0.0  # FSDP CPU offload: the shards, gradients and optimizer states kept in host RAM


def precision_of(cfg: MemoryConfig) -> str:
    return getattr(cfg, "precision", "bf16-mixed")


def stream_bytes(cfg: MemoryConfig) -> int:
    """Bytes per element of the residual stream and activations (plain QLoRA and fp32 runs: fp32)."""
    return 4 if (cfg.method == "qlora" and cfg.stack == "plain") or precision_of(cfg) == "fp32" else 2


def residual_bytes(cfg: MemoryConfig) -> int:
    """Bytes per element of the residual stream between layers (what checkpointing keeps): full fine-tuning
    with fp32 master weights embeds in fp32 and adds each block's bf16 output into an fp32 stream."""
    if cfg.method == "full" and precision_of(cfg) == "bf16-mixed" and not fsdp_sharded(cfg):
        return 4
    return stream_bytes(cfg)


def base_weight_bytes(cfg: MemoryConfig):
    """advisor.precision.Bytes for the base weights under the run's precision."""
    from advisor.precision import base_bytes

    return base_bytes(precision_of(cfg))


def param_bytes(cfg: MemoryConfig) -> dict:
    """Bytes per parameter of what the step holds, by part: a trainable parameter's weight, gradient and
    optimizer states (LoRA: an adapter weight; Spectrum/full: a base weight) and a frozen base weight. Per
    GPU before sharding (FSDP/ZeRO-3 divide by the GPU count)."""
    lora = cfg.method in ("lora", "qlora")
    pb = base_weight_bytes(cfg)
    w = 4 if fsdp_sharded(cfg) else adapter_bytes(cfg) if lora else pb.weight
    states = 2 * w if cfg.optimizer == "adamw" else ADAM8_BYTES_PER_PARAM
    if (
        cfg.optimizer == "adamw"
        and precision_of(cfg) == "bf16-compensated"
        and not lora
        and not fsdp_sharded(cfg)
    ):
        states += 2
    frozen = NF4_BYTES_PER_PARAM if cfg.method == "qlora" else pb.frozen
    return {
        "weight": w,
        "gradient": w,
        "optimizer": round(states, 3),
        "trainable_total": round(2 * w + states, 3),
        "frozen": round(frozen, 3),
    }


def adapter_bytes(cfg: MemoryConfig) -> int:
    """LoRA weights' element size: PEFT keeps them fp32; TRL casts a quantized model's to bf16."""
    return 2 if cfg.method == "qlora" and cfg.stack == "tunewise" else 4


def fsdp_sharded(cfg: MemoryConfig) -> bool:
    """FSDP over several GPUs, as accelerate runs the job: bf16 mixed precision, bf16 gathers."""
    return cfg.distributed == "fsdp" and cfg.n_gpus > 1


def adapter_compute_bytes(cfg: MemoryConfig) -> int:
    """LoRA weights' element size in the forward and backward: FSDP gathers them in bf16 (the mixed
    precision policy's param dtype) whatever their shards hold."""
    return 2 if fsdp_sharded(cfg) else adapter_bytes(cfg)


def lora_saved_input_bytes(cfg: MemoryConfig) -> int:
    """Element size of the input a LoRA matmul saves: the adapter's dtype, or bf16 under autocast."""
    return 2 if cfg.stack == "tunewise" else adapter_compute_bytes(cfg)


def flattened(cfg: MemoryConfig) -> bool:
    """The job's micro-batch as one flattened row (TRL's padding-free layout) instead of rows."""
    return cfg.stack == "tunewise" and cfg.padding_free


def attn_span(cfg: MemoryConfig) -> int:
    """Keys each query's score row covers: the sequence, or the flattened row (padding-free)."""
    return cfg.seq_len * cfg.batch_size if flattened(cfg) else cfg.seq_len


def attn_rows(cfg: MemoryConfig) -> int:
    """Rows of the attention mask: the micro-batch, or the one flattened row."""
    return 1 if flattened(cfg) else cfg.batch_size


def lora_modules(m: ModelFacts) -> list[tuple[int, int]]:
    """(in_features, out_features) of the modules `target_modules="all-linear"` wraps, per layer."""
    h, i = m.hidden_size, m.intermediate_size
    if m.fused_qkv:
        return [(h, m.q_dim + 2 * m.kv_dim), (m.q_dim, h), (h, 2 * i), (i, h)]
    return [(h, m.q_dim), (h, m.kv_dim), (h, m.kv_dim), (m.q_dim, h), (h, i), (h, i), (i, h)]


def trainable_params(m: ModelFacts, cfg: MemoryConfig) -> int:
    if cfg.method in ("lora", "qlora"):
        return m.num_layers * sum(cfg.rank * (a + b) for a, b in lora_modules(m))
    if cfg.method == "spectrum":
        if cfg.spectrum_trainable_params is not None:
            return int(cfg.spectrum_trainable_params)
        return round(cfg.spectrum_fraction * m.num_layers * linear_params_per_layer(m))
    return count_params(m)["total"]


def effective_attn(m: ModelFacts, cfg: MemoryConfig) -> str:
    """transformers refuses SDPA for Gemma-2 (soft-capped scores); it runs eager unless flash is asked."""
    if cfg.attn == "sdpa" and (m.family == "gemma2" or m.attn_logit_softcapping):
        return "eager"
    return cfg.attn


# Families whose layers alternate sliding-window and full attention: transformers builds one mask of each.
_TWO_MASK_FAMILIES = {"gemma2", "gemma3", "gemma3_text"}


def attn_mask_bytes(m: ModelFacts, cfg: MemoryConfig) -> float:
    """The attention mask transformers builds once per forward; every layer keeps it for backward (SDPA
    and eager save it; checkpointing keeps it as a layer input). Eager: an additive mask in the stream's
    dtype, batch × seq² (the flattened row: (batch·seq)²). SDPA: none on unpadded rows (`is_causal`), but a
    bool block-diagonal mask of the same shape on packed rows of several sequences. Flash: none (cu_seqlens).
    Found by the whole-step trace on CPU (bench/memory_trace.py)."""
    attn = effective_attn(m, cfg)
    masks = 2 if m.family in _TWO_MASK_FAMILIES else 1
    if attn == "eager":
        return masks * attn_rows(cfg) * attn_span(cfg) ** 2 * stream_bytes(cfg)
    if packed_sdpa(m, cfg):
        return masks * attn_rows(cfg) * attn_span(cfg) ** 2
    return 0.0


def packed_sdpa(m: ModelFacts, cfg: MemoryConfig) -> bool:
    """The job's packed rows of several sequences under SDPA: transformers passes a block-diagonal mask
    (from the restarting position ids), so SDPA cannot use its native GQA path or `is_causal`. A packed
    row holds several documents unless every example fills the sequence (`cfg.packed_docs`); a flattened
    micro-batch of 2 or more always does."""
    several = cfg.packed_docs or (flattened(cfg) and cfg.batch_size > 1)
    return effective_attn(m, cfg) == "sdpa" and cfg.stack == "tunewise" and several


def attn_mask_bytes_per_layer(m: ModelFacts, cfg: MemoryConfig) -> float:
    """What each layer's SDPA call saves of the mask: torch turns the bool mask into an additive one in
    the query's dtype (rows × span² elements) and the attention kernel keeps it for its backward."""
    return attn_rows(cfg) * attn_span(cfg) ** 2 * stream_bytes(cfg) if packed_sdpa(m, cfg) else 0.0


def layer_saved_bytes_per_token(m: ModelFacts, cfg: MemoryConfig, *, mask_bytes: int = 1) -> float:
    """Bytes autograd saves in one decoder layer, per token, for a step without checkpointing.

    `mask_bytes`: the dropout mask's element size (bool on CUDA; the CPU kernel differs).
    """
    h, i, q, kv = m.hidden_size, m.intermediate_size, m.q_dim, m.kv_dim
    s = stream_bytes(cfg)
    liger = cfg.liger
    span = attn_span(cfg)
    # Norms: fp32 copy of the input (Liger: the input itself, its own dtype).
    total = m.norms_per_layer * (h * (s if liger else 4) + 4)  # + the fp32 reciprocal RMS
    # Attention.
    if effective_attn(m, cfg) == "eager":
        total += q * s * 3 + m.num_heads * span * (4 + s)  # q, repeated k and v, softmax fp32 + copy
        if m.attn_logit_softcapping:
            total += m.num_heads * span * s  # the tanh output of the soft-capped scores
    else:
        # q, k, v, output, fp32 logsumexp. With a mask (packed rows) transformers leaves SDPA's GQA path
        # and repeats k and v to every query head (repeat_kv copies): SDPA saves those copies.
        # (One KV head: repeat_kv's expand + reshape of a single head is a view, not a copy.)
        kv_saved = q if packed_sdpa(m, cfg) and m.num_kv_heads > 1 else kv
        total += (2 * q + 2 * kv_saved) * s + 4 * m.num_heads
        if m.fused_qkv:
            total += (q + kv) * s  # v is a view of the fused qkv output: the whole buffer stays alive
    # Gated MLP.
    total += (2 if liger else 3) * i * s
    # Trainable base weights save their inputs (attention and MLP inputs are shared by q/k/v, gate/up).
    frac = {"full": 1.0, "spectrum": cfg.spectrum_fraction}.get(cfg.method, 0.0)
    if frac:
        total += frac * sum(_distinct_inputs(m, cfg)) * s
        if cfg.method == "full":
            total += (
                m.norms_per_layer * h * residual_bytes(cfg)
            )  # trainable norm weights save the normalised input
    # LoRA adapters.
    if cfg.method in ("lora", "qlora"):
        mods = lora_modules(m)
        c = lora_saved_input_bytes(cfg)
        total += len(mods) * c * cfg.rank  # lora_A output, saved by lora_B
        if cfg.lora_dropout > 0:
            total += sum((c + mask_bytes) * a for a, _ in mods)  # dropout output (or its cast) + mask
        elif adapter_compute_bytes(cfg) == s and c == s:
            total += s * sum(_distinct_inputs(m, cfg))  # no cast: q/k/v (gate/up) share the one input
        else:
            total += sum(c * a for a, _ in mods)  # each module casts its own copy
    return total


def lora_weight_casts_per_layer(m: ModelFacts, cfg: MemoryConfig) -> float:
    """Bytes of the bf16 copies autocast makes of one layer's fp32 LoRA weights (tunewise stack), kept
    for backward by each adapter matmul; bf16 adapters and the plain stack need none."""
    if cfg.method not in ("lora", "qlora") or cfg.stack != "tunewise" or adapter_compute_bytes(cfg) == 2:
        return 0.0
    return 2 * sum(cfg.rank * (a + b) for a, b in lora_modules(m))


def _distinct_inputs(m: ModelFacts, cfg: MemoryConfig) -> list[int]:
    """Sizes of the layer's linear inputs not already saved elsewhere: attention in (shared by q/k/v),
    MLP in (shared by gate/up), down in; o_proj's input is SDPA's own saved output (its (b, s, h, d)
    layout makes the transpose free), a fresh copy only under eager attention."""
    sizes = [m.hidden_size, m.hidden_size, m.intermediate_size]
    return sizes + [m.q_dim] if effective_attn(m, cfg) == "eager" else sizes


def backward_work_bytes_per_token(m: ModelFacts, cfg: MemoryConfig) -> float:
    """Gradient buffers alive at once inside one layer's backward (the MLP's down projection is the
    widest point): the input gradient of the base path, and for LoRA the gradients (in the adapter's
    dtype) of the dropout output and of the input, all `intermediate_size` wide."""
    s = stream_bytes(cfg)
    lora = cfg.method in ("lora", "qlora")
    return m.intermediate_size * max(3 * s, s + (2 * adapter_compute_bytes(cfg) if lora else 0))


def logits_bytes_per_token(m: ModelFacts, cfg: MemoryConfig) -> float:
    """Peak of the loss: during log-softmax backward its saved fp32 output, the incoming gradient and
    the outgoing gradient coexist (3 × 4 bytes × vocab); the forward holds at most 2 + 4 + 4.
    Gemma-2's final soft-capping keeps one more logits copy (tanh output)."""
    v = m.vocab_size
    extra = stream_bytes(cfg) * v if m.final_logit_softcapping else 0
    return 12 * v + extra


def trl_head_bytes(m: ModelFacts, cfg: MemoryConfig, tokens: int, lm_head_trainable: bool) -> float:
    """Peak of TRL's fused LM head backward (ChunkedLogProbFunction): the saved (compacted) hidden
    states, their fp32 gradient accumulator and its cast back, and one logits tile; a trainable
    lm_head adds its fp32 gradient accumulator and the cast back to bf16. Soft-capping runs in-kernel."""
    s = stream_bytes(cfg)
    r = residual_bytes(cfg)  # the hidden states it saves, and their gradient cast back (fp32 stream: no cast)
    tile = min(tokens, TRL_HEAD_TOKENS) * TRL_HEAD_VOCAB * s
    weight = m.vocab_size * m.hidden_size * (4 + 2) if lm_head_trainable else 0
    return (4 + r + (0 if r == 4 else s)) * m.hidden_size * tokens + tile + weight


def layer_params(m: ModelFacts) -> int:
    """Parameters of one decoder layer (one FSDP unit under transformer-layer auto-wrap)."""
    return (count_params(m)["total"] - root_params(m)) // m.num_layers


def root_params(m: ModelFacts) -> int:
    """Parameters outside the decoder layers: embeddings, lm_head, the final norm (FSDP's root unit)."""
    c = count_params(m)
    return c["embed"] + c["lm_head"] + m.hidden_size


def cpu_offload(cfg: MemoryConfig) -> bool:
    """FSDP with `offload_params`: every shard, its gradient and the optimizer step live in host memory; the GPU
    holds only the units gathered for the moment (and the activations)."""
    return fsdp_sharded(cfg) and bool(getattr(cfg, "cpu_offload", False))


def fsdp_fp32_params(m: ModelFacts, cfg: MemoryConfig, n_train: int) -> int:
    """Base-model parameters accelerate upcasts to fp32 under FSDP with bf16 mixed precision: every
    flat parameter with a trainable part (accelerator.py `prepare_model`, "FSDP upcast of low precision
    parameters"), i.e. every decoder layer Spectrum touches, whole, or the whole model for full
    fine-tuning. LoRA's trainable units are the adapters themselves (counted by `p_bytes`). Spectrum is
    taken to fill whole layers; a scan that spreads its picks over more layers upcasts more."""
    if cfg.method == "full":
        return count_params(m)["total"]
    if cfg.method == "spectrum" and n_train:
        return min(m.num_layers, math.ceil(n_train / layer_params(m) - 1e-9)) * layer_params(m)
    return 0


def fsdp_moments(
    m: ModelFacts,
    cfg: MemoryConfig,
    phases: dict,
    *,
    per_layer: float,
    upcast: int,
    grads: float,
    lm_head_grad: float,
) -> None:
    """FSDP1 as accelerate wraps the job (FULL_SHARD, one unit per decoder layer, BACKWARD_PRE), in place.

    Gathered bf16 weights: the root unit (embeddings, lm_head, final norm) from the forward's start to
    the backward's end, plus the layer in use, and in the backward the next one prefetched. A trainable
    unit's gradient exists unsharded in bf16 (the reduce dtype) until its reduce-scatter, and the sharded
    fp32 gradients accumulate layer by layer; the root's comes last, after layer 0's backward.
    Found by the 2-process CPU trace (bench/memory_trace_fsdp.py)."""
    root = root_params(m) * (stream_bytes(cfg) if cfg.method == "qlora" else 2)
    for name, layers in (("loss", 1), ("first layer backward", 2), ("end of backward", 1)):
        phases[name]["weights"] = root + layers * per_layer
    if cfg.method in ("lora", "qlora") or not upcast:
        return
    layer_grad = 2 * min(upcast, layer_params(m))
    phases["first layer backward"]["gradients"] = lm_head_grad + layer_grad
    if cfg.method != "full":  # Spectrum: layer 0's backward, the last trainable unit to reduce
        phases["end of backward"]["gradients"] = grads + layer_grad
        return
    shards = cfg.n_gpus
    at_layer0 = dict(
        phases["end of backward"], gradients=grads - 4 * root_params(m) / shards + lm_head_grad + layer_grad
    )
    # then the root's: every sharded gradient, its own unsharded one in bf16 and layer 0's weights released
    at_root = {"weights": root, "gradients": grads + 2 * root_params(m)}
    phases["end of backward"] = max(at_layer0, at_root, key=lambda d: sum(d.values()))


def sft_step_parts(m: ModelFacts, cfg: MemoryConfig) -> Parts:
    s = stream_bytes(cfg)
    shards = cfg.n_gpus if cfg.distributed in ("fsdp", "zero3") and cfg.n_gpus > 1 else 1
    tokens = cfg.batch_size * cfg.seq_len
    counts = count_params(m)
    h, L = m.hidden_size, m.num_layers

    # Weights.
    n_train = trainable_params(m, cfg)
    fsdp = fsdp_sharded(cfg)
    upcast = fsdp_fp32_params(m, cfg, n_train) if fsdp else 0
    pb = base_weight_bytes(cfg)
    base_train = n_train if cfg.method in ("spectrum", "full") else 0
    if cfg.method == "qlora":  # the rest: fp32 after the plain stack's kbit preparation, else bf16
        weights = counts["linear"] * NF4_BYTES_PER_PARAM + s * (counts["total"] - counts["linear"])
    elif fsdp:  # trainable FSDP units: fp32 shards (4 bytes, not 2), whatever the precision asked
        weights = pb.frozen * counts["total"] + max(0, 4 - pb.frozen) * upcast
    else:  # frozen weights in the precision's 16-bit (or fp32) format; trainable base weights as it keeps them
        weights = pb.frozen * (counts["total"] - base_train) + pb.weight * base_train
    weights /= shards
    per_layer = linear_params_per_layer(m) * (NF4_BYTES_PER_PARAM if cfg.method == "qlora" else 2)
    if shards > 1 and not fsdp:  # ZeRO-3 gathers one layer's full weights, and prefetches the next
        weights += 2 * per_layer

    # Trainable parameters, their gradients and optimizer states.
    lora = cfg.method in ("lora", "qlora")
    # spectrum/full: the trainable weights as the precision keeps them (fp32 master copies, or bf16 with a
    # compensated optimizer); under FSDP accelerate keeps every trainable shard in fp32
    p_bytes = 4 if fsdp else adapter_bytes(cfg) if lora else pb.weight
    adapters = n_train * p_bytes if lora else 0
    grads = (n_train if lora or not fsdp else upcast) * p_bytes / shards
    if cfg.optimizer == "adamw":
        states = 2 * p_bytes * n_train  # torch AdamW keeps m and v in the parameter's dtype
        if precision_of(cfg) == "bf16-compensated" and not lora and not fsdp:
            states += 2 * n_train  # torch-optimi's Kahan compensation buffer, bf16
    else:
        states = ADAM8_BYTES_PER_PARAM * n_train
    states /= shards
    paged = states if cfg.optimizer.startswith("paged") else 0.0
    if paged:
        states = 0.0
    ddp_buckets = grads if (cfg.n_gpus > 1 and shards == 1) else 0.0
    resident = {"weights": weights, "lora_adapters": adapters / shards, "optimizer_states": states}
    host = 0.0
    if cpu_offload(cfg):  # shards, sharded gradients and AdamW's moments move to host RAM (per rank)
        host = sum(resident.values()) + grads
        resident = {k: 0.0 for k in resident}

    # Activations.
    layer = (
        layer_saved_bytes_per_token(m, cfg) * tokens
        + lora_weight_casts_per_layer(m, cfg)
        + attn_mask_bytes_per_layer(m, cfg)
    )
    boundaries = L * h * residual_bytes(cfg) * tokens  # gradient checkpointing keeps each layer's input
    mask = attn_mask_bytes(m, cfg)
    saved = boundaries + layer if cfg.grad_ckpt else L * layer
    saved += mask
    final = h * (s if cfg.liger else 4) * tokens  # the final norm's input (HF: its fp32 copy)
    if cfg.method == "full" and cfg.stack == "plain":
        final += h * s * tokens  # a trainable lm_head saves its input
    work = backward_work_bytes_per_token(m, cfg) * tokens
    if cfg.method == "qlora":
        work += max(m.hidden_size * m.intermediate_size, h * m.q_dim) * 2  # one dequantised weight

    if cfg.stack == "tunewise":
        loss = trl_head_bytes(m, cfg, tokens, lm_head_trainable=cfg.method == "full")
    elif cfg.liger:
        # Fused linear cross-entropy: logits exist one chunk at a time; the hidden-state gradient is
        # computed in the forward and kept for the backward.
        chunk = 2 ** math.ceil(math.log2(max(1, math.ceil(tokens / math.ceil(m.vocab_size / h)))))
        loss = h * s * tokens + 2 * chunk * m.vocab_size * s
    else:
        loss = logits_bytes_per_token(m, cfg) * tokens
    lm_head_grad = 0.0
    if cfg.method == "full":  # FSDP: the root's gradient is reduce-scattered only at backward's end
        lm_head_grad = m.vocab_size * h * 2 / (1 if fsdp else shards)

    top_layer_grads = (grads - lm_head_grad) / L + lm_head_grad if n_train else 0.0
    if host:  # offloaded: each unit's gradient leaves for the CPU after its reduce-scatter
        grads = 0.0
    phases = {
        "loss": {
            "activations": (boundaries if cfg.grad_ckpt else L * layer) + mask + final,
            "logits_loss": loss,
        },
        "first layer backward": {
            "activations": saved + final,
            "backward_work": work,
            "gradients": top_layer_grads,
        },
        "end of backward": {
            "activations": ((h * s * tokens + layer) if cfg.grad_ckpt else layer) + mask,
            "backward_work": work,
            "gradients": grads + ddp_buckets,
        },
    }
    if fsdp:
        fsdp_moments(
            m, cfg, phases, per_layer=per_layer, upcast=upcast, grads=grads, lm_head_grad=lm_head_grad
        )
    totals = {k: sum(v.values()) for k, v in phases.items()}
    phase = max(totals, key=totals.get)
    at_peak = dict(resident)
    for k, v in phases[phase].items():  # a moment's "weights" (FSDP's gathered units) add to the shards
        at_peak[k] = at_peak.get(k, 0.0) + v
    big_fp32_logits = cfg.stack == "plain" and not cfg.liger
    return Parts(
        at_peak=at_peak,
        phase=phase,
        loss_blocks=loss if big_fp32_logits else 0.0,
        paged_bytes=paged,
        trainable_params=n_train,
        phase_totals=totals,
        resident=sum(resident.values()),
        phase_parts=phases,
        host_bytes=host,
    )
