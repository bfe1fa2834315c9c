"""The activation model checked against what autograd really saves, on CPU with tiny models.

CPU cannot report CUDA memory, but the tensors autograd keeps for backward are the same objects on
either device. A saved-tensor hook records every tensor saved inside decoder layer 1 (deduplicated by
storage; parameters and tensors first saved before the layer, like the shared RoPE tables, excluded)
and the total must equal `layer_saved_bytes_per_token` × tokens. Layer 1 is measured: in layer 0 a
frozen embedding's output needs no gradient, so its first norm saves nothing.
LoRA runs without dropout here: the CPU dropout kernel keeps a different mask than CUDA's bool one
(the CUDA mask is covered by the H200 points in bench/calibration/).

Both stacks: "plain" as the calibration loop runs (no autocast, QLoRA through
prepare_model_for_kbit_training); "tunewise" as the TRL job runs: bf16 autocast around the forward
(CPU autocast here, CUDA's in the job: both cast a linear's inputs to bf16), QLoRA without kbit
preparation and with the trainable adapters cast to bf16 the way SFTTrainer does it, packed rows.
"""

from __future__ import annotations

import pytest

from advisor.memory import MemoryConfig
from advisor.memory.parts import (
    attn_mask_bytes_per_layer,
    layer_saved_bytes_per_token,
    lora_weight_casts_per_layer,
)
from advisor.models import facts_from_config

pytestmark = pytest.mark.slow
BS, SEQ = 2, 96

SHAPES = {
    "llama": dict(
        model_type="llama",
        vocab_size=512,
        hidden_size=128,
        intermediate_size=448,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=32,
        tie_word_embeddings=False,
    ),
    "qwen2": dict(
        model_type="qwen2",
        vocab_size=512,
        hidden_size=128,
        intermediate_size=352,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
    "phi3": dict(
        model_type="phi3",
        vocab_size=512,
        hidden_size=128,
        intermediate_size=320,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        tie_word_embeddings=False,
        pad_token_id=0,
    ),
    "gemma2": dict(
        model_type="gemma2",
        vocab_size=512,
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=48,
        tie_word_embeddings=True,
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
    ),
}


def _build(shape: dict, attn: str):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = AutoConfig.for_model(**shape)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation=attn)


def _saved_in_layer1(
    model, decoder, *, autocast: bool = False, packed: bool = False, one_doc: bool = False, row_docs: int = 0
) -> int:
    """Bytes saved inside decoder layer 1 for one forward + backward. `autocast`: under bf16 autocast,
    as accelerate wraps the Trainer's forward. `packed`: the BS sequences as one flattened padding-free row
    with restarting position ids (TRL's layout); with `one_doc`, that row is one document. `row_docs`: BS
    packed rows kept as rows (the job's layout under SDPA/eager), each of `row_docs` documents."""
    import contextlib

    import torch

    before = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}
    inside = [False]

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if not inside[0]:
            before.add(ptr)
        elif ptr not in before and ptr not in seen:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    decoder.layers[1].register_forward_pre_hook(lambda *a, **k: inside.__setitem__(0, True), with_kwargs=True)
    decoder.layers[1].register_forward_hook(lambda *a, **k: inside.__setitem__(0, False), with_kwargs=True)
    model.train()
    model.config.use_cache = False
    x = torch.randint(0, model.config.vocab_size, (BS, SEQ), generator=torch.Generator().manual_seed(0))
    kw = {}
    if row_docs:
        kw["position_ids"] = torch.arange(SEQ // row_docs).repeat(row_docs).repeat(BS, 1)
    if packed:
        x = x.reshape(1, BS * SEQ)
        kw["position_ids"] = (torch.arange(BS * SEQ) if one_doc else torch.arange(SEQ).repeat(BS)).unsqueeze(
            0
        )
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with amp:
            loss = model(input_ids=x, labels=x, **kw).loss
        loss.backward()
    return sum(seen.values())


def _lora(model, rank=8):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(
        model,
        LoraConfig(
            r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
        ),
    )


def _check(shape: dict, cfg: MemoryConfig, measured: int):
    facts = facts_from_config(shape, name="tiny", source="local")
    predicted = (
        layer_saved_bytes_per_token(facts, cfg) * BS * SEQ
        + lora_weight_casts_per_layer(facts, cfg)
        + attn_mask_bytes_per_layer(facts, cfg)
    )
    assert predicted == pytest.approx(measured, rel=0.005), (predicted, measured)


def _plain(method: str, **kw) -> MemoryConfig:
    return MemoryConfig(method, seq_len=SEQ, batch_size=BS, stack="plain", **kw)


@pytest.mark.parametrize("family", sorted(SHAPES))
def test_lora_saved_activations(family):
    # Gemma-2 has no SDPA path in transformers: it runs eager, and the estimator knows it.
    model = _lora(_build(SHAPES[family], "eager" if family == "gemma2" else "sdpa"))
    measured = _saved_in_layer1(model, model.base_model.model.model)
    _check(SHAPES[family], _plain("lora", rank=8, lora_dropout=0.0), measured)


@pytest.mark.parametrize("method", ["full", "spectrum"])
def test_trainable_weights_save_their_inputs(method):
    model = _build(SHAPES["llama"], "sdpa")
    if method == "spectrum":  # every projection unfrozen: fraction 1 for the measured layer
        for name, p in model.named_parameters():
            p.requires_grad_(name.endswith("proj.weight"))
        model.enable_input_require_grads()
    measured = _saved_in_layer1(model, model.model)
    # the bf16 model trained as it is (what the plain loop does): the old pure-bf16 precision
    _check(SHAPES["llama"], _plain(method, spectrum_fraction=1.0, precision="bf16-pure"), measured)


def test_eager_attention_saves_the_probabilities():
    model = _lora(_build(SHAPES["llama"], "eager"))
    measured = _saved_in_layer1(model, model.base_model.model.model)
    cfg = _plain("lora", rank=8, lora_dropout=0.0, attn="eager")
    _check(SHAPES["llama"], cfg, measured)


def _load_4bit(tmp_path):
    """The tiny Llama saved and reloaded as NF4 with double quantisation and bf16 compute (bitsandbytes on CPU)."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    _build(SHAPES["llama"], "sdpa").save_pretrained(tmp_path)
    q = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    return AutoModelForCausalLM.from_pretrained(
        tmp_path,
        quantization_config=q,
        dtype=torch.bfloat16,
        device_map={"": "cpu"},
        attn_implementation="sdpa",
    )


def test_qlora_runs_activations_in_fp32(tmp_path):
    from peft import prepare_model_for_kbit_training

    model = _load_4bit(tmp_path)
    model = _lora(prepare_model_for_kbit_training(model, use_gradient_checkpointing=False))
    measured = _saved_in_layer1(model, model.base_model.model.model)
    _check(SHAPES["llama"], _plain("qlora", rank=8, lora_dropout=0.0), measured)


# The tunewise stack: the job launcher/train.py runs through TRL's SFTTrainer.


def _tunewise(method: str, flat: bool = True, **kw) -> MemoryConfig:
    """The job's settings; `flat`: its micro-batch flattened into one row, as `packed=True` measures."""
    return MemoryConfig(method, seq_len=SEQ, batch_size=BS, stack="tunewise", padding_free=flat, **kw)


@pytest.mark.parametrize("family", ["llama", "phi3"])
def test_tunewise_lora_saves_bf16_casts_under_autocast(family):
    # fp32 adapters under bf16 autocast: each adapter matmul saves a bf16 cast of its input and of its
    # weight, not the fp32 input the plain loop keeps.
    model = _lora(_build(SHAPES[family], "sdpa"))
    measured = _saved_in_layer1(model, model.base_model.model.model, autocast=True, packed=True)
    _check(SHAPES[family], _tunewise("lora", rank=8, lora_dropout=0.0), measured)


def test_tunewise_qlora_keeps_the_stream_in_bf16(tmp_path):
    import torch

    model = _lora(_load_4bit(tmp_path))  # no prepare_model_for_kbit_training: SFTTrainer does not call it
    model.enable_input_require_grads()
    for p in model.parameters():  # what SFTTrainer does to a quantized model's trainable parameters
        if p.requires_grad:
            p.data = p.data.to(torch.bfloat16)
    measured = _saved_in_layer1(model, model.base_model.model.model, autocast=True, packed=True)
    _check(SHAPES["llama"], _tunewise("qlora", rank=8, lora_dropout=0.0), measured)


def test_tunewise_packed_eager_attention_spans_the_whole_row():
    # Padding-free packing runs the micro-batch as one row: eager scores are (BS*SEQ)^2, not BS*SEQ^2.
    # Two KV heads: with one, a batch-1 row lets matmul view the repeated k/v instead of copying them
    # (real GQA models copy in repeat_kv either way).
    shape = {**SHAPES["llama"], "num_key_value_heads": 2}
    model = _lora(_build(shape, "eager"))
    measured = _saved_in_layer1(model, model.base_model.model.model, autocast=True, packed=True)
    _check(shape, _tunewise("lora", rank=8, lora_dropout=0.0, attn="eager"), measured)


def test_tunewise_packed_sdpa_repeats_kv_and_keeps_an_additive_mask():
    # A packed row under SDPA carries a block-diagonal mask: transformers then repeats k/v to every query
    # head (no native GQA with a mask) and torch turns the bool mask into an additive one that the
    # kernel keeps, in every layer.
    from advisor.memory.parts import attn_mask_bytes_per_layer

    shape = {**SHAPES["llama"], "num_key_value_heads": 2}
    model = _lora(_build(shape, "sdpa"))
    measured = _saved_in_layer1(model, model.base_model.model.model, autocast=True, packed=True)
    cfg = _tunewise("lora", rank=8, lora_dropout=0.0)
    assert (
        attn_mask_bytes_per_layer(facts_from_config(shape, name="tiny", source="local"), cfg)
        == (BS * SEQ) ** 2 * 2
    )
    _check(shape, cfg, measured)


@pytest.mark.parametrize("one_doc", [False, True])
def test_tunewise_micro_batch_1_mask_follows_the_documents_in_the_row(one_doc):
    # Micro-batch 1: a packed row of several short documents carries the block-diagonal mask (and the
    # k/v copies) exactly like micro-batch 2+; a row that is one document runs SDPA unmasked.
    shape = {**SHAPES["llama"], "num_key_value_heads": 2}
    model = _lora(_build(shape, "sdpa"))
    measured = _saved_in_layer1(
        model, model.base_model.model.model, autocast=True, packed=True, one_doc=one_doc
    )
    cfg = MemoryConfig(
        "lora",
        rank=8,
        lora_dropout=0.0,
        seq_len=BS * SEQ,
        batch_size=1,
        stack="tunewise",
        packed_docs=not one_doc,
    )
    mask = attn_mask_bytes_per_layer(facts_from_config(shape, name="tiny", source="local"), cfg)
    assert mask == (0 if one_doc else (BS * SEQ) ** 2 * 2)
    _check(shape, cfg, measured)


@pytest.mark.parametrize("row_docs", [1, 2])
def test_tunewise_packed_rows_mask_each_row(row_docs):
    # The job's layout under SDPA (launcher/packing.py): BS packed rows kept as rows. Rows of several
    # documents carry a (BS, seq, seq) block-diagonal mask (an additive copy per layer, k/v repeated);
    # rows that are each one document run SDPA unmasked, with native GQA, as the plain stack does.
    shape = {**SHAPES["llama"], "num_key_value_heads": 2}
    model = _lora(_build(shape, "sdpa"))
    measured = _saved_in_layer1(model, model.base_model.model.model, autocast=True, row_docs=row_docs)
    cfg = _tunewise("lora", flat=False, rank=8, lora_dropout=0.0, packed_docs=row_docs > 1)
    mask = attn_mask_bytes_per_layer(facts_from_config(shape, name="tiny", source="local"), cfg)
    assert mask == (BS * SEQ**2 * 2 if row_docs > 1 else 0)  # a BS-th of the flattened row's (BS * SEQ)**2
    _check(shape, cfg, measured)
