"""The DeepLens graph: raw BGR frames in through the folded preprocessing, identities dropped, only the device's
layers; a seeded tiny SSD on real sample images stands in for a trained model."""

import json
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import pytest

from workflow.deeplens_model import (
    DEEPLENS_LAYERS,
    PREPROCESS,
    check_layers,
    deeplens_graph,
    fold_preprocessing,
    preprocess_params,
    raw_frame_input,
)
from workflow.lib import deploy_graph, proof
from workflow.lib.cli import UserError
from workflow.lib.detector import Network, preprocess
from workflow.lib.networks import MEAN_RGB, VARIANCES, build_deploy_symbol

REPO = Path(__file__).resolve().parents[2]
REFERENCE_DEPLOY = REPO.parent / "shared" / "reference" / "seed_project" / "deploy_ssd_resnet50_512-symbol.json"
SIDE = 64


@pytest.fixture(scope="module")
def tiny():
    """(deploy symbol JSON, arg params, aux params) of a seeded, untrained tiny SSD."""
    symbol = build_deploy_symbol("tiny", 2, SIDE)
    rng = np.random.default_rng(0)
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=(1, 3, SIDE, SIDE))
    args = {
        name: mx.nd.array(rng.normal(0, 1 / np.sqrt(np.prod(shape[1:])), shape))
        for name, shape in zip(symbol.list_arguments(), arg_shapes)
        if name != "data"
    }
    aux = {
        name: mx.nd.array(np.full(shape, 50.0 if "var" in name else 0.0))
        for name, shape in zip(symbol.list_auxiliary_states(), aux_shapes)
    }
    return symbol.tojson(), args, aux


def sample_images(count=3):
    return [cv2.imread(str(p)) for p in sorted((REPO / "data" / "sample" / "JPEGImages").glob("*.jpg"))[:count]]


def network(graph, args, aux):
    """The graph's network (up to MultiBoxDetection) bound for one SIDE input."""
    internals = mx.sym.load_json(json.dumps(graph)).get_internals()
    outputs = [internals[name] for name in deploy_graph.output_names(graph, "test graph")]
    return Network(mx.sym.Group(outputs), args, aux, SIDE)


def comparison(symbol_json, args, aux, folded_graph, folded_args, mean=MEAN_RGB):
    """The raw-frame network of the folded graph against the deploy graph's on preprocessed sample frames."""
    deploy = network(json.loads(symbol_json), args, aux)
    folded = network(folded_graph, folded_args, aux)
    result = proof.NetworkComparison("the folded graph", VARIANCES, ["a", "b"])
    for frame in sample_images():
        expected = deploy.outputs(preprocess(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), SIDE))
        result.add(expected, folded.outputs(raw_frame_input(frame, SIDE)[0]))
    return result.result()


def test_the_folded_graph_on_raw_bgr_frames_computes_what_the_preprocessed_deploy_graph_computes(tiny):
    symbol_json, args, aux = tiny
    graph, folded_args = fold_preprocessing(json.loads(symbol_json), args, MEAN_RGB, 1.0)
    result = comparison(symbol_json, args, aux, graph, folded_args)
    assert result["problems"] == [] and result["max_class_prob_difference"] < 1e-5


@pytest.mark.parametrize(
    "defect, mean, swap",
    [("a wrong mean", (120, 117, 104), False), ("the colours swapped", MEAN_RGB, True), ("no fold", None, False)],
)
def test_a_wrong_fold_fails_the_proof(tiny, defect, mean, swap):
    symbol_json, args, aux = tiny
    graph, folded_args = fold_preprocessing(json.loads(symbol_json), args, mean or MEAN_RGB, 1.0)
    if swap:
        folded_args[f"{PREPROCESS}_weight"] = folded_args[f"{PREPROCESS}_weight"][:, ::-1]
    if mean is None:  # the raw frames given to the deploy graph itself
        graph, folded_args = json.loads(symbol_json), args
    problems = comparison(symbol_json, args, aux, graph, folded_args)["problems"]
    assert problems and problems[0].startswith("the folded graph's class probabilities differ from MXNet's by up to")


def test_preprocessing_weights_swap_channels_and_subtract_the_mean():
    weight, bias = preprocess_params((123, 117, 104), 0.5)
    bgr = np.array([10.0, 20.0, 30.0])  # B, G, R
    rgb_out = weight[:, :, 0, 0] @ bgr + bias
    assert rgb_out.tolist() == [0.5 * (30 - 123), 0.5 * (20 - 117), 0.5 * (10 - 104)]


def test_the_reference_resnet50_deploy_graph_loses_its_copy_node_and_uses_only_the_devices_layers():
    reference = json.loads(REFERENCE_DEPLOY.read_text())
    assert "_copy" in {node["op"] for node in reference["nodes"]}
    graph = deeplens_graph(reference)
    layers = check_layers(graph, "reference")
    assert "_copy" not in layers and set(layers) <= DEEPLENS_LAYERS
    by_name = {node["name"]: node for node in graph["nodes"]}
    conv = graph["nodes"].index(by_name[PREPROCESS])
    first_bn = by_name["bn_data"]  # read the copy of data before; the folded preprocessing now
    assert first_bn["inputs"][0][0] == conv
    assert len(graph["nodes"]) == len(reference["nodes"]) - 1 + 3
    assert all(graph["nodes"][i]["op"] == "null" for i in graph["arg_nodes"])
    symbol = mx.sym.load_json(json.dumps(graph))
    assert symbol.list_arguments()[:3] == ["data", f"{PREPROCESS}_weight", f"{PREPROCESS}_bias"]
    assert symbol.infer_shape(data=(1, 3, 512, 512))[1][0] == (1, 6132, 6)


def test_a_layer_the_device_does_not_accept_is_named(tiny):
    graph = deeplens_graph(json.loads(tiny[0]))
    softmax = next(node for node in graph["nodes"] if node["op"] == "SoftmaxActivation")
    softmax["op"] = "softmax"  # what MXNet 1.x writes for mx.sym.softmax; the device knows only SoftmaxActivation
    with pytest.raises(UserError, match=r"layer softmax \(node 'cls_prob'\) is not one the DeepLens' Model Optimizer"):
        check_layers(graph, "test graph")
