"""Architectures the shape-based parameter count would get wrong are refused, not estimated.

Found in a walkthrough: a Mixtral config.json was counted as a dense 7.2B Mistral (it has 46.7B
parameters), and GPT-NeoX-20B as 27.2B (its MLP is not gated). Configs come from transformers.
"""

from __future__ import annotations

import pytest

from tunewise.cli import main


@pytest.mark.parametrize(
    ("config_cls", "needle"),
    [
        ("MixtralConfig", "mixture-of-experts model (num_local_experts=8"),
        ("Qwen2MoeConfig", "mixture-of-experts model (num_experts="),
        ("GPTNeoXConfig", "'gpt_neox' model: its MLP has two projections"),
        ("PhiConfig", "'phi' model: its MLP has two projections"),
    ],
)
def test_unmodelled_architecture_is_refused_by_estimate(capsys, tmp_path, config_cls, needle):
    import transformers

    getattr(transformers, config_cls)().save_pretrained(tmp_path)
    rc = main(["estimate", "--model", str(tmp_path), "--method", "lora", "--format", "json"])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and "fix:" in err and "Traceback" not in err


def test_dense_gated_family_from_config_still_estimates(capsys, tmp_path):
    import transformers

    transformers.MistralConfig().save_pretrained(tmp_path)
    assert main(["estimate", "--model", str(tmp_path), "--method", "lora", "--format", "json"]) == 0
    assert '"params_total": 7241732096' in capsys.readouterr().out  # as transformers builds it on meta
