"""Run directories: never overwritten, files written atomically, commands quoted, no secrets on disk."""

import os
import subprocess
import sys
import types

import pytest
import yaml

from advisor.errors import UserError
from advisor.plan import DataSpec, LoraSpec, QuantSpec, SpectrumSpec, TrainingPlan
from launcher import jobfiles
from launcher.rundir import atomic_write, new_run_dir, write_recommendation, write_run_files


def _plan(method="lora", n_gpus=1, **kw):
    return TrainingPlan(
        model="meta-llama/Llama-3.1-8B",
        method=method,
        stage="sft",
        n_gpus=n_gpus,
        lora=LoraSpec() if method in ("lora", "qlora") else None,
        quantization=QuantSpec() if method == "qlora" else None,
        spectrum=SpectrumSpec(unfrozen_parameters=["^lm_head.weight$"]) if method == "spectrum" else None,
        **kw,
    )


def test_existing_directory_is_never_touched(tmp_path):
    first = new_run_dir(tmp_path / "run")
    (tmp_path / "empty").mkdir()
    assert first == tmp_path / "run"
    (first / "keep.txt").write_text("mine")
    assert new_run_dir(tmp_path / "run") == tmp_path / "run-2"
    assert new_run_dir(tmp_path / "run") == tmp_path / "run-3"
    assert new_run_dir(tmp_path / "empty") == tmp_path / "empty-2"  # even an empty one
    assert (first / "keep.txt").read_text() == "mine" and os.listdir(tmp_path / "empty") == []


def test_run_files_single_gpu(tmp_path):
    rd = tmp_path / "my run"  # a space: launch.sh must still work
    rd.mkdir()
    write_run_files(rd, _plan(), {"report.md": "# why\n"})
    names = sorted(p.name for p in rd.iterdir())
    assert names == ["launch.sh", "plan.yaml", "report.md", "slurm.sbatch"]
    assert TrainingPlan.load(rd / "plan.yaml") == _plan()
    assert os.access(rd / "launch.sh", os.X_OK)
    for script in ("launch.sh", "slurm.sbatch"):
        subprocess.run(["bash", "-n", str(rd / script)], check=True)
    assert not list(rd.glob(".*tmp"))  # no temporary files left behind


@pytest.mark.parametrize(
    "method,mode", [("lora", "MULTI_GPU"), ("qlora", "FSDP"), ("spectrum", "FSDP"), ("full", "FSDP")]
)
def test_accelerate_config_for_several_gpus(tmp_path, method, mode):
    write_run_files(tmp_path, _plan(method, n_gpus=4), {})
    cfg = yaml.safe_load((tmp_path / "accelerate.yaml").read_text())
    assert cfg["distributed_type"] == mode and cfg["num_processes"] == 4
    if mode == "FSDP":
        assert cfg["fsdp_config"]["fsdp_use_orig_params"] is (method in ("spectrum", "full"))
    sbatch = (tmp_path / "slurm.sbatch").read_text()
    assert "--gpus-per-node=4" in sbatch and "accelerate launch --config_file accelerate.yaml" in sbatch
    cmd = jobfiles.train_command(tmp_path, _plan(method, n_gpus=4))
    assert cmd[1:5] == ["-P", "-m", "accelerate.commands.launch", "--config_file"]


def test_zero3_when_the_plan_asks(tmp_path):
    write_run_files(tmp_path, _plan("full", n_gpus=8, distributed="zero3"), {})
    cfg = yaml.safe_load((tmp_path / "accelerate.yaml").read_text())
    assert cfg["distributed_type"] == "DEEPSPEED" and cfg["deepspeed_config"]["zero_stage"] == 3


def test_unwritable_target_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot write"):
        atomic_write(blocker / "plan.yaml", "x")
    with pytest.raises(UserError):
        write_run_files(tmp_path, _plan(), {"../escape.md": "x"})


def test_secrets_never_reach_files(tmp_path, monkeypatch):
    secret = "hf_PLANTEDsecretTOKEN123456"
    monkeypatch.setenv("HF_TOKEN", secret)
    write_run_files(tmp_path, _plan(), {"report.md": f"token was {secret}\n"})
    for p in tmp_path.rglob("*"):
        if p.is_file():
            assert secret not in p.read_text(errors="replace"), p


def test_write_recommendation_splits_data_and_writes_the_reports(tmp_path, monkeypatch):
    # Doubles for the advisor side (helpers A, B, D), so this checks only the launcher's wiring.
    data = tmp_path / "in.jsonl"
    data.write_text('{"text": "a"}\n')

    def write_split(path, out_dir, **kw):
        out_dir.mkdir(parents=True)
        (out_dir / "train.jsonl").write_text(path.read_text())
        (out_dir / "validation.jsonl").write_text(path.read_text())
        return types.SimpleNamespace(
            train=out_dir / "train.jsonl", validation=out_dir / "validation.jsonl", format="text"
        )

    monkeypatch.setitem(sys.modules, "advisor.data", types.SimpleNamespace(write_split=write_split))
    monkeypatch.setitem(
        sys.modules, "advisor.report", types.SimpleNamespace(render=lambda rec, fmt: f"# {fmt}\n")
    )
    monkeypatch.setitem(
        sys.modules,
        "advisor.recommend",
        types.SimpleNamespace(
            recommendation_json=lambda rec: {"approach": "fine-tune"}, spectrum_scan_missing=lambda plan: None
        ),
    )
    plan = _plan(data=DataSpec(source=str(data)))
    (tmp_path / "out").mkdir()
    rd = write_recommendation(types.SimpleNamespace(plan=plan), tmp_path / "out")
    assert rd == tmp_path / "out-2"
    written = TrainingPlan.load(rd / "plan.yaml")
    assert written.data.train == "data/train.jsonl" and written.data.format == "text"
    assert (rd / "report.md").read_text() == "# markdown\n" and (rd / "launch.sh").exists()
    rd2 = write_recommendation(types.SimpleNamespace(plan=None), tmp_path / "out")
    assert sorted(p.name for p in rd2.iterdir()) == ["report.json", "report.md"]
