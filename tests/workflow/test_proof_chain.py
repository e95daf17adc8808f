"""Every proof of the whole chain holds on an undertrained model (4 epochs: its classes tie, its boxes overlap at
near-equal scores, its scores crowd the thresholds), whatever the training seed, with MXNet's and OpenVINO's oneDNN
capped at AVX2 as on the AVX2-only machines and at this machine's own ISA. (conftest's finished_run is the trained
case: seed 0, 30 epochs, this machine's ISA.)"""

import json

import pytest
from conftest import copy_sample, snakemake, write_config
from test_end_to_end import no_problems


@pytest.mark.parametrize("seed, isa_cap", [(1, "AVX2"), (2, None)])
def test_every_proof_of_an_undertrained_run_holds(tmp_path, seed, isa_cap):
    copy_sample(tmp_path / "voc", 0, 12)
    config = write_config(tmp_path, seed=seed, epochs=[2, 4], parity_threshold=0.3)
    snakemake(tmp_path, "deeplens_artifacts", "--cores", "2", isa_cap=isa_cap)
    results = tmp_path / "results" / config["run"]
    manifest = json.loads((results / "artifacts" / "manifest.json").read_text())
    ir, onnx, litert = manifest["ir"]["check"], manifest["onnx"]["check"], manifest["litert"]["check"]
    for checked in (ir, onnx, litert, manifest["mxnet012"]["check"], *manifest["deeplens"].values()):
        if "proof" in checked:
            assert no_problems(checked["proof"]), checked["proof"]
    assert len(manifest["deeplens"]["rehearsal"]["proof"]["networks"]) == 2
    assert ir["cpu"]["isa_cap"] == isa_cap
    kernels = ir["cpu"]["convolution_kernels"]
    if isa_cap:  # OpenVINO computed as an AVX2-only CPU does
        assert kernels and all("avx2" in kernel and "avx512" not in kernel for kernel in kernels), kernels
    epochs = (results / "logs" / "train_epoch_4.log").read_text()
    assert "epoch 4:" in epochs and "epoch 5" not in epochs
