"""Model shapes for the benchmarks, from tunewise's offline catalog (rules/models.yaml): one source
for the Llama-3.1-8B / Llama-3.2-3B / Llama-3.2-1B shapes that every benchmark builds with random
weights. Imports only PyYAML (through advisor.models), so it runs on the bare device image too."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CATALOG_NAMES = {"llama-8b": "llama-3.1-8b", "llama-3b": "llama-3.2-3b", "llama-1b": "llama-3.2-1b"}


def llama_shapes(arch: str) -> dict:
    """`LlamaConfig` keyword arguments for a benchmark arch name (llama-8b, llama-3b, llama-1b)."""
    from advisor.models import resolve_model

    m = resolve_model(CATALOG_NAMES[arch])
    return dict(
        vocab_size=m.vocab_size,
        hidden_size=m.hidden_size,
        intermediate_size=m.intermediate_size,
        num_hidden_layers=m.num_layers,
        num_attention_heads=m.num_heads,
        num_key_value_heads=m.num_kv_heads,
        tie_word_embeddings=m.tie_word_embeddings,
    )
