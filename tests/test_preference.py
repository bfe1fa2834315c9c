"""Preference data as a first-class input: `preference_dataset` beside `dataset`, a stated pair count kept
unless a file counts it, pairs alone plan DPO, and a DPO-only plan shows the DPO step's figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from advisor.answers import load_answers, parse_answers
from advisor.errors import UserError
from advisor.memory import MemoryConfig, estimate
from advisor.recommend import recommend, recommendation_json

BASE = {
    "task": "chat",
    "goals": ["tone-style"],
    "clear_task": True,
    "tried_prompting": True,
    "model": "meta-llama/Llama-3.1-8B",
    "gpus": [{"name": "NVIDIA GeForce RTX 4090", "memory_gib": 24}],
}


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture
def files(tmp_path):
    sft = [
        {
            "messages": [
                {"role": "user", "content": f"How do I reset router {i}?"},
                {"role": "assistant", "content": f"Hold the reset button for {i % 9 + 3} seconds."},
            ]
        }
        for i in range(1200)
    ]
    pref = [
        {
            "prompt": f"Explain bill line {i}.",
            "chosen": f"Line {i} is your plan fee of {i % 50} dollars.",
            "rejected": "No idea.",
        }
        for i in range(300)
    ]
    return _jsonl(tmp_path / "sft.jsonl", sft), _jsonl(tmp_path / "pref.jsonl", pref)


def _rec(**kw):
    return recommend(parse_answers({**BASE, **kw}), detect_gpus=False)


def test_pairs_alone_plan_dpo_from_an_instruction_tuned_checkpoint_with_dpo_figures():
    rec = _rec(preference_pairs=2000)
    d, p = rec.decision, rec.plan
    assert (d.approach, d.stage) == ("fine-tune", "dpo") and "TW302-dpo-only" in d.fired
    assert any("instruction-tuned" in w for w in d.warnings)
    # the plan is what the job runs: the DPO rate and epochs, no SFT-only settings
    assert (p.learning_rate, p.epochs, p.packing, p.completion_only_loss) == (5e-6, 1.0, False, False)
    # the memory figures are the DPO step's at the plan's batch (chosen + rejected rows, reference forward)
    cfg = MemoryConfig(
        method=p.method,
        rank=p.lora.r,
        seq_len=p.max_length,
        batch_size=p.micro_batch_size,
        lora_dropout=p.lora.dropout,
        stage="dpo",
        spectrum_fraction=0.3,
    )
    e = estimate(rec.facts.model, cfg)
    assert rec.decision.candidates[p.method].device_gib == pytest.approx(e.device_gib, abs=0.01)
    assert p.predicted_device_gib == pytest.approx(e.device_gib, abs=0.01)
    sft = estimate(
        rec.facts.model,
        MemoryConfig(
            method=p.method,
            rank=p.lora.r,
            seq_len=p.max_length,
            batch_size=p.micro_batch_size,
            lora_dropout=p.lora.dropout,
        ),
    )
    assert e.device_gib > sft.device_gib  # the figure shown is not the SFT step's
    steps = -(-int(2000 * 0.8) // p.effective_batch)
    assert f"{steps:,} steps per epoch" in p.reasons["eval_steps"]
    assert not any("1,000+" in s for s in d.suggestions)


def test_a_stated_pair_count_survives_a_dataset_without_pairs(files):
    sft, _ = files
    rec = _rec(dataset=sft, preference_pairs=400)
    v = rec.facts.values
    assert (v["preference_pairs"], v["sft_examples"], rec.decision.stage) == (400, 1200, "sft+dpo")
    assert any("preference pairs: 400, stated in the answers" in n for n in rec.facts.notes)
    assert not any("preference pairs" in line for line in rec.decision.would_change)


def test_sft_then_dpo_planned_from_two_real_files(files, tmp_path):
    sft, pref = files
    rec = _rec(dataset=sft, preference_dataset=pref, preference_pairs=9999)
    v, p = rec.facts.values, rec.plan
    assert (v["sft_examples"], v["preference_pairs"], p.stage) == (1200, 300, "sft+dpo")
    assert any(f"300, counted in {pref} (the answers said 9,999)" in n for n in rec.facts.notes)
    assert p.data.source == sft and p.dpo.source == pref and "preference_dataset" in p.reasons["dpo.source"]
    from launcher.rundir import write_recommendation

    run = write_recommendation(rec, tmp_path / "run")
    plan = yaml.safe_load((run / "plan.yaml").read_text())
    lines = [len((run / plan["dpo"][k]).read_text().splitlines()) for k in ("dataset", "validation")]
    assert lines == [240, 60] and plan["data"]["train"] == "data/train.jsonl"
    assert all("chosen" in json.loads(x) for x in (run / plan["dpo"]["dataset"]).read_text().splitlines())


def test_a_preference_file_alone_plans_dpo_on_it(files):
    _, pref = files
    rec = _rec(preference_dataset=pref)
    assert rec.plan.stage == "dpo" and rec.plan.data.source == pref and rec.plan.data.format == "preference"


def test_a_preference_dataset_that_holds_no_pairs_is_an_error_naming_the_key(files):
    sft, _ = files
    with pytest.raises(UserError, match="preference_dataset .* not preference pairs"):
        _rec(preference_dataset=sft)


def test_preference_dataset_is_resolved_against_the_answers_file_and_checked_by_the_cli(files, tmp_path):
    sft, pref = files
    (tmp_path / "a.yaml").write_text(
        yaml.safe_dump({**BASE, "dataset": "sft.jsonl", "preference_dataset": "pref.jsonl"})
    )
    assert load_answers(tmp_path / "a.yaml").preference_dataset == pref
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tunewise",
            "recommend",
            "--answers",
            str(tmp_path / "a.yaml"),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["stage"] == "sft+dpo" and d["plan"]["dpo"]["source"] == pref
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({**BASE, "preference_dataset": "  "}))
    bad = subprocess.run(
        [sys.executable, "-m", "tunewise", "recommend", "--answers", str(tmp_path / "b.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "preference_dataset" in bad.stderr and "Traceback" not in bad.stderr


def test_dpo_only_json_carries_the_dpo_figures(files):
    _, pref = files
    d = recommendation_json(_rec(preference_dataset=pref))
    assert d["stage"] == "dpo" and d["plan"]["learning_rate"] == 5e-6 and d["plan"]["epochs"] == 1.0
    assert d["plan"]["predicted_device_gib"] == d["candidates"][d["method"]]["device_gib"]


def test_sft_then_dpo_from_two_files_trains_both_stages_on_cpu(tmp_path):
    """The real pipeline: recommend --out splits both files, and a smoke launch (a tiny stand-in of the model's
    family, TRL's SFTTrainer then DPOTrainer) trains SFT on the dataset and DPO on the pairs, with DPO
    evaluated on the pairs' own validation split."""
    sft = [
        {
            "messages": [
                {"role": "user", "content": f"How do I reset router {i}?"},
                {"role": "assistant", "content": f"Hold the reset button for {i % 9 + 3} seconds."},
            ]
        }
        for i in range(150)
    ]
    pref = [
        {
            "prompt": f"Explain bill line {i}.",
            "chosen": f"Line {i} is your plan fee of {i % 50} dollars.",
            "rejected": "No idea.",
        }
        for i in range(120)
    ]
    answers = {
        **BASE,
        "dataset": _jsonl(tmp_path / "sft.jsonl", sft),
        "preference_dataset": _jsonl(tmp_path / "pref.jsonl", pref),
    }
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(answers))
    run = tmp_path / "run"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tunewise",
            "recommend",
            "--answers",
            str(tmp_path / "a.yaml"),
            "--out",
            str(run),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "tunewise", "launch", str(run), "--smoke", "--max-steps", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    events = [json.loads(x) for x in (run / "smoke" / "metrics.jsonl").read_text().splitlines()]
    stages = {e.get("stage") for e in events}
    assert {"sft", "dpo"} <= stages
    assert any(e.get("stage") == "dpo" and e.get("eval_loss") is not None for e in events)
    summary = json.loads((run / "smoke" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["stage"] == "dpo"
