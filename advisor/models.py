"""Model facts: architecture shapes and exact parameter counts.

From a local directory's `config.json`, from the offline catalog `rules/models.yaml`, or (online
only) a hub id's `config.json`. No weights are read here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


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

    @property
    def params_b(self) -> float:
        return self.params_total / 1e9

    def to_dict(self) -> dict:
        d = asdict(self)
        d["params_b"] = round(self.params_b, 3)
        return d


def resolve_model(spec: str, *, allow_network: bool = False) -> ModelFacts:
    """Model facts for a catalog name, hub id, or local directory. Raises `UserError` when unknown."""
    raise NotImplementedError("filled in by the memory/model work (issue 3)")
