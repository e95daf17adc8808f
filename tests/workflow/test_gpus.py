"""The GPU check before training on GPUs, with stand-ins for the driver's nvidia-smi (this machine has no GPU)."""

import os
import subprocess
import sys

import pytest

from conftest import REPO, snakemake
from workflow.orchestrator import envs, gpus, plan

NO_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the "
    "latest NVIDIA driver is installed and running."
)


def fake_nvidia_smi(folder, output, exit_code=0, knows_compute_cap=True):
    """A stand-in for nvidia-smi that prints `output` for any --query-gpu, as the real one with
    --format=csv,noheader; without knows_compute_cap it fails on that field as drivers before 510 do."""
    folder.mkdir(exist_ok=True)
    script = folder / "nvidia-smi"
    refuse = (
        ('case "$1" in *compute_cap*) echo \'Field "compute_cap" is not a valid field to query.\'; exit 2;; esac\n')
        if not knows_compute_cap
        else ""
    )
    script.write_text(f"#!/bin/sh\n{refuse}cat <<'END'\n{output}\nEND\nexit {exit_code}\n")
    script.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}/usr/bin{os.pathsep}/bin"}


def error_of(gpu_ids, environ):
    with pytest.raises(gpus.GpuError) as caught:
        gpus.check(gpu_ids, environ)
    return str(caught.value)


def test_no_driver_no_device_or_too_few_devices_say_what_was_found(tmp_path):
    assert "no nvidia-smi on PATH" in error_of([0], {"PATH": str(tmp_path)})
    failing = fake_nvidia_smi(tmp_path / "a", NO_DRIVER, exit_code=9)
    assert f"nvidia-smi failed (exit 9): {NO_DRIVER}" in error_of([0], failing)
    empty = fake_nvidia_smi(tmp_path / "b", "No devices were found", exit_code=6)
    assert "nvidia-smi finds no GPU device (No devices were found)" in error_of([0], empty)
    two = fake_nvidia_smi(
        tmp_path / "c", "0, NVIDIA A100-SXM4-40GB, 535.104.05, 8.0\n1, NVIDIA A100-SXM4-40GB, 535.104.05, 8.0"
    )
    assert "asks for GPU 2, but 2 GPU(s) are visible; nvidia-smi lists: GPU 0 NVIDIA A100" in error_of([0, 2], two)
    only_second = dict(two, CUDA_VISIBLE_DEVICES="1")
    assert "1 GPU(s) are visible (CUDA_VISIBLE_DEVICES='1')" in error_of([1], only_second)
    assert [row["index"] for row in gpus.check([0], only_second)] == ["1"]
    assert "0 GPU(s) are visible" in error_of([0], dict(two, CUDA_VISIBLE_DEVICES="-1"))
    slurm_job = dict(fake_nvidia_smi(tmp_path / "d", "3, Tesla T4, 535.104.05, 7.5"), CUDA_VISIBLE_DEVICES="0")
    assert gpus.check([0], slurm_job) == [
        {"index": "0", "name": "Tesla T4", "driver_version": "535.104.05", "compute_cap": "7.5"}
    ]


def test_driver_too_old_for_cuda_11(tmp_path):
    old = fake_nvidia_smi(tmp_path, "0, Tesla V100-SXM2-16GB, 440.33.01, 7.0")
    assert "NVIDIA driver 440.33.01 is too old: CUDA 11 needs 450.80.02 or newer" in error_of([0], old)


def test_gpus_without_mxnet_machine_code_are_refused_and_the_others_pass(tmp_path):
    hopper = fake_nvidia_smi(tmp_path / "h", "0, NVIDIA H200, 570.124.06, 9.0")
    message = error_of([0], hopper)
    assert (
        "compute capability 5.0 to 8.9 only" in message
        and "GPU 0 NVIDIA H200 (driver 570.124.06, compute capability 9.0)" in message
    )
    kepler = fake_nvidia_smi(tmp_path / "k", "0, Tesla K80, 470.82.01, 3.7")
    assert "Tesla K80" in error_of([0], kepler)
    for name, capability in [
        ("Tesla M60", "5.2"),
        ("Tesla T4", "7.5"),
        ("NVIDIA A100", "8.0"),
        ("NVIDIA GeForce RTX 4090", "8.9"),
    ]:
        (row,) = gpus.check([0], fake_nvidia_smi(tmp_path / capability, f"0, {name}, 550.54.15, {capability}"))
        assert (row["name"], row["compute_cap"]) == (name, capability)


def test_an_nvidia_smi_without_compute_cap_still_passes(tmp_path):
    old_smi = fake_nvidia_smi(tmp_path, "0, Tesla V100-SXM2-16GB, 470.82.01", knows_compute_cap=False)
    assert gpus.check([0], old_smi) == [
        {"index": "0", "name": "Tesla V100-SXM2-16GB", "driver_version": "470.82.01", "compute_cap": ""}
    ]


def test_exec_checks_the_gpu_before_building_the_environment(tmp_path):
    environ = dict(
        os.environ,
        PATH=f"{tmp_path}{os.pathsep}/usr/bin{os.pathsep}/bin",
        DEEPLENS_SSD_ENVS=str(tmp_path / "venvs"),
        PYTHONPATH=str(REPO),
    )
    fake_nvidia_smi(tmp_path, NO_DRIVER, exit_code=9)
    result = subprocess.run(
        [sys.executable, "-m", "workflow.orchestrator.envs", "exec", "--gpus", "0", "mxnet-cuda", "--", "true"],
        capture_output=True,
        text=True,
        env=environ,
    )
    assert result.returncode == 1
    assert f"ERROR: cannot train on the GPU (gpus: [0]): nvidia-smi failed (exit 9): {NO_DRIVER}" in result.stderr
    assert "Set gpus: [] to train on the CPU." in result.stderr and not (tmp_path / "venvs").exists()


def test_cuda_environment_finds_the_nvidia_wheels_libraries(tmp_path, monkeypatch):
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    for package in ("cudnn", "cublas"):
        (site / "nvidia" / package / "lib").mkdir(parents=True)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/other")
    env = envs.run_environment("mxnet-cuda", active=True)
    assert env["LD_LIBRARY_PATH"].split(os.pathsep) == [
        str(site / "nvidia" / "cublas" / "lib"),
        str(site / "nvidia" / "cudnn" / "lib"),
        "/opt/other",
    ]
    assert plan.env_command("mxnet-cuda", True, [0, 1]).endswith(" exec --active --gpus 0,1 mxnet-cuda --")


def test_training_on_a_machine_without_a_gpu_stops_at_the_check(tiny_run, tmp_path, monkeypatch):
    workdir, config = tiny_run(gpus=[0])
    monkeypatch.setenv("PATH", f"{tmp_path / 'driver'}{os.pathsep}{os.environ['PATH']}")
    fake_nvidia_smi(tmp_path / "driver", "No devices were found", exit_code=6)
    result = snakemake(workdir, f"results/tiny/train/epoch_{config['epochs'][0]}/log.csv", "--cores", "2", check=False)
    log = (workdir / "results" / "tiny" / "logs" / f"train_epoch_{config['epochs'][0]}.log").read_text()
    assert result.returncode != 0
    assert log.startswith(
        "ERROR: cannot train on the GPU (gpus: [0]): nvidia-smi finds no GPU device (No devices "
        "were found). Set gpus: [] to train on the CPU."
    )
    assert "Building environment 'mxnet-cuda'" not in result.stderr + log
