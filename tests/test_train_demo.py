"""The bundled demo (dataset + tokenizer) that `--smoke` and other tests rely on."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo"


def test_demo_rows_are_clean_chat():
    rows = [json.loads(line) for line in (DEMO / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 300
    assert len({json.dumps(r, sort_keys=True) for r in rows}) == len(rows)  # no duplicates
    for r in rows:
        roles = [m["role"] for m in r["messages"]]
        assert roles[-1] == "assistant" and "user" in roles
        assert all(m["content"].strip() for m in r["messages"])


def test_demo_tokenizer_loads_offline_and_masks_assistant_turns():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(DEMO / "tokenizer"))
    assert 1000 <= len(tok) <= 2100
    assert tok.pad_token and tok.eos_token and tok.bos_token and tok.pad_token_id != tok.eos_token_id
    assert "{% generation %}" in tok.chat_template
    row = json.loads((DEMO / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    out = tok.apply_chat_template(
        row["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    mask = out["assistant_masks"]
    assert 0 < sum(mask) < len(mask)
    kept = tok.decode([i for i, m in zip(out["input_ids"], mask, strict=True) if m])
    assert row["messages"][-1]["content"] in kept
    assert row["messages"][-2]["content"] not in kept  # the user's turn carries no loss


def test_make_demo_is_deterministic(tmp_path):
    subprocess.run(
        [sys.executable, str(DEMO / "make_demo.py"), "--out", str(tmp_path)], check=True, capture_output=True
    )
    assert (tmp_path / "train.jsonl").read_bytes() == (DEMO / "train.jsonl").read_bytes()
    assert json.loads((tmp_path / "tokenizer" / "tokenizer.json").read_text()) == json.loads(
        (DEMO / "tokenizer" / "tokenizer.json").read_text()
    )
