"""Model facts: architecture shapes and exact parameter counts.

From a local directory's `config.json`, from the offline catalog `rules/models.yaml`, or (online
only) a hub id's `config.json`. No weights are read here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

from advisor.errors import UserError

# Families whose RMSNorms sit before *and* after attention and MLP (four per layer, not two).
_FOUR_NORM_FAMILIES = {"gemma2", "gemma3", "gemma3_text"}
# `tie_word_embeddings` when config.json leaves it out: these families' configs default to untied;
# transformers' base default (gemma and unknown families) is tied.
_UNTIED_BY_DEFAULT = {"llama", "mistral", "qwen2", "qwen3", "phi3", "mixtral", "olmo", "olmo2", "granite"}
# Families whose MLP is two plain projections (up, down), not the gated three the parameter count,
# the estimator and LoRA's targets assume: counting them as gated overstates GPT-NeoX-20B by 32%.
_UNGATED_MLP_FAMILIES = {
    "gpt_neox",
    "gptj",
    "gpt2",
    "gpt_bigcode",
    "opt",
    "bloom",
    "falcon",
    "phi",
    "starcoder2",
    "mpt",
    "codegen",
}
# config.json keys that give a mixture-of-experts layer's expert count (Mixtral, Qwen-MoE, OLMoE, DeepSeek).
_EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")
# Keys other model families use for the same shape; the first present wins.
_KEY_ALIASES = {
    "vocab_size": ["vocab_size"],
    "hidden_size": ["hidden_size", "n_embd", "d_model"],
    "intermediate_size": ["intermediate_size", "n_inner", "ffn_dim"],
    "num_layers": ["num_hidden_layers", "n_layer", "num_layers"],
    "num_heads": ["num_attention_heads", "n_head", "num_heads"],
}


@dataclass(frozen=True)
class ModelFacts:
    """The shapes the memory estimator and the rules need.

    `family` is the transformers `model_type` (llama, mistral, qwen2, phi3, gemma, gemma2, ...).
    `params_total` is exact (embeddings, norms and biases included; tied embeddings counted once).
    """

    name: str
    family: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tie_word_embeddings: bool
    qkv_bias: bool = False
    fused_qkv: bool = False  # phi3: one qkv_proj and one gate_up_proj
    max_position_embeddings: int | None = None
    params_total: int = 0
    source: str = "catalog"  # catalog | local | hub
    path: str | None = None  # local directory, when there is one
    norms_per_layer: int = 2  # gemma2: pre/post norms around attention and MLP
    o_bias: bool = False  # llama `attention_bias`: o_proj has a bias too
    mlp_bias: bool = False
    extra_params_per_layer: int = 0  # e.g. qwen3's per-head q/k norms
    final_logit_softcapping: float | None = None  # gemma2: tanh on the logits (one more logits copy)
    attn_logit_softcapping: float | None = None  # gemma2: tanh on attention scores (rules out SDPA)
    published_params: int | None = None  # the published total, catalog entries only
    params_source: str | None = None

    @property
    def params_b(self) -> float:
        return self.params_total / 1e9

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def to_dict(self) -> dict:
        d = asdict(self)
        d["params_b"] = round(self.params_b, 3)
        return d


def linear_params_per_layer(m: ModelFacts) -> int:
    """Weights of one decoder layer's linear projections (the matrices LoRA targets and NF4 packs)."""
    h, i = m.hidden_size, m.intermediate_size
    return h * m.q_dim + 2 * h * m.kv_dim + m.q_dim * h + 3 * h * i


def count_params(m: ModelFacts) -> dict[str, int]:
    """Parameter counts by kind, from the shapes alone. Phi-3's fused qkv/gate_up hold the same
    numbers as separate projections, so one formula serves both."""
    h = m.hidden_size
    bias = (m.q_dim + 2 * m.kv_dim) * m.qkv_bias + h * m.o_bias + (2 * m.intermediate_size + h) * m.mlp_bias
    per_layer_small = bias + m.norms_per_layer * h + m.extra_params_per_layer
    counts = {
        "embed": m.vocab_size * h,
        "lm_head": 0 if m.tie_word_embeddings else m.vocab_size * h,
        "linear": m.num_layers * linear_params_per_layer(m),
        "small": m.num_layers * per_layer_small + h,  # biases, norms, the final norm
    }
    counts["total"] = sum(counts.values())
    return counts


def _catalog_path() -> Path:
    here = Path(__file__).resolve().parent.parent / "rules" / "models.yaml"
    if here.is_file():
        return here
    from importlib.resources import files  # installed wheel: rules/ ships as advisor._rules

    return Path(str(files("advisor._rules") / "models.yaml"))


@lru_cache(maxsize=1)
def load_catalog() -> dict[str, ModelFacts]:
    """Every catalog entry under each of its names (lower-cased): key, hub id, aliases."""
    import yaml

    raw = yaml.safe_load(_catalog_path().read_text())
    out: dict[str, ModelFacts] = {}
    for key, e in raw["models"].items():
        facts = ModelFacts(
            name=e["hub_id"],
            family=e["family"],
            vocab_size=e["vocab_size"],
            hidden_size=e["hidden_size"],
            intermediate_size=e["intermediate_size"],
            num_layers=e["num_layers"],
            num_heads=e["num_heads"],
            num_kv_heads=e["num_kv_heads"],
            head_dim=e.get("head_dim", e["hidden_size"] // e["num_heads"]),
            tie_word_embeddings=e["tie_word_embeddings"],
            qkv_bias=e.get("qkv_bias", False),
            fused_qkv=e.get("fused_qkv", False),
            max_position_embeddings=e.get("max_position_embeddings"),
            norms_per_layer=e.get("norms_per_layer", 2),
            final_logit_softcapping=e.get("final_logit_softcapping"),
            attn_logit_softcapping=e.get("attn_logit_softcapping"),
            published_params=e.get("published_params"),
            params_source=e.get("params_source"),
            source="catalog",
        )
        facts = replace(facts, params_total=count_params(facts)["total"])
        for name in [key, e["hub_id"], *e.get("aliases", [])]:
            out[name.lower()] = facts
    return out


def _pick(cfg: dict, field: str) -> int | None:
    for k in _KEY_ALIASES[field]:
        if cfg.get(k) is not None:
            return cfg[k]
    return None


def facts_from_config(cfg: dict, *, name: str, source: str, path: str | None = None) -> ModelFacts:
    """ModelFacts from a parsed config.json; standard keys, best effort for unknown families."""
    if not isinstance(cfg, dict):
        raise UserError(
            f"config.json of {name} is not a JSON object", "point --model at a model's own config.json"
        )
    if isinstance(cfg.get("text_config"), dict):  # multimodal wrappers keep the language model inside
        cfg = {
            **cfg["text_config"],
            "model_type": cfg["text_config"].get("model_type", cfg.get("model_type")),
        }
    family = str(cfg.get("model_type") or "unknown")
    _refuse_unmodelled(cfg, family, name)
    vals = {f: _pick(cfg, f) for f in _KEY_ALIASES}
    missing = [_KEY_ALIASES[f][0] for f, v in vals.items() if v is None]
    if missing:
        raise UserError(
            f"config.json of {name} (model_type {family!r}) lacks {', '.join(missing)}",
            "tunewise needs the decoder's shapes; add these keys or use a catalog model "
            "(`tunewise estimate --model llama-3.1-8b ...`)",
        )
    bad = [f"{k}={v!r}" for k, v in vals.items() if not isinstance(v, int) or isinstance(v, bool) or v <= 0]
    if bad:
        raise UserError(
            f"config.json of {name} has invalid shapes: {', '.join(bad)}",
            "each of these must be a positive integer",
        )
    heads = vals["num_heads"]
    kv = cfg.get("num_key_value_heads") or cfg.get("num_kv_heads") or heads
    head_dim = cfg.get("head_dim") or vals["hidden_size"] // heads
    max_pos = cfg.get("max_position_embeddings")
    derived = {
        "num_key_value_heads": kv,
        "head_dim": head_dim,
        **({"max_position_embeddings": max_pos} if max_pos is not None else {}),
    }
    bad = [
        f"{k}={v!r}" for k, v in derived.items() if not isinstance(v, int) or isinstance(v, bool) or v <= 0
    ]
    if not bad and heads % kv:
        bad.append(f"num_key_value_heads={kv!r} (does not divide num_attention_heads={heads})")
    if bad:
        raise UserError(
            f"config.json of {name} has invalid shapes: {', '.join(bad)}",
            "each of these must be a positive integer",
        )
    if "tie_word_embeddings" in cfg:
        tied = bool(cfg["tie_word_embeddings"])
    else:
        tied = family not in _UNTIED_BY_DEFAULT  # transformers' PretrainedConfig default is True
    extra = 2 * head_dim if family in {"qwen3", "qwen3_moe", "olmo2"} else 0
    facts = ModelFacts(
        name=name,
        family=family,
        vocab_size=vals["vocab_size"],
        hidden_size=vals["hidden_size"],
        intermediate_size=vals["intermediate_size"],
        num_layers=vals["num_layers"],
        num_heads=heads,
        num_kv_heads=int(kv),
        head_dim=int(head_dim),
        tie_word_embeddings=tied,
        qkv_bias=family == "qwen2" or bool(cfg.get("attention_bias", False)),
        o_bias=family != "qwen2" and bool(cfg.get("attention_bias", False)),
        mlp_bias=bool(cfg.get("mlp_bias", False)),
        fused_qkv=family == "phi3",
        max_position_embeddings=cfg.get("max_position_embeddings"),
        norms_per_layer=4 if family in _FOUR_NORM_FAMILIES else 2,
        extra_params_per_layer=extra,
        final_logit_softcapping=cfg.get("final_logit_softcapping"),
        attn_logit_softcapping=cfg.get("attn_logit_softcapping"),
        source=source,
        path=path,
    )
    return replace(facts, params_total=count_params(facts)["total"])


def _refuse_unmodelled(cfg: dict, family: str, name: str) -> None:
    """Architectures the shapes above would count wrongly: an error beats a confident wrong number."""
    supported = "a dense decoder with a gated MLP (llama, mistral, qwen2, qwen3, phi3, gemma, gemma2)"
    experts = next(
        (
            (k, cfg[k])
            for k in _EXPERT_KEYS
            if isinstance(cfg.get(k), int) and not isinstance(cfg[k], bool) and cfg[k] > 1
        ),
        None,
    )
    if experts:
        raise UserError(
            f"{name} is a mixture-of-experts model ({experts[0]}={experts[1]}, model_type "
            f"{family!r}); tunewise counts parameters and memory for dense models only",
            f"use {supported}, or a catalog model (`tunewise estimate --model llama-3.1-8b ...`)",
        )
    if family in _UNGATED_MLP_FAMILIES:
        raise UserError(
            f"{name} is a {family!r} model: its MLP has two projections, not the gated three "
            "tunewise's parameter count, memory estimate and LoRA targets assume",
            f"use {supported}, or a catalog model (`tunewise estimate --model llama-3.1-8b ...`)",
        )


def _read_config(file: Path, name: str) -> dict:
    try:
        return json.loads(file.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {file}: {e}", "check the path and its permissions") from e
    except json.JSONDecodeError as e:
        raise UserError(
            f"{file} is not valid JSON (line {e.lineno}: {e.msg})",
            f"repair or replace the config.json of {name}",
        ) from e
    except (ValueError, RecursionError) as e:  # a number of more than 4,300 digits; nesting past the limit
        raise UserError(
            f"{file} cannot be read ({str(e).splitlines()[0][:100]})",
            f"repair or replace the config.json of {name}",
        ) from None


def resolve_model(spec: str, *, allow_network: bool = False) -> ModelFacts:
    """Model facts for a catalog name, hub id, or local directory. Raises `UserError` when unknown."""
    if not spec or not str(spec).strip():
        raise UserError(
            "no model given", "pass a catalog name (llama-3.1-8b), a hub id, or a local directory"
        )
    spec = str(spec).strip()
    p = Path(spec).expanduser()
    try:
        p.is_dir()
    except OSError as e:  # a name too long for the file system, for one: not a directory, not a model
        raise UserError(
            f"unknown model {spec[:80]!r}...: {e.strerror}",
            "use a catalog name, a hub id, or a local directory containing config.json",
        ) from None
    if p.is_dir():
        cfg_file = p / "config.json"
        if not cfg_file.is_file():
            raise UserError(f"{p} has no config.json", "point at the model directory that holds config.json")
        return facts_from_config(_read_config(cfg_file, spec), name=spec, source="local", path=str(p))
    if p.is_file() and p.name == "config.json":
        return facts_from_config(_read_config(p, spec), name=spec, source="local", path=str(p.parent))
    hit = load_catalog().get(spec.lower())
    if hit:
        return hit
    if "/" not in spec or spec.startswith((".", "/", "~")):
        names = sorted({f.name for f in load_catalog().values()})
        raise UserError(
            f"unknown model {spec!r}: not a directory, not in the catalog",
            "use a local directory containing config.json, or one of: " + ", ".join(names),
        )
    if not allow_network:
        raise UserError(
            f"model {spec!r} is not in the offline catalog and the network is off",
            f"download its config.json (e.g. `huggingface-cli download {spec} config.json "
            "--local-dir DIR`) and pass --model DIR; only config.json is needed",
        )
    return _from_hub(spec)


def _from_hub(repo: str) -> ModelFacts:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:  # pragma: no cover - huggingface_hub ships with transformers
        raise UserError("huggingface_hub is not installed", "pip install huggingface_hub") from e
    try:
        file = hf_hub_download(repo, "config.json")
    except Exception as e:  # noqa: BLE001 - gated, missing, offline: all are the user's to fix
        raise UserError(
            f"cannot fetch config.json of {repo!r}: {type(e).__name__}: {e}",
            "check the hub id (and `huggingface-cli login` for gated models), or pass a "
            "local directory containing config.json",
        ) from e
    return facts_from_config(_read_config(Path(file), repo), name=repo, source="hub")
