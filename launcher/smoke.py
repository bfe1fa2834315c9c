"""`--smoke`: the same plan, on CPU, with a tiny stand-in model of the same architecture family.

Proves the data, chat template and pipeline (quantisation, LoRA, Spectrum freezing, DPO, checkpoints,
several processes) in a minute or two before GPU money is spent. The stand-in is built from the real
model's config (local directory or HF cache; else the advisor's model facts; else Llama) with tiny
dimensions, and random weights: its loss says nothing about the real model.
Everything goes into a new RUN_DIR/smoke directory (smoke-2, ... on later runs); the run itself is
never touched.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from advisor.bundled import demo_tokenizer_dir
from advisor.plan import TrainingPlan
from launcher.rundir import atomic_write, new_run_dir

SMOKE_STEPS = 30
TINY = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
)


def load_tokenizer(model: str, *, trust_remote_code: bool = False):
    """The real model's tokenizer when it is available offline, else the bundled demo tokenizer.
    Returns (tokenizer, "real" | "bundled")."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
        if tok.chat_template:
            return tok, "real"
    except Exception:  # not local, not cached: offline is the normal case here
        pass
    return AutoTokenizer.from_pretrained(str(demo_tokenizer_dir())), "bundled"


def real_config(model: str, *, trust_remote_code: bool = False):
    """The real model's config (local dir or HF cache), else one built from its family; with a note."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code), "config.json"
    except Exception:
        pass
    family = None
    try:
        from advisor.models import resolve_model

        family = resolve_model(model).family
    except Exception:  # unknown to the catalog (or the catalog is not there): fall back below
        family = None
    try:
        return AutoConfig.for_model(family), f"family {family}"
    except Exception:
        return AutoConfig.for_model("llama"), "llama (the model's family is unknown offline)"


def tiny_config(cfg, vocab_size: int, max_length: int):
    """Shrink a config to a few hundred thousand parameters, keeping its architecture and GQA layout."""
    cfg = copy.deepcopy(cfg)
    for key, value in TINY.items():
        if hasattr(cfg, key) or key != "head_dim":
            setattr(cfg, key, value)
    if getattr(cfg, "num_key_value_heads", None) and getattr(cfg, "num_attention_heads", None):
        cfg.num_key_value_heads = min(cfg.num_key_value_heads, cfg.num_attention_heads)
    layer_types = getattr(cfg, "layer_types", None)
    if isinstance(layer_types, list | tuple) and layer_types:  # per-layer kinds (Gemma-2: sliding, full, ...)
        cfg.layer_types = [layer_types[i % len(layer_types)] for i in range(cfg.num_hidden_layers)]
    cfg.vocab_size = vocab_size
    cfg.max_position_embeddings = max(getattr(cfg, "max_position_embeddings", 0) or 0, max_length)
    for attr in ("quantization_config", "auto_map"):
        if hasattr(cfg, attr):
            delattr(cfg, attr)
    if getattr(cfg, "sliding_window", None):
        cfg.sliding_window = min(cfg.sliding_window, max_length)
    return cfg


def build_stand_in(
    model: str, out_dir: str | Path, *, max_length: int = 256, seed: int = 0, trust_remote_code: bool = False
) -> dict:
    """Save a tiny random model of `model`'s family, with its (or the bundled) tokenizer, to `out_dir`."""
    import torch
    from transformers import AutoModelForCausalLM

    tok, tok_source = load_tokenizer(model, trust_remote_code=trust_remote_code)
    cfg, cfg_source = real_config(model, trust_remote_code=trust_remote_code)
    cfg = tiny_config(cfg, len(tok), max_length)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(cfg, name, getattr(tok, name))
    torch.manual_seed(seed)
    stand_in = AutoModelForCausalLM.from_config(cfg)
    stand_in.save_pretrained(str(out_dir))
    tok.save_pretrained(str(out_dir))
    return {
        "family": cfg.model_type,
        "config_from": cfg_source,
        "tokenizer": tok_source,
        "params": sum(p.numel() for p in stand_in.parameters()),
    }


def smoke_plan(
    plan: TrainingPlan, run_dir: Path, smoke_dir: Path, model_dir: Path, max_steps: int | None
) -> TrainingPlan:
    """The plan rewritten for CPU: tiny model, short sequences, a few dozen steps, paths into the run."""
    p = copy.deepcopy(plan)
    p.model = str(model_dir)

    def moved(rel: str | None) -> str | None:
        if not rel:
            return rel
        src = Path(rel) if Path(rel).is_absolute() else run_dir / rel
        return os.path.relpath(src.resolve(), smoke_dir.resolve())

    if not p.data.train and p.data.source:
        p.data.train = str(Path(p.data.source).expanduser().resolve())
    p.data.train, p.data.validation = moved(p.data.train), moved(p.data.validation)
    if p.dpo and p.dpo.dataset:
        p.dpo.dataset = moved(p.dpo.dataset)
    if p.dpo and p.dpo.validation:
        p.dpo.validation = moved(p.dpo.validation)
    p.trust_remote_code = False  # the stand-in is a stock transformers architecture
    p.max_length = min(p.max_length, 256)
    p.micro_batch_size, p.grad_accum = min(p.micro_batch_size, 2), 1
    p.max_steps = max_steps or SMOKE_STEPS
    p.epochs = 1.0
    p.eval_steps = p.save_steps = max(1, p.max_steps // 3)
    p.logging_steps = 1
    p.bf16, p.liger, p.optimizer = False, False, "adamw_torch"
    if p.attn_implementation == "flash_attention_2":  # a GPU kernel: on CPU the family's own choice
        from advisor.attention import choose_attention

        p.attn_implementation = choose_attention(p.model_family).implementation
    if p.quantization is not None:
        p.quantization.compute_dtype = "float32"  # bitsandbytes 4-bit on CPU: fp32 compute is the fast path
    p.predicted_peak_gib = p.predicted_device_gib = None
    p.distributed = None
    if p.evaluation is not None:
        p.evaluation.enabled = False  # a random stand-in's answers measure nothing
    p.reasons = {
        **p.reasons,
        "smoke": "CPU smoke run on a tiny random stand-in model; losses are meaningless",
    }
    if p.method == "spectrum" and p.spectrum is not None:
        p.spectrum.unfrozen_parameters = _stand_in_selection(p.spectrum.unfrozen_parameters, model_dir)
    return p


def _stand_in_selection(patterns: list[str], model_dir: Path) -> list[str]:
    """The real scan names the real model's layers (e.g. layer 17); keep the patterns that still match
    the 2-layer stand-in, else its MLP down-projections, the kind of tensor a scan picks."""
    from safetensors import safe_open

    from advisor.spectrum import select_unfrozen

    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        names = list(f.keys())
    kept = [p for p in patterns if select_unfrozen(names, [p], strict=False)]
    return kept or [r"^model.layers.\d+.mlp.down_proj.weight$"]


def prepare(run_dir: str | Path, plan: TrainingPlan, *, max_steps: int | None = None) -> tuple[Path, dict]:
    """Create RUN_DIR/smoke (or a fresh sibling), build the stand-in and the smoke plan. Returns the
    smoke directory and what was built (family, tokenizer source, parameter count)."""
    run_dir = Path(run_dir).resolve()
    smoke_dir = new_run_dir(run_dir / "smoke")
    info = build_stand_in(plan.model, smoke_dir / "stand-in", trust_remote_code=plan.trust_remote_code)
    sp = smoke_plan(plan, run_dir, smoke_dir, smoke_dir / "stand-in", max_steps)
    from launcher.jobfiles import plan_yaml

    atomic_write(smoke_dir / "plan.yaml", plan_yaml(sp))
    return smoke_dir, info
