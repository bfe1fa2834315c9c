"""The real-model fixture (tests/realmodel.py): a real SmolLM2 folder, and a task it cannot do zero-shot."""

from __future__ import annotations

import datetime

import pytest
import realmodel


@pytest.fixture(scope="module")
def loaded(smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    tok.padding_side = "left"
    return tok, AutoModelForCausalLM.from_pretrained(smollm2_dir).eval()


def greedy(tok, model, questions: list[str], max_new_tokens: int = 12) -> list[str]:
    import torch

    prompts = [
        tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in questions
    ]
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
    return [tok.decode(o[enc.input_ids.shape[1] :], skip_special_tokens=True).strip() for o in out]


def test_fixture_is_a_plain_real_instruct_model(smollm2_dir, loaded):
    tok, model = loaded
    assert (smollm2_dir / "model.safetensors").is_file() and not (
        smollm2_dir / "SmolLM2-135M-Instruct.Q4_1.gguf"
    ).exists()
    assert model.config.model_type == "llama" and getattr(model.config, "quantization_config", None) is None
    assert 130e6 < model.num_parameters() < 140e6
    # The chat template came along and closes turns with the EOS token generation stops on.
    assert tok.chat_template
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>assistant\n") and tok.eos_token == "<|im_end|>"
    assert model.generation_config.eos_token_id == tok.eos_token_id
    # Real weights (random ones would not know this), and they survived the dequantised copy.
    assert "Paris" in greedy(tok, model, ["What is the capital of France?"])[0]


def test_second_call_reuses_the_cache(smollm2_dir):
    assert realmodel.smollm2_dir() == smollm2_dir


def test_base_model_cannot_do_the_date_task_zero_shot(loaded):
    tok, model = loaded
    rows = realmodel.date_task(16, seed=7)
    answers = greedy(tok, model, [r["messages"][0]["content"] for r in rows])
    right = sum(a == r["messages"][1]["content"] for a, r in zip(answers, rows, strict=True))
    assert right <= 1, answers


def test_date_task_is_deterministic_valid_and_distinct():
    a, b = realmodel.date_task(200, seed=3), realmodel.date_task(200, seed=3)
    assert a == b and a != realmodel.date_task(200, seed=4)
    isos = [r["messages"][1]["content"] for r in a]
    assert len(set(isos)) == 200
    for iso in isos:
        datetime.date.fromisoformat(iso)  # a real calendar date
    assert realmodel.date_in_words(1992, 3, 14) == "the fourteenth of March, nineteen ninety-two"
    assert (
        realmodel.date_in_words(2005, 2, 22, style=1) == "February the twenty-second, two thousand and five"
    )
    assert realmodel.date_in_words(1909, 12, 31) == "the thirty-first of December, nineteen oh-nine"


def test_a_killed_build_leaves_no_half_folder(tmp_path, monkeypatch):
    try:
        realmodel.gguf_path()
    except realmodel.Unavailable as e:
        pytest.skip(str(e))
    monkeypatch.setenv("TUNEWISE_TEST_CACHE", str(tmp_path))

    def dies_half_way(gguf, out):
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(realmodel, "_build", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        realmodel.smollm2_dir()
    assert [p.name for p in tmp_path.iterdir()] == [".build.lock"]
