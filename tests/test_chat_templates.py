"""Every chat template trains with assistant-only loss: a real ChatML template without `{% generation %}`
markers (SmolLM2-135M-Instruct, tests/realmodel.py), where TRL alone raises in `SFTTrainer.__init__`."""

from __future__ import annotations

import argparse
import json

import pytest
import realmodel
from launchkit import make_run

from launcher import chatdata, train

CONVERSATIONS = [
    [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "It is 4."},
        {"role": "user", "content": "And 3 + 3?"},
        {"role": "assistant", "content": "That makes 6."},
    ],
    [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Bonjour !"},
    ],
    [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another?"},
        {"role": "assistant", "content": "Green, or red."},
        {"role": "user", "content": "Thanks"},
        {"role": "assistant", "content": "You're welcome!"},
    ],
] * 4


@pytest.fixture(scope="module")
def smollm2():
    try:
        return realmodel.smollm2_dir()
    except realmodel.Unavailable as e:
        pytest.skip(str(e))


def test_the_real_chatml_template_is_one_trl_cannot_mask(smollm2):
    from transformers import AutoTokenizer
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    tok = AutoTokenizer.from_pretrained(smollm2)
    assert "<|im_start|>" in tok.chat_template and not has_generation_markers(tok.chat_template)
    with pytest.raises(ValueError, match="not training-compatible"):
        get_training_chat_template(tok)
    assert chatdata.needs_turn_rows(tok)


def test_exactly_the_assistant_turns_and_their_end_token_are_trained(smollm2, tmp_path):
    """Token by token, through the job's data preparation and its SFTConfig and TRL's own tokenisation."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    from launcher.smoke import build_stand_in

    tok = AutoTokenizer.from_pretrained(smollm2)
    build_stand_in(str(smollm2), tmp_path / "m", max_length=256)  # the real tokenizer on a tiny Llama
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    ds = Dataset.from_list([{"messages": c} for c in CONVERSATIONS])
    train_ds, _, note = chatdata.prepare(tok, ds, None)
    assert "one per assistant turn" in note
    assert len(train_ds) == sum(sum(m["role"] == "assistant" for m in c) for c in CONVERSATIONS)
    rd = make_run(tmp_path, tmp_path / "m", "full", packing=False, max_length=256)
    from advisor.plan import TrainingPlan

    plan = TrainingPlan.load(rd / "plan.yaml")
    config = train.trainer_config(
        plan,
        "sft",
        tmp_path / "out",
        train_ds,
        None,
        argparse.Namespace(max_steps=1, save_steps=None),
        cuda=False,
    )
    assert config.completion_only_loss and not config.assistant_only_loss
    trainer = SFTTrainer(model=model, args=config, train_dataset=train_ds, processing_class=tok)
    end = "<|im_end|>"
    expected = [m["content"] + end + "\n" for c in CONVERSATIONS for m in c if m["role"] == "assistant"]
    trained_texts = []
    for row in trainer.train_dataset:
        ids = row["input_ids"]
        mask = [int(label != -100) for label in row["labels"]]  # TRL folds the completion mask into labels
        trained = [t for t, m in zip(ids, mask, strict=True) if m]
        assert trained == [label for label in row["labels"] if label != -100]
        # one contiguous run at the end of the row: the assistant turn, its end token and the template's newline
        first = mask.index(1)
        assert all(mask[first:]) and not any(mask[:first])
        trained_texts.append(tok.decode(trained))
        # nothing of the prompt (system, user, earlier assistant turns, the role header) is trained
        assert tok.decode(ids[:first]).endswith("<|im_start|>assistant\n")
        assert tok.convert_tokens_to_ids(end) in trained
    assert trained_texts == expected


def test_the_real_model_trains_on_conversations_through_the_job(smollm2, tmp_path):
    rows = [json.dumps({"messages": c}) for c in CONVERSATIONS]
    rd = make_run(
        tmp_path, smollm2, "lora", rows=rows, max_steps=2, eval_steps=2, save_steps=2, max_length=128
    )
    assert train.main([str(rd)]) == 0  # TRL alone: ValueError "chat template is not training-compatible"
    s = json.loads((rd / "summary.json").read_text())
    assert s["status"] == "completed" and s["steps"] == 2
    # the saved tokenizer keeps the model's own template for inference
    assert "{% generation %}" not in (rd / "adapter" / "chat_template.jinja").read_text()


def test_recommend_says_before_launch_how_the_template_is_handled(smollm2, tmp_path):
    from advisor.answers import parse_answers
    from advisor.planning import chat_template_markers
    from advisor.recommend import recommend

    data = tmp_path / "chat.jsonl"
    rows = [
        [
            {"role": "user", "content": f"What is {i} + {i}?"},
            {"role": "assistant", "content": f"It is {2 * i}."},
        ]
        for i in range(1500)
    ]
    data.write_text("\n".join(json.dumps({"messages": c}) for c in rows) + "\n")
    assert chat_template_markers(str(smollm2)) is False
    rec = recommend(
        parse_answers(
            {
                "task": "chat",
                "goals": ["tone-style"],
                "clear_task": True,
                "tried_prompting": True,
                "dataset": str(data),
                "model": str(smollm2),
                "method": "lora",
                "gpus": [{"name": "NVIDIA H100", "memory_gib": 80}],
            }
        ),
        detect_gpus=False,
    )
    why = rec.plan.reasons["completion_only_loss"]
    assert (
        rec.plan.completion_only_loss and "no {% generation %} markers" in why and "prompt-completion" in why
    )
