import json

import mxnet as mx
import numpy as np
import pytest

from conftest import REPO
from workflow.lib import networks

REFERENCE = REPO.parent / "shared" / "reference" / "resnet50_ssd_voc0712_params.json"
SEED_SYMBOL = REPO.parent / "shared" / "reference" / "seed_project" / "ssd_resnet50_512-symbol.json"
# Ops that both MXNet 0.12 (DeepLens) and the OpenVINO 2024.4 MXNet front end know.
DEPLOY_OPS = {
    "null",
    "Convolution",
    "BatchNorm",
    "Activation",
    "Pooling",
    "Flatten",
    "Concat",
    "Reshape",
    "transpose",
    "elemwise_add",
    "SoftmaxActivation",
    "_contrib_MultiBoxPrior",
    "_contrib_MultiBoxDetection",
}


def shapes(symbol, data_shape):
    args, _, auxs = symbol.infer_shape(data=(1, 3, data_shape, data_shape), label=(1, 3, 6))
    arg_shapes = {
        name: list(shape) for name, shape in zip(symbol.list_arguments(), args) if name not in ("data", "label")
    }
    return arg_shapes, {name: list(shape) for name, shape in zip(symbol.list_auxiliary_states(), auxs)}


@pytest.mark.parametrize("data_shape", [300, 512])
def test_resnet50_matches_public_voc_model(data_shape):
    reference = json.load(open(REFERENCE))[f"resnet50_{data_shape}"]
    args, auxs = shapes(networks.build_training_symbol("resnet50", 20, data_shape), data_shape)
    assert args == reference["args"]
    assert auxs == reference["aux"]
    assert networks.ssd_sizes(6) == [tuple(size) for size in reference["sizes"]]


def test_resnet50_matches_seed_project_two_class_symbol():
    seed = mx.sym.load(str(SEED_SYMBOL))
    assert shapes(networks.build_training_symbol("resnet50", 2, 512), 512) == shapes(seed, 512)


def test_resnet50_has_6132_anchors_at_512():
    anchors = networks.anchor_boxes("resnet50", 512)
    assert anchors.shape == (6132, 4)
    symbol = networks.build_training_symbol("resnet50", 2, 512).get_internals()["multibox_anchors_output"]
    _, (shape,), _ = symbol.infer_shape(data=(1, 3, 512, 512))
    assert shape == (1, 6132, 4)


@pytest.mark.parametrize("network", networks.NETWORKS)
def test_building_twice_gives_the_same_graph(network):
    first = networks.build_training_symbol(network, 3, 300)
    second = networks.build_training_symbol(network, 3, 300)
    assert first.tojson() == second.tojson()
    assert (
        networks.build_deploy_symbol(network, 3, 300).tojson() == networks.build_deploy_symbol(network, 3, 300).tojson()
    )


@pytest.mark.parametrize(
    "network,data_shape", [("tiny", 64), ("lite", 192), ("efficientnet_lite0", 256), ("resnet50", 512)]
)
def test_deploy_graph_fits_training_checkpoints_and_old_runtimes(network, data_shape):
    training = networks.build_training_symbol(network, 2, data_shape)
    deploy = networks.build_deploy_symbol(network, 2, data_shape)
    assert set(deploy.list_arguments()) <= set(training.list_arguments())
    assert deploy.list_auxiliary_states() == training.list_auxiliary_states()
    _, (output,), _ = deploy.infer_shape(data=(2, 3, data_shape, data_shape))
    assert output == (2, len(networks.anchor_boxes(network, data_shape)), 6)
    nodes = json.loads(deploy.tojson())["nodes"]
    assert {node["op"] for node in nodes} <= DEPLOY_OPS
    assert {node["attrs"]["act_type"] for node in nodes if node["op"] == "Activation"} == {"relu"}
    assert [node["attrs"]["mode"] for node in nodes if node["op"] == "SoftmaxActivation"] == ["channel"]


def test_deploy_detections_are_rows_of_class_score_box():
    deploy = networks.build_deploy_symbol("tiny", 2, 64, threshold=0.0)
    module = mx.mod.Module(deploy, data_names=["data"], label_names=None)
    module.bind(data_shapes=[("data", (1, 3, 64, 64))], for_training=False)
    mx.random.seed(0)
    module.init_params(mx.init.Xavier())
    module.forward(mx.io.DataBatch([mx.nd.random.normal(shape=(1, 3, 64, 64))]), is_train=False)
    rows = module.get_outputs()[0].asnumpy()[0]
    kept = rows[rows[:, 0] >= 0]
    assert len(kept) > 0 and set(np.unique(kept[:, 0])) <= {0, 1}
    assert np.all((kept[:, 1] >= 0) & (kept[:, 1] <= 1))
    assert np.all((kept[:, 2:] >= 0) & (kept[:, 2:] <= 1))


def test_anchors_are_normalised_boxes():
    anchors = networks.anchor_boxes("lite", 192)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    assert np.all((centres > 0) & (centres < 1))
    assert np.all(anchors[:, 2:] > anchors[:, :2])


def test_unknown_network_and_too_small_input_are_refused():
    with pytest.raises(ValueError, match="unknown network"):
        networks.build_training_symbol("vgg16", 2, 300)
    with pytest.raises(ValueError, match="too small"):
        networks.build_deploy_symbol("resnet50", 2, 128)


def test_input_contract():
    assert networks.MEAN_RGB == (123, 117, 104)
    for network in networks.NETWORKS:
        assert networks.build_training_symbol(network, 2, 300).list_arguments()[:2] == ["data", "bn_data_gamma"]
