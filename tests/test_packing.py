"""Packed rows that stay rows (launcher/packing.py): same documents, same targets, same loss and gradients
as TRL's flattened padding-free row, with attention spanning one row."""

from __future__ import annotations

import json

import pytest
import torch
from launchkit import make_run, tiny_base

from launcher import train
from launcher.packing import PackedRowsCollator, keeps_rows

DOCS = ([30, 50, 20], [64, 30], [10, 10, 10, 60])  # three BFD rows of several documents each


def _examples():
    g = torch.Generator().manual_seed(0)
    return [
        {"input_ids": torch.randint(3, 512, (sum(lens),), generator=g).tolist(), "seq_lengths": lens}
        for lens in DOCS
    ]


def _flat(examples):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(examples)


def test_rows_keep_tokens_documents_and_targets():
    ex = _examples()
    rows, flat = PackedRowsCollator(pad_token_id=0)(ex), _flat(ex)
    assert "attention_mask" not in rows  # with a mask, transformers would not look for the documents
    assert rows["input_ids"].shape == (3, 100) and flat["input_ids"].shape == (1, 284)
    real = rows["position_ids"].new_zeros(rows["input_ids"].shape, dtype=torch.bool)
    for r, lens in enumerate(DOCS):
        real[r, : sum(lens)] = True
        # positions restart at every document of the row
        assert rows["position_ids"][r, : sum(lens)].tolist() == [i for n in lens for i in range(n)]
    assert torch.equal(rows["input_ids"][real], flat["input_ids"][0])
    assert torch.equal(rows["labels"][real], flat["labels"][0])  # doc starts are -100 in both
    assert (rows["labels"][~real] == -100).all()  # a row's padding is no target
    assert int((rows["labels"] != -100).sum()) == int((flat["labels"] != -100).sum()) == 284 - 9


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_rows_compute_the_flattened_rows_loss_and_gradients(attn):
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        use_cache=False,
    )
    ex = _examples()
    results = []
    for batch in (_flat(ex), PackedRowsCollator(pad_token_id=0)(ex)):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation=attn)
        loss = model(**{k: batch[k] for k in ("input_ids", "labels", "position_ids")}).loss
        loss.backward()
        results.append((loss.item(), model.model.layers[0].self_attn.k_proj.weight.grad.clone()))
    (flat_loss, flat_grad), (rows_loss, rows_grad) = results
    assert rows_loss == pytest.approx(flat_loss, rel=1e-5)
    torch.testing.assert_close(rows_grad, flat_grad, rtol=1e-4, atol=1e-6)
    # And the documents really were kept apart: letting them attend across a row changes the loss.
    leaky = PackedRowsCollator(pad_token_id=0)(ex)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation=attn)
    crossed = model(input_ids=leaky["input_ids"], labels=leaky["labels"]).loss.item()
    assert abs(crossed - flat_loss) > 1e-3


def test_which_plans_keep_rows():
    from advisor.plan import TrainingPlan

    plan = TrainingPlan(model="m", method="lora", stage="sft")
    assert keeps_rows(plan, "sft") and not keeps_rows(plan, "dpo")  # DPO does not pack
    for change in ({"padding_free": True}, {"packing": False}, {"attn_implementation": "flash_attention_2"}):
        other = TrainingPlan(model="m", method="lora", stage="sft", **change)
        assert not keeps_rows(other, "sft"), change


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("base") / "tiny-llama")


@pytest.mark.slow
def test_job_trains_on_rows_and_matches_the_flattened_job(base, tmp_path, monkeypatch, capsys):
    shapes = []
    call = PackedRowsCollator.__call__

    def recording(self, examples):
        out = call(self, examples)
        shapes.append(tuple(out["input_ids"].shape))
        return out

    monkeypatch.setattr(PackedRowsCollator, "__call__", recording)
    runs = {}
    for name, flat in (("rows", False), ("flat", True)):
        rd = make_run(
            tmp_path / name, base, "lora", max_steps=2, eval_steps=100, save_steps=100, padding_free=flat
        )
        assert train.main([str(rd)]) == 0
        runs[name] = json.loads((rd / "summary.json").read_text())
        if name == "rows":
            assert shapes and all(s[0] == 2 for s in shapes[:2])  # micro-batch 2: two packed rows
            n_rows = len(shapes)
    assert len(shapes) == n_rows  # the flattened job never used the row collator
    out = capsys.readouterr().out
    assert "2 packed rows of up to 128 tokens" in out and "one flattened row (padding_free: True" in out
    a, b = runs["flat"], runs["rows"]
    assert b["loss_first"] == pytest.approx(a["loss_first"], rel=1e-4)
    assert b["loss_last"] == pytest.approx(a["loss_last"], rel=1e-4) and b["loss_last"] != b["loss_first"]
