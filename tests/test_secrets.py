"""No secret from the environment reaches any file of a run, or the terminal: recommend --out, then a smoke launch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo" / "answers.yaml"

# Values shaped like the real ones; long and unique so a hit cannot be a coincidence.
SECRETS = {
    "HF_TOKEN": "hf_PlantedHFtoken7Qz3xW9vK2mL5nB8",
    "HUGGING_FACE_HUB_TOKEN": "hf_PlantedHubToken4Rt6yU1iO0pA",
    "WANDB_API_KEY": "0123456789abcdefPLANTEDwandbKEY0123456789",
    "OPENAI_API_KEY": "sk-proj-PLANTEDopenaiKey5d8f2g1h4j7k",
    "AWS_SECRET_ACCESS_KEY": "PLANTEDawsSecret/9x8c7v6b5n4m3",
}


def _tunewise(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, **SECRETS}
    return subprocess.run(
        [sys.executable, "-m", "tunewise", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=cwd,
    )


def _leaks(root: Path) -> list[str]:
    """Every (file, secret name) pair where a planted value appears, in text or binary files alike."""
    hits = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            blob = p.read_bytes()
            hits += [f"{p.relative_to(root)}: {name}" for name, v in SECRETS.items() if v.encode() in blob]
    return hits


def test_planted_secrets_never_reach_run_files_or_output(tmp_path):
    answers = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    answers["dataset"] = str(DEMO.parent / answers["dataset"])
    answers["gpus"] = [{"name": "NVIDIA GeForce RTX 4090", "memory_gib": 24}]
    (tmp_path / "answers.yaml").write_text(yaml.safe_dump(answers), encoding="utf-8")

    rec = _tunewise(
        "recommend", "--answers", "answers.yaml", "--out", "run", "--format", "markdown", cwd=tmp_path
    )
    assert rec.returncode == 0, rec.stderr
    run = tmp_path / "run"
    assert {"plan.yaml", "launch.sh", "report.md", "report.json"} <= {p.name for p in run.iterdir()}

    smoke = _tunewise("launch", "run", "--smoke", "--max-steps", "2", cwd=tmp_path)
    assert smoke.returncode == 0, smoke.stdout[-3000:] + smoke.stderr[-3000:]
    # The smoke run trained, checkpointed and logged: there is something to search.
    files = {p.name for p in (run / "smoke").rglob("*") if p.is_file()}
    assert {"summary.json", "metrics.jsonl", "train.log", "plan.yaml"} <= files
    assert any(n.endswith(".safetensors") for n in files)

    assert _leaks(tmp_path) == []
    for proc in (rec, smoke):
        assert not [n for n, v in SECRETS.items() if v in proc.stdout + proc.stderr]


def test_the_search_finds_a_planted_value(tmp_path):
    """Control: the file search above does see a secret, in text and inside binary data."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "log.txt").write_text(f"token={SECRETS['HF_TOKEN']}\n")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01" + SECRETS["WANDB_API_KEY"].encode() + b"\xff")
    assert _leaks(tmp_path) == ["a/log.txt: HF_TOKEN", "blob.bin: WANDB_API_KEY"]


def test_offline_jobs_do_not_inherit_tokens(monkeypatch):
    """train.log is the job's raw output, so the job never gets the keys it has no use for offline."""
    import json

    from launcher.launch import job_env

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    probe = [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]
    seen = json.loads(
        subprocess.run(probe, env=job_env(False), capture_output=True, text=True, check=True).stdout
    )
    assert not set(SECRETS) & set(seen) and not [v for v in SECRETS.values() if v in json.dumps(seen)]
    assert seen["HF_HUB_OFFLINE"] == "1" and seen.get("TOKENIZERS_PARALLELISM") == "false"
    # --allow-network keeps HF_TOKEN: a gated model's download needs it.
    assert job_env(True)["HF_TOKEN"] == SECRETS["HF_TOKEN"]


def test_network_jobs_write_train_log_through_a_redacting_pump(tmp_path):
    """--allow-network keeps the tokens, so the job's output reaches train.log only through a redactor.
    A sitecustomize on the job's PYTHONPATH plays a library that prints the token at start-up."""
    from launchkit import make_run, tiny_base

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(  # only in the job: TUNEWISE_ATTEMPT is set by job_env
        "import os, sys\nif os.environ.get('TUNEWISE_ATTEMPT'):\n"
        "    print('library debug: token', os.environ.get('HF_TOKEN'), flush=True)\n"
        "    print('to stderr', os.environ.get('WANDB_API_KEY'), file=sys.stderr, flush=True)\n"
    )
    run = make_run(tmp_path, tiny_base(tmp_path / "base"), max_steps=2, eval_steps=100, save_steps=100)
    env = {**os.environ, **SECRETS, "PYTHONPATH": str(hook)}
    p = subprocess.run(
        [sys.executable, "-m", "tunewise", "launch", str(run), "--cpu", "--allow-network"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    log = (run / "train.log").read_text()
    assert "library debug: token [redacted]" in log and "to stderr [redacted]" in log  # the hook ran
    assert "sft done" in log  # the rest of the output still arrives
    assert _leaks(run) == [] and not [v for v in SECRETS.values() if v in p.stdout + p.stderr]
