"""Whole-step memory trace on CPU: the estimator's peak vs the live tensor bytes of real training steps.

    .venv/bin/python bench/memory_trace.py --out bench/results/memory-trace-cpu-DATE.txt [--json F]
        [--only SUBSTRING] [--explain]

CPU cannot report CUDA memory, but autograd, PEFT, TRL and the optimizer create the same tensors on
either device. `StepTrace`, a TorchDispatchMode, sees every tensor an op returns, counts its storage
once (rounded up to 512 bytes, the CUDA caching allocator's block size) and subtracts it when the
storage is freed (a weakref finalizer on the untyped storage; torch keeps that Python object alive as
long as the storage lives). Parameters, buffers and bitsandbytes quantisation states that exist before
the step are adopted as live at the start; the optimizer is created inside the trace and its states
appear in the first step, so the peak of two steps is the steady state, as `max_memory_allocated`
over a run would be. (torch's own `MemTracker` also runs on CPU, but it labels memory by module and
reference type; the phases here are the estimator's moments, and `--explain` needs the op behind
each storage.)

Stacks (`MemoryConfig.stack`): "plain" is the calibration loop (bench/calibration/measure_plain_stack.py:
PEFT, `model(input_ids, labels).loss.backward()`, AdamW, HF checkpointing, QLoRA through
`prepare_model_for_kbit_training`), written out here because that script's `one()` builds Llama only,
loads 4-bit models onto CUDA device 0, fixes dropout at 0.05 and runs ten steps. "tunewise" is the
launched job: launcher.train's own `load_model`, `lora_config`, `freeze_for_spectrum` and
`trainer_config` build a real SFTTrainer (packing BFD, padding-free, TRL's fused LM head), then
`trainer.train()` runs two steps. Like the job on a bf16 GPU: the plan's precision, bf16-mixed (bf16
weights, fp32 master copies of trained base weights, `launcher.precision`), `bf16=True` (CPU bf16 autocast, which TrainingArguments allows with
`use_cpu`), fused AdamW (torch has a CPU kernel). No Liger (GPU only), so `liger=False`.

DPO points (`Point.stage="dpo"`, `dpo_grid`): the job's DPO stage, launcher.train's `load_model`, `lora_config`
and `trainer_config(plan, "dpo", ...)` building a real DPOTrainer (`ref_model=None`: the adapter disabled, or
TRL's own reference copy for full/Spectrum, adopted as resident), fed pairs of known lengths. A forward
without autograd is the reference forward; its own peak is reported beside the step's.

LoRA dropout is 0: CPU dropout keeps an input-sized float mask where CUDA keeps a bool one.
One CPU-only term is added to the prediction (see `cpu_head_fold_bytes`): TRL's fused LM head folds
each logits tile with torch ops on CPU instead of a Triton kernel.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import statistics
import sys
import tempfile
import weakref
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from advisor.memory import (  # noqa: E402
    MemoryConfig,
    estimate,
    step_parts,  # noqa: E402
)
from advisor.memory.parts import TRL_HEAD_TOKENS, TRL_HEAD_VOCAB  # noqa: E402
from advisor.models import facts_from_config  # noqa: E402

MiB = 1024**2
ALIGN = 512  # the CUDA caching allocator's block size


def aligned(nbytes: int) -> int:
    """`nbytes` rounded up to whole allocator blocks, as the GPU would hold them."""
    return -(-nbytes // ALIGN) * ALIGN


_BASE = dict(tie_word_embeddings=False, max_position_embeddings=4096)
SHAPES = {  # small enough for 2 CPU cores; a vocabulary large enough that the LM head matters
    ("llama", "s"): dict(
        model_type="llama",
        vocab_size=8192,
        hidden_size=256,
        intermediate_size=704,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    ),
    ("llama", "m"): dict(
        model_type="llama",
        vocab_size=16384,
        hidden_size=512,
        intermediate_size=1408,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
    ),
    ("qwen2", "s"): dict(
        model_type="qwen2",
        vocab_size=8192,
        hidden_size=256,
        intermediate_size=640,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
    ("qwen2", "m"): dict(
        model_type="qwen2",
        vocab_size=32000,
        hidden_size=384,
        intermediate_size=1024,
        num_hidden_layers=3,
        num_attention_heads=6,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
    ("phi3", "s"): dict(
        model_type="phi3",
        vocab_size=8192,
        hidden_size=256,
        intermediate_size=640,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        pad_token_id=0,
    ),
    ("phi3", "m"): dict(
        model_type="phi3",
        vocab_size=16384,
        hidden_size=384,
        intermediate_size=1024,
        num_hidden_layers=3,
        num_attention_heads=6,
        num_key_value_heads=6,
        pad_token_id=0,
    ),
    ("llama", "w"): dict(
        model_type="llama",
        vocab_size=4096,
        hidden_size=512,
        intermediate_size=1408,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
    ),  # activations dominate
    # wide enough that the job's LoRA peak sits in the first layer's backward, as at 8B on the H200
    ("llama", "x"): dict(
        model_type="llama",
        vocab_size=8192,
        hidden_size=1024,
        intermediate_size=2816,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
    ),
    ("gemma2", "s"): dict(
        model_type="gemma2",
        vocab_size=8192,
        hidden_size=256,
        intermediate_size=640,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=96,
        tie_word_embeddings=True,
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
    ),
    ("gemma2", "m"): dict(
        model_type="gemma2",
        vocab_size=16384,
        hidden_size=384,
        intermediate_size=1024,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=128,
        tie_word_embeddings=True,
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
    ),
}


def shape(arch: str, size: str) -> dict:
    return {**_BASE, **SHAPES[(arch, size)]}


@dataclass(frozen=True)
class Point:
    arch: str
    size: str
    stack: str
    method: str
    seq: int
    bs: int
    ckpt: bool = True
    rank: int = 16
    docs: int = 1  # documents per packed row (the job): 1 = full-length rows, no block-diagonal mask at bs 1
    stage: str = "sft"  # "dpo": the job's DPOTrainer on preference pairs (bs pairs = 2 x bs rows);
    # "sft+dpo": that DPO stage continuing an adapter saved by SFT (TRL's frozen "ref" adapter copy)

    @property
    def dpo(self) -> bool:
        return self.stage in ("dpo", "sft+dpo")

    @property
    def attn(self) -> str:
        return "eager" if self.arch == "gemma2" else "sdpa"  # transformers has no SDPA path for Gemma-2

    def label(self) -> str:
        docs = f" docs={self.docs}" if self.docs > 1 else ""
        dpo = {"dpo": " dpo", "sft+dpo": " dpo after-sft"}.get(self.stage, "")
        return f"{self.arch}-{self.size} {self.stack} {self.method} {self.seq}x{self.bs} ckpt={self.ckpt}{docs}{dpo}"


# ---------------------------------------------------------------------------------------------- tracker


class StepTrace:
    """Live tensor-storage bytes while active; `peak`, its phase and step, and the bytes at the start."""

    def __init__(self, explain: bool = False):
        from torch.utils.weak import WeakIdKeyDictionary

        self.live = self.peak = self.start = 0
        self.phase, self.step = "setup", 0
        self.peak_phase, self.peak_step = "", 0
        self.explain = explain
        self._sizes = WeakIdKeyDictionary()
        self._info: dict[int, tuple[int, str, str]] = {}  # id(storage) -> (bytes, op, phase), with --explain
        self._snap_at = 0
        self.at_peak: list[tuple[int, str, str]] = []
        self.paused = 0  # > 0: new storages are not counted (temporaries a GPU kernel would not allocate)
        self.phase_peaks: dict[str, int] = {}  # the highest live bytes seen in each traced moment

    def adopt(self, tensors) -> None:
        """Count tensors that exist before the step (weights, buffers, quantisation states)."""
        for t in tensors:
            self.add(t, "before step")
        self.start = self.live

    def add(self, t, op: str) -> None:
        import torch

        if self.paused or not isinstance(t, torch.Tensor) or t.device.type == "meta":
            return
        st = t.untyped_storage()
        n = st.nbytes()
        if n == 0 or st in self._sizes:
            return
        n = aligned(n)
        self._sizes[st] = n
        self.live += n
        if self.explain:
            self._info[id(st)] = (n, op, self.phase)
        weakref.finalize(st, self._free, n, id(st))
        if self.live > self.phase_peaks.get(self.phase, 0):
            self.phase_peaks[self.phase] = self.live
        if self.live > self.peak:
            self.peak, self.peak_phase, self.peak_step = self.live, self.phase, self.step
            if self.explain and self.live > self._snap_at * 1.002:  # a snapshot within 0.2% of the peak
                self._snap_at = self.live
                self.at_peak = sorted(self._info.values(), reverse=True)[:12]

    def _free(self, n: int, key: int) -> None:
        self.live -= n
        self._info.pop(key, None)

    def mode(self):
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        trace = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for t in tree_flatten(out)[0]:
                    if isinstance(t, torch.Tensor):
                        trace.add(t, func.__name__)
                return out

        return _Mode()


def untrack_cpu_head_fold(trace: StepTrace) -> list:
    """Run the fused head's CPU fold untracked. On CUDA a Triton kernel folds each logits tile in place
    and `torch.addmm(out_dtype=float32, out=acc)` accumulates without a copy; on CPU the same work is done
    by torch ops whose temporaries (seven fp32 tile-sized tensors, fp32 copies for the addmm) all die
    inside the call. Returns the patches to undo (`restore`)."""
    from trl.kernels import chunked_logprob as ck

    undo = []
    for name in ("_forward_tile", "_backward_tile", "_addmm_fp32"):
        orig = getattr(ck, name)

        def paused(*a, _orig=orig, **kw):
            trace.paused += 1
            try:
                return _orig(*a, **kw)
            finally:
                trace.paused -= 1

        setattr(ck, name, paused)
        undo.append((ck, name, orig))
    return undo


def restore(undo: list) -> None:
    for mod, name, orig in undo:
        setattr(mod, name, orig)


def resident_tensors(model) -> list:
    """Parameters, buffers and the bitsandbytes 4-bit quantisation states (not parameters themselves)."""
    out = list(model.parameters()) + list(model.buffers())
    for p in model.parameters():
        qs = getattr(p, "quant_state", None)
        while qs is not None:
            out += [getattr(qs, "absmax", None), getattr(qs, "code", None)]
            qs = getattr(qs, "state2", None)
    return [t for t in out if t is not None]


def mark_phases(model, trace: StepTrace) -> list:
    """Hooks naming the moment: forward, loss (after the final norm), backward of decoder layer i
    (from the gradient of its output on), optimizer. Returns the handles to remove."""
    import torch
    import torch.optim.optimizer as optim_hooks

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    dec = base.model
    layers = dec.layers
    # A forward without autograd is DPO's reference forward (the policy with its adapter disabled).
    handles = [
        model.register_forward_pre_hook(
            lambda *a: _set(trace, "forward" if torch.is_grad_enabled() else "ref forward")
        )
    ]

    def in_backward() -> bool:
        return trace.phase.startswith(("backward", "loss bwd"))

    def on_norm(mod, args, out):
        if not in_backward():
            trace.phase = "loss fwd" if torch.is_grad_enabled() else "ref fwd"

    handles.append(dec.norm.register_forward_hook(on_norm))
    for i, layer in enumerate(layers):

        def on_layer(mod, args, out, i=i):
            t = out[0] if isinstance(out, tuple) else out
            if not in_backward() and isinstance(t, torch.Tensor) and t.requires_grad:
                t.register_hook(lambda g, i=i: _set(trace, f"backward L{i}"))

        handles.append(layer.register_forward_hook(on_layer))
    handles.append(optim_hooks.register_optimizer_step_pre_hook(lambda *a: _set(trace, "optimizer")))

    def after_step(*a):
        trace.phase, trace.step = "after step", trace.step + 1

    handles.append(optim_hooks.register_optimizer_step_post_hook(after_step))
    return handles


def _set(trace: StepTrace, phase: str) -> None:
    trace.phase = phase


def estimator_phase(traced: str, n_layers: int) -> str:
    """The estimator's name for a traced moment."""
    if traced.startswith("loss"):
        return "loss"
    if traced.startswith("ref"):
        return "reference forward"
    if traced == f"backward L{n_layers - 1}":
        return "first layer backward"
    if traced in ("backward L0", "grad clip"):
        return "end of backward"
    return traced


# ---------------------------------------------------------------------------------------------- stacks


def save_checkpoint(p: Point, root: Path) -> Path:
    """A random bf16 checkpoint of the point's shape with the demo tokenizer (cached per shape)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = root / f"{p.arch}-{p.size}"
    if not (path / "config.json").exists():
        torch.manual_seed(0)
        cfg = AutoConfig.for_model(**shape(p.arch, p.size))
        AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).save_pretrained(path)
        AutoTokenizer.from_pretrained(ROOT / "examples/demo/tokenizer").save_pretrained(path)
    return path


def _load_4bit(path: Path, attn: str):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    q = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    return AutoModelForCausalLM.from_pretrained(
        path, quantization_config=q, dtype=torch.bfloat16, device_map={"": "cpu"}, attn_implementation=attn
    )


def spectrum_layers(n_layers: int, fraction: float = 0.5) -> list[int]:
    """Evenly spaced layers, as the calibration script and gpu_train.py choose them."""
    k = max(1, round(fraction * n_layers))
    return sorted({round(i * (n_layers - 1) / max(1, k - 1)) for i in range(k)}) if k > 1 else [0]


def run_plain(p: Point, ckpt: Path, trace: StepTrace, steps: int = 2) -> int:
    """The calibration loop (measure_plain_stack.py's `one`), traced; returns the trainable count."""
    import torch
    from transformers import AutoModelForCausalLM

    if p.method == "qlora":
        model = _load_4bit(ckpt, p.attn)
    else:
        model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.bfloat16, attn_implementation=p.attn)
    model.config.use_cache = False
    if p.method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        if p.method == "qlora":
            model = prepare_model_for_kbit_training(
                model,
                use_gradient_checkpointing=p.ckpt,
                gradient_checkpointing_kwargs={"use_reentrant": False},
            )
        model = get_peft_model(
            model,
            LoraConfig(
                r=p.rank,
                lora_alpha=2 * p.rank,
                lora_dropout=0.0,
                target_modules="all-linear",
                task_type="CAUSAL_LM",
            ),
        )
    elif p.method == "spectrum":
        chosen = spectrum_layers(model.config.num_hidden_layers)
        for name, param in model.named_parameters():
            parts = name.split(".")
            param.requires_grad_(
                "layers" in parts
                and name.endswith("proj.weight")
                and int(parts[parts.index("layers") + 1]) in chosen
            )
    if p.ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    trainable = [q for q in model.parameters() if q.requires_grad]
    model.train()
    handles = mark_phases(model, trace)
    trace.adopt(resident_tensors(model))
    g = torch.Generator().manual_seed(0)
    try:
        with trace.mode():
            opt = torch.optim.AdamW(trainable, lr=2e-4, fused=True)  # fused, as on the GPU
            for _ in range(steps):
                x = torch.randint(0, model.config.vocab_size, (p.bs, p.seq), generator=g)
                loss = model(input_ids=x, labels=x).loss
                trace.phase = "loss bwd"
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            del loss, opt
    finally:
        for h in handles:
            h.remove()
    return sum(q.numel() for q in trainable)


def tunewise_plan(p: Point, ckpt: Path):
    """The plan gpu_train.py launches (bench/gpu_train.py `tunewise_plan`), at this point's settings."""
    from advisor.plan import DataSpec, LoraSpec, QuantSpec, SpectrumSpec, TrainingPlan

    patterns = None
    if p.method == "spectrum":
        chosen = spectrum_layers(SHAPES[(p.arch, p.size)]["num_hidden_layers"])
        patterns = [f"^model.layers.{i}.(self_attn|mlp).[a-z_]+proj.weight$" for i in chosen]
    return TrainingPlan(
        model=str(ckpt),
        method=p.method,
        stage=p.stage,
        data=DataSpec(train="data/train.jsonl", format="text"),
        max_length=p.seq,
        packing=True,
        completion_only_loss=False,
        micro_batch_size=p.bs,
        grad_accum=1,
        learning_rate=2e-4,
        max_steps=2,
        warmup_ratio=0.0,
        lora=LoraSpec(r=p.rank, alpha=2 * p.rank, dropout=0.0) if p.method in ("lora", "qlora") else None,
        quantization=QuantSpec() if p.method == "qlora" else None,
        spectrum=SpectrumSpec(unfrozen_parameters=patterns) if patterns else None,
        gradient_checkpointing=p.ckpt,
        liger=False,
        attn_implementation=p.attn,
        bf16=True,
        precision="bf16-mixed",
        eval_steps=10_000,
        early_stopping_patience=None,
        save_steps=10_000,
        logging_steps=1,
    )


def run_tunewise(
    p: Point, ckpt: Path, trace: StepTrace, work: Path, cpu_fold: bool = False
) -> tuple[int, bool]:
    """launcher.train's model and SFTConfig, a real SFTTrainer, two traced steps of `trainer.train()`.
    Returns the trainable count and whether bf16 autocast was on in the forward."""
    import argparse as ap

    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    from launcher import train as job
    from launcher.packing import use_packed_rows
    from launcher.precision import master_weights

    plan = tunewise_plan(p, ckpt)
    model = job.load_model(plan, cuda=False, precision=plan.precision)  # cuda=False: device_map cpu for 4-bit
    if p.method == "spectrum":
        job.freeze_for_spectrum(model, plan.spectrum.unfrozen_parameters)
    master_weights(model, plan, plan.precision)  # the job's fp32 master copies (Spectrum/full)
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    # `docs` documents of seq/docs tokens each: BFD packs exactly `docs` of them into a row of `seq`.
    rows = [
        torch.randint(4, vocab, (p.seq // p.docs,), generator=g).tolist() for _ in range(4 * p.bs * p.docs)
    ]
    ds = Dataset.from_dict({"input_ids": rows})
    args = ap.Namespace(max_steps=2, save_steps=None)
    config = job.trainer_config(plan, "sft", work / "out", ds, None, args, cuda=False)
    # As on a bf16 GPU: bf16 mixed precision and fused AdamW (trainer_config picks them when cuda=True).
    config = replace(config, bf16=True, optim="adamw_torch_fused", report_to=[], save_strategy="no")
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=ds,
        processing_class=AutoTokenizer.from_pretrained(ckpt),
        peft_config=job.lora_config(plan),
    )
    use_packed_rows(trainer, plan, "sft")  # the job's batch layout (launcher/train.py does the same)
    return trace_training(trainer, trace, cpu_fold)


def preference_rows(p: Point, vocab: int) -> dict:
    """Token-id preference pairs the DPO collator pads into 2 x bs rows of `seq` tokens: a prompt of a
    quarter of the sequence, a chosen answer that fills it and a rejected one half as long (so every
    batch is padded and carries an attention mask, as real pairs of unequal length do)."""
    import torch

    g = torch.Generator().manual_seed(0)
    prompt, chosen, rejected = p.seq // 4, p.seq - p.seq // 4, p.seq // 2 - p.seq // 4

    def ids(n: int) -> list[list[int]]:
        return [torch.randint(4, vocab, (n,), generator=g).tolist() for _ in range(4 * p.bs)]

    return {"prompt_ids": ids(prompt), "chosen_ids": ids(chosen), "rejected_ids": ids(rejected)}


def trace_training(trainer, trace: StepTrace, cpu_fold: bool, ref=None) -> tuple[int, bool]:
    """Run `trainer.train()` (two steps) under the trace, its moments marked: the decoder's phases, the
    loss's backward and the gradient clipping (accelerate's own calls), and a reference model's forward
    (DPO with TRL's reference copy, resident like the weights). Returns the trainable count and whether
    bf16 autocast was on in the forwards that build a graph."""
    import torch

    autocast = []
    handles = mark_phases(trainer.model, trace)
    if ref is not None:
        handles.append(ref.register_forward_pre_hook(lambda *a: _set(trace, "ref forward")))
    first = (
        trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") else trainer.model
    ).model.layers[0]
    handles.append(
        first.register_forward_pre_hook(  # inside accelerate's autocast-wrapped forward
            lambda *a: autocast.append(torch.is_autocast_enabled("cpu")) if torch.is_grad_enabled() else None
        )
    )
    acc = trainer.accelerator
    backward, clip = acc.backward, acc.clip_grad_norm_
    acc.backward = lambda loss, **kw: (_set(trace, "loss bwd"), backward(loss, **kw))[1]
    acc.clip_grad_norm_ = lambda *a, **kw: (_set(trace, "grad clip"), clip(*a, **kw))[1]
    trace.adopt(resident_tensors(trainer.model) + (resident_tensors(ref) if ref is not None else []))
    undo = [] if cpu_fold else untrack_cpu_head_fold(trace)
    try:
        with trace.mode():
            trainer.train()
    finally:
        restore(undo)
        for h in handles:
            h.remove()
    n = sum(q.numel() for q in trainer.model.parameters() if q.requires_grad)
    return n, bool(autocast and all(autocast))


def run_tunewise_dpo(
    p: Point, ckpt: Path, trace: StepTrace, work: Path, cpu_fold: bool = False
) -> tuple[int, bool]:
    """launcher.train's model and DPOConfig, a real DPOTrainer (reference = the policy with its adapter
    disabled, or for full/Spectrum a second copy TRL loads), two traced steps of `trainer.train()`."""
    import argparse as ap

    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOTrainer

    from launcher import train as job
    from launcher.precision import master_weights

    plan = tunewise_plan(p, ckpt)
    model = job.load_model(plan, cuda=False, precision=plan.precision)
    if p.method == "spectrum":
        job.freeze_for_spectrum(model, plan.spectrum.unfrozen_parameters)
    master_weights(model, plan, plan.precision)
    peft_config = job.lora_config(plan)
    if p.stage == "sft+dpo":  # as train_stage does after SFT: continue from the saved adapter
        from peft import get_peft_model

        get_peft_model(
            job.load_model(plan, cuda=False, precision=plan.precision), peft_config
        ).save_pretrained(work / "sft")
        model, peft_config = job.continue_from(model, plan, work / "sft"), None
    text = Dataset.from_dict({"prompt": ["a b"] * 2, "chosen": ["c d"] * 2, "rejected": ["e"] * 2})
    args = ap.Namespace(max_steps=2, save_steps=None)
    config = job.trainer_config(plan, "dpo", work / "out", text, None, args, cuda=False)
    config = replace(config, bf16=True, optim="adamw_torch_fused", report_to=[], save_strategy="no")
    trainer = DPOTrainer(
        model=model,
        ref_model=None,
        args=config,
        train_dataset=text,
        processing_class=AutoTokenizer.from_pretrained(ckpt),
        peft_config=peft_config,
    )
    # Pairs of known lengths (the text above only satisfies the constructor).
    trainer.train_dataset = Dataset.from_dict(preference_rows(p, model.config.vocab_size))
    return trace_training(trainer, trace, cpu_fold, ref=trainer.ref_model)


# ---------------------------------------------------------------------------------------------- prediction

# TRL's fused LM head on a device without Triton folds each logits tile with torch ops
# (trl/kernels/chunked_logprob.py `_backward_tile`) instead of the Triton kernel that works in place.
# At its widest point (`grad += grad_logprobs * (is_target.float() - p)`) these fp32 tile-sized
# tensors are alive besides the tile itself: y, z, log_p, p, grad, the difference and the product
# (7 x 4 bytes), and the bool `is_target`; final-logit soft-capping keeps t = tanh(.) as well.
CPU_FOLD_BYTES = 7 * 4 + 1
CPU_FOLD_SOFTCAP_BYTES = 4


def cpu_head_fold_bytes(m, tokens: int) -> float:
    """CPU-only bytes of the fused head's backward fold (0 on CUDA, where a Triton kernel does it)."""
    per = CPU_FOLD_BYTES + (CPU_FOLD_SOFTCAP_BYTES if m.final_logit_softcapping else 0)
    return per * min(tokens, TRL_HEAD_TOKENS) * min(m.vocab_size, TRL_HEAD_VOCAB)


def memory_config(p: Point, trainable: int | None = None) -> MemoryConfig:
    n_layers = SHAPES[(p.arch, p.size)]["num_hidden_layers"]
    frac = len(spectrum_layers(n_layers)) / n_layers
    return MemoryConfig(
        method=p.method,
        rank=p.rank,
        seq_len=p.seq,
        batch_size=p.bs,
        grad_ckpt=p.ckpt,
        liger=False,
        spectrum_fraction=frac,
        lora_dropout=0.0,
        attn=p.attn,
        stack=p.stack,
        spectrum_trainable_params=trainable if p.method == "spectrum" else None,
        packed_docs=p.docs > 1,
        stage="dpo" if p.dpo else "sft",
        dpo_ref_adapter=p.stage == "sft+dpo",
        # the job: fp32 master weights; the plain loop trains the bf16 weights themselves
        precision="bf16-pure" if p.stack == "plain" and p.method in ("spectrum", "full") else "bf16-mixed",
    )


def predict(p: Point, trainable: int | None = None, cpu_fold: bool = False) -> dict:
    """The estimator's peak allocated (GPU model); with `cpu_fold`, plus the CPU-only head term."""
    m = facts_from_config(shape(p.arch, p.size), name=f"{p.arch}-{p.size}", source="local")
    cfg = memory_config(p, trainable)
    e = estimate(m, cfg)
    parts = step_parts(m, cfg)
    totals = dict(parts.phase_totals)
    if p.stack == "tunewise" and cpu_fold:
        totals["loss"] += cpu_head_fold_bytes(m, p.seq * p.bs * (2 if p.dpo else 1))
    phase = max(totals, key=totals.get)
    return {
        "gpu_model_mib": e.peak_allocated_gib * 1024,
        "gpu_model_phase": e.phase,
        "pred_mib": (parts.resident + totals[phase]) / MiB,
        "pred_phase": phase,
        "gpu_model_exact_mib": sum(parts.at_peak.values()) / MiB,
    }


def trace_point(p: Point, work: Path, explain: bool = False, cpu_fold: bool = False) -> dict:
    import gc

    import torch

    torch.manual_seed(0)
    ckpt = save_checkpoint(p, work / "ckpt")
    trace = StepTrace(explain=explain)
    autocast = None
    if p.stack == "plain":
        n = run_plain(p, ckpt, trace)
    elif p.dpo:
        n, autocast = run_tunewise_dpo(p, ckpt, trace, work / p.label().replace(" ", "_"), cpu_fold)
    else:
        n, autocast = run_tunewise(p, ckpt, trace, work / p.label().replace(" ", "_"), cpu_fold)
    gc.collect()
    n_layers = SHAPES[(p.arch, p.size)]["num_hidden_layers"]
    row = {
        **p.__dict__,
        "attn": p.attn,
        "trainable": n,
        "autocast": autocast,
        "traced_mib": trace.peak / MiB,
        "start_mib": trace.start / MiB,
        "traced_phase_raw": trace.peak_phase,
        "traced_step": trace.peak_step,
        "traced_phase": estimator_phase(trace.peak_phase, n_layers),
        "phase_peaks_mib": {k: round(v / MiB, 2) for k, v in trace.phase_peaks.items()},
    }
    row.update(predict(p, n, cpu_fold))
    if p.dpo:  # the reference forward's own moment, also when it is not the step's peak
        m = facts_from_config(shape(p.arch, p.size), name=f"{p.arch}-{p.size}", source="local")
        parts = step_parts(m, memory_config(p, n))
        row["ref_pred_mib"] = (parts.resident + parts.phase_totals["reference forward"]) / MiB
        row["ref_traced_mib"] = max(trace.phase_peaks.get(k, 0) for k in ("ref forward", "ref fwd")) / MiB
    row["err"] = row["pred_mib"] / row["traced_mib"] - 1
    row["err_gpu_model"] = row["gpu_model_exact_mib"] / row["traced_mib"] - 1
    if explain:
        row["at_peak"] = [(round(b / MiB, 2), op, ph) for b, op, ph in trace.at_peak]
    return row


def grid() -> list[Point]:
    """Every architecture at two sizes; both stacks; lora / qlora / spectrum / full; 128..1024 tokens,
    micro-batches 1..4, checkpointing on and off; the job's packed rows of one document (full-length
    rows) and of 2-4 documents (a block-diagonal mask per row)."""
    P = Point
    pts = []
    for k, arch in enumerate(("llama", "qwen2", "phi3", "gemma2")):
        long = (
            256 if arch == "gemma2" else 1024
        )  # eager attention: the packed row's scores grow as (seq x bs)^2
        no_ckpt = ("plain", "tunewise")[k % 2]  # alternate the stack of the point without checkpointing
        pts += [
            P(arch, "s", "plain", "lora", 512, 2),
            P(arch, "s", no_ckpt, "lora", 256, 2, ckpt=False),
            P(arch, "m", "tunewise", "lora", long, 4),
            P(arch, "m", "plain", "qlora", 512, 1),
            P(arch, "m", "tunewise", "qlora", 512, 2, docs=2),
            P(arch, "m", "plain", "spectrum", 128, 4),
            P(arch, "m", "tunewise", "spectrum", 256, 2, docs=2),
            P(arch, "s", "plain", "full", 256, 1),
            P(arch, "s", "tunewise", "full", 128, 3, ckpt=False),
        ]
    # A small vocabulary and no checkpointing: the peak moves from the loss into the backward.
    pts += [
        P("llama", "w", "plain", "lora", 512, 2, ckpt=False),
        P("llama", "w", "tunewise", "lora", 512, 2, ckpt=False, docs=4),
        P("llama", "w", "plain", "full", 512, 1, ckpt=False),
    ]
    # The moment the H200's 8B LoRA points peak in: the first layer's backward (recomputed layer + its
    # gradient working set), above the job's fused-head loss.
    pts += [P("llama", "x", "tunewise", "lora", 1024, 4)]
    # Micro-batch 1 with short documents: BFD packs 4 per row, so the row carries a block-diagonal mask
    # (and SDPA repeats k/v) like any packed row of several documents; without checkpointing every layer
    # keeps both.
    pts += [
        P("llama", "m", "tunewise", "lora", 1024, 1, docs=4),
        P("qwen2", "m", "tunewise", "lora", 1024, 1, ckpt=False, docs=4),
        P("llama", "m", "tunewise", "lora", 1024, 1, ckpt=False),
    ]
    pts += dpo_grid()
    return pts


def dpo_grid() -> list[Point]:
    """The job's DPO stage (TRL's DPOTrainer at the plan's micro-batch): Llama and Qwen2, LoRA, QLoRA, Spectrum
    and full (TRL's second, frozen copy as the reference), checkpointing on and off, micro-batches 1, 2 and 4;
    and DPO after SFT, continuing a saved adapter (TRL's frozen "ref" copy of it as the reference)."""
    P = Point
    return [
        P("llama", "m", "tunewise", "lora", 512, 2, stage="dpo"),
        P("llama", "m", "tunewise", "lora", 512, 4, stage="dpo"),
        P("llama", "m", "tunewise", "lora", 512, 1, ckpt=False, stage="dpo"),
        P("llama", "x", "tunewise", "lora", 512, 2, stage="dpo"),
        P("llama", "s", "tunewise", "full", 256, 2, stage="dpo"),
        P("llama", "s", "tunewise", "full", 256, 1, ckpt=False, stage="dpo"),
        P("qwen2", "m", "tunewise", "lora", 512, 2, stage="dpo"),
        P("qwen2", "m", "tunewise", "lora", 256, 4, ckpt=False, stage="dpo"),
        P("qwen2", "m", "tunewise", "qlora", 512, 2, stage="dpo"),
        P("qwen2", "m", "tunewise", "spectrum", 256, 2, stage="dpo"),
        P("qwen2", "s", "tunewise", "full", 256, 2, stage="dpo"),
        P("qwen2", "s", "tunewise", "full", 256, 1, ckpt=False, stage="dpo"),
        P("llama", "m", "tunewise", "lora", 512, 2, stage="sft+dpo"),
        P("qwen2", "m", "tunewise", "qlora", 512, 2, stage="sft+dpo"),
    ]


def render(rows: list[dict], command: str) -> str:
    head = (
        f"{'arch':<9}{'stack':<9}{'method':<9}{'seq':>5}{'bs':>3}{'ckpt':>6}  {'GPU model':>9}{'+CPU':>9}"
        f"{'traced':>9}{'err':>8}{'errGPU':>8}  predicted phase / traced phase"
    )
    lines = [
        f"$ {command}",
        f"# {datetime.date.today().isoformat()}  CPU trace, MiB of live tensor storage "
        "(512-byte blocks); 'GPU model' = estimate().peak_allocated, '+CPU' adds the CPU-only head fold "
        "term; err = (+CPU) / traced - 1; errGPU = GPU model / traced - 1",
        "",
        head,
        "-" * len(head),
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['arch']}-{r['size']:<6}{r['stack']:<9}{r['method']:<9} ERROR {r['error']}")
            continue
        lines.append(
            f"{r['arch'] + '-' + r['size']:<9}{r['stack']:<9}{r['method']:<9}{r['seq']:>5}{r['bs']:>3}"
            f"{r['ckpt']!s:>6}  {r['gpu_model_exact_mib']:>9.1f}{r['pred_mib']:>9.1f}{r['traced_mib']:>9.1f}"
            f"{r['err']:>+8.1%}{r['err_gpu_model']:>+8.1%}  {r['pred_phase']} / {r['traced_phase']}"
            f"{'' if r['pred_phase'] == r['traced_phase'] else ' (' + r['traced_phase_raw'] + ')'}"
            f"{'  [' + str(r['docs']) + ' documents per packed row]' if r.get('docs', 1) > 1 else ''}"
            f"{'  [DPO: ' + str(2 * r['bs']) + ' rows]' if r.get('stage') in ('dpo', 'sft+dpo') else ''}"
            f"{' after SFT (ref adapter)' if r.get('stage') == 'sft+dpo' else ''}"
        )
    ok = [r for r in rows if "error" not in r]
    ref = [r for r in ok if r.get("ref_traced_mib")]
    if ref:
        lines += [
            "",
            "DPO reference forward (the no-grad forward on top of the policy's saved activations), "
            "MiB, whether or not it is the step's peak:",
        ]
        for r in ref:
            lines.append(
                f"{r['arch'] + '-' + r['size']:<9}{r['method']:<9}{r['seq']:>5}{r['bs']:>3}{r['ckpt']!s:>6}  "
                f"predicted {r['ref_pred_mib']:>7.1f}  traced {r['ref_traced_mib']:>7.1f}  "
                f"{r['ref_pred_mib'] / r['ref_traced_mib'] - 1:>+6.1%}"
            )
    lines.append("")
    for stack in ("plain", "tunewise", None):
        g = [abs(r["err"]) for r in ok if stack in (None, r["stack"])]
        if g:
            lines.append(
                f"{stack or 'all':<9}points {len(g):>3}  |error| median {statistics.median(g):.1%}, "
                f"worst {max(g):.1%}; phase agrees {sum(r['pred_phase'] == r['traced_phase'] for r in ok if stack in (None, r['stack']))}/{len(g)}"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="also write the table here")
    ap.add_argument("--json", help="also write the rows as JSON here")
    ap.add_argument("--only", default="", help="trace only points whose label contains this")
    ap.add_argument("--explain", action="store_true", help="list the largest live storages at each peak")
    ap.add_argument(
        "--cpu-fold",
        action="store_true",
        help="also count the fused head's CPU-only fold "
        "temporaries, and add `cpu_head_fold_bytes` to the prediction",
    )
    args = ap.parse_args(argv)
    import os
    import time

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for p in grid():
            if args.only and args.only not in p.label():
                continue
            t = time.perf_counter()
            try:
                r = trace_point(p, Path(tmp), explain=args.explain, cpu_fold=args.cpu_fold)
            except Exception as e:  # one broken point must not lose the others
                r = {**p.__dict__, "error": f"{type(e).__name__}: {str(e)[:200]}"}
            r["seconds"] = round(time.perf_counter() - t, 1)
            rows.append(r)
            print(
                json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}),
                flush=True,
            )
    command = (
        "python bench/memory_trace.py"
        + "".join(
            f" --{k} {shlex.quote(v)}"
            for k, v in (("out", args.out), ("json", args.json), ("only", args.only))
            if v
        )
        + (" --cpu-fold" if args.cpu_fold else "")
    )
    text = render(rows, command)
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
