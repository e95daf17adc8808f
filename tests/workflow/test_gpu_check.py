"""benchmarks/gpu_check.py on a machine without a GPU: what it says, the configs it writes, the summary it prints."""

import importlib.util
import json
import os
import subprocess
import sys

from conftest import REPO, snakemake
from test_gpus import NO_DRIVER, fake_nvidia_smi

SCRIPT = REPO / "benchmarks" / "gpu_check.py"
spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


def test_without_a_usable_gpu_it_says_so_and_builds_nothing(tmp_path):
    environ = dict(os.environ, **fake_nvidia_smi(tmp_path / "driver", NO_DRIVER, exit_code=9))
    work = tmp_path / "work"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--work", str(work)], capture_output=True, text=True, env=environ
    )
    assert result.returncode == gpu_check.NO_GPU == 2
    assert (
        f"ERROR: no NVIDIA GPU usable here: nvidia-smi failed (exit 9): {NO_DRIVER}. Nothing was built."
        in result.stdout
    )
    assert sorted(path.name for path in work.iterdir()) == ["cpu.json", "gpu.json", "summary.json", "summary.txt"]
    assert json.loads((work / "summary.json").read_text())["seconds"] == {}


def test_a_gpu_mxnet_cannot_run_on_is_reported_and_the_check_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path / "h", "0, NVIDIA H200, 580.159.03, 9.0")["PATH"])
    summary = {}
    assert gpu_check.check_gpu(summary) is None
    assert summary["gpus"][0]["name"] == "NVIDIA H200" and "not for GPU 0 NVIDIA H200" in summary["workflow_check"]
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path / "n", "No devices were found", exit_code=6)["PATH"])
    assert gpu_check.check_gpu({}) == "nvidia-smi finds no GPU device (No devices were found)"


def test_the_two_configs_differ_only_in_gpus_and_plan_the_training_stops(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--work",
            str(tmp_path),
            "--write-configs-only",
            "--epochs",
            "2",
            "3",
            "--lr-steps",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    gpu, cpu = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("gpu", "cpu"))
    assert (gpu.pop("gpus"), cpu.pop("gpus"), gpu.pop("run"), cpu.pop("run")) == ([0], [], "gpu", "cpu")
    assert (
        gpu
        == cpu
        == {
            "dataset": str(REPO / "data" / "sample"),
            "network": "lite",
            "pretrained": None,
            "data_shape": 192,
            "batch_size": 8,
            "epochs": [2, 3],
            "lr_steps": [],
        }
    )
    for name, runs_in in [
        ("gpu", "workflow.orchestrator.envs exec --gpus 0 mxnet-cuda --"),
        ("cpu", "workflow.orchestrator.envs exec mxnet --"),
    ]:
        (tmp_path / "config.yaml").write_text((tmp_path / f"{name}.json").read_text())
        plan = snakemake(tmp_path, "evaluate", "--dry-run", "--printshellcmds").stdout
        train_commands = [line for line in plan.splitlines() if "python -m workflow.train" in line]
        assert len(train_commands) == 2 and all(runs_in in line for line in train_commands), name
        assert all(f"results/{name}/train/epoch_{end}" in plan for end in (2, 3))


def test_summary_of_a_finished_run(finished_run, tmp_path):
    _, workdir, config = finished_run
    run = workdir / "results" / "tiny"
    figures = gpu_check.training_figures(run, config["epochs"][-1])
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    assert figures["epochs"] == config["epochs"][-1] and figures["val_map_voc07"] == metrics["map_voc07"]
    assert 0 < figures["samples_per_s"] and 0 < figures["train_s"]
    options = gpu_check.parse_args(["--work", str(tmp_path), "--cores", "2"])
    slower = dict(
        figures,
        samples_per_s=figures["samples_per_s"] / 4,
        val_map_voc07=figures["val_map_voc07"] - 0.01,
        workflow_s=1.0,
    )
    gpu_check.report(
        {"cpu": "test CPU", "seconds": {}, "runs": {"gpu": dict(figures, workflow_s=1.0), "cpu": slower}}, options
    )
    text = (tmp_path / "summary.txt").read_text()
    assert "speed-up GPU/CPU: 4.0x, val mAP difference GPU-CPU: +0.0100" in text
    assert f"GPU training: {figures['samples_per_s']} samples/s (median of {config['epochs'][-1]} epochs" in text
