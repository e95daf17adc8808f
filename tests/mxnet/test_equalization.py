"""Activation-range equalization: the network computes the same, its channels' ranges come closer, and only chains
it may rescale are touched."""

import numpy as np
import onnx
import onnxruntime
from onnx import helper, numpy_helper

from workflow.lib.equalization import MAX_GAIN, channel_maxima, equalize
from workflow.lib.onnx_graph import IR_VERSION, OPSET

CHANNELS = 4
# The stem's channels end up spanning 1, 1/10, 1/100 and 1/1000 of each other: the last one is capped at MAX_GAIN
CHANNEL_RANGE = np.array([1.0, 0.1, 0.01, 0.001], np.float32)


def conv(name, source, weight, group=1):
    return helper.make_node("Conv", [source, name + "_w"], [name], group=group, pads=[1, 1, 1, 1]), weight


def norm(name, source, gamma):
    zeros, ones = np.zeros(CHANNELS, np.float32), np.ones(CHANNELS, np.float32)
    node = helper.make_node("BatchNormalization", [source, *(f"{name}_{p}" for p in ("g", "b", "m", "v"))], [name])
    return node, {f"{name}_g": gamma, f"{name}_b": 0.1 * gamma, f"{name}_m": zeros, f"{name}_v": ones}


def network(relu_branches=1):
    """stem Conv - BN - Relu - depthwise Conv - BN - Relu - pointwise Conv; with relu_branches 2 the second Relu
    also feeds an output of its own, so that chain may not be rescaled."""
    rng = np.random.default_rng(0)
    nodes, weights = [], {}
    for node, values in [
        conv("stem", "image", rng.normal(size=(CHANNELS, 3, 3, 3)).astype(np.float32)),
        norm("stem_bn", "stem", CHANNEL_RANGE),
        (helper.make_node("Relu", ["stem_bn"], ["stem_relu"]), None),
        conv("dw", "stem_relu", rng.normal(size=(CHANNELS, 1, 3, 3)).astype(np.float32), group=CHANNELS),
        norm("dw_bn", "dw", CHANNEL_RANGE[::-1].copy()),
        (helper.make_node("Relu", ["dw_bn"], ["dw_relu"]), None),
        conv("pw", "dw_relu", rng.normal(size=(2, CHANNELS, 3, 3)).astype(np.float32)),
    ]:
        nodes.append(node)
        if isinstance(values, dict):
            weights.update(values)
        elif values is not None:
            weights[node.input[1]] = values
    outputs = [helper.make_tensor_value_info("pw", onnx.TensorProto.FLOAT, None)]
    if relu_branches == 2:
        outputs.append(helper.make_tensor_value_info("dw_relu", onnx.TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        outputs,
        [numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)


def run(model, images, output="pw"):
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run([output], {"image": image})[0] for image in images])


def images(count=6):
    return list(np.random.default_rng(1).uniform(0, 1, size=(count, 1, 3, 8, 8)).astype(np.float32))


def test_equalized_network_computes_the_same_with_its_channel_ranges_brought_together():
    model, calibration = network(), images()
    before = channel_maxima(model, ["stem_relu", "dw_relu"], calibration)
    expected = run(model, calibration)
    assert equalize(model, calibration) == 2
    after = channel_maxima(model, ["stem_relu", "dw_relu"], calibration)
    np.testing.assert_allclose(run(model, calibration), expected, rtol=1e-4, atol=1e-5)
    narrowest = {name: (values / values.max()).min() for name, values in before.items()}
    assert narrowest["stem_relu"] < 0.01 and narrowest["dw_relu"] < 0.05
    # before a depthwise Conv the channels are widened to the widest one's range, up to MAX_GAIN
    widened = after["stem_relu"] / before["stem_relu"]
    assert widened.min() > 0.9999 and np.isclose(widened.max(), MAX_GAIN, rtol=1e-4)
    assert after["stem_relu"].max() <= before["stem_relu"].max() * 1.0001
    assert (after["stem_relu"] / after["stem_relu"].max()).min() > 10 * narrowest["stem_relu"]
    # before a pointwise Conv only partly
    assert narrowest["dw_relu"] < (after["dw_relu"] / after["dw_relu"].max()).min() < 1


def test_a_relu_that_feeds_anything_more_than_one_conv_is_left_alone():
    model, calibration = network(relu_branches=2), images()
    expected = run(model, calibration, "dw_relu")
    assert equalize(model, calibration) == 1  # the stem's chain only
    np.testing.assert_allclose(run(model, calibration, "dw_relu"), expected, rtol=1e-4, atol=1e-5)
