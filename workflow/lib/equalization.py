"""Activation-range equalization of an ONNX network before full-integer quantization.

An INT8 tensor has one scale for all its channels, so a channel whose values span a hundredth of the widest
channel's keeps two or three levels. In each Conv - BatchNormalization - Relu - Conv chain (every block of
EfficientNet-Lite, the stem) the BatchNormalization's output channel c can be divided by s_c and the next Conv's
input channel c multiplied by s_c without changing what the network computes, as ReLU(x / s) = ReLU(x) / s for
s > 0. Choosing s_c from each channel's largest value on calibration images widens the narrow channels (the
cross-layer equalization of Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias Correction",
ICCV 2019, driven by activations). A depthwise Conv has one weight scale per channel in INT8, so it takes the whole
rescaling for free; a pointwise Conv's weights share a scale along their input channels, so there the rescaling
is only partial (EXPONENT). Measured on the sample's and the cards' networks: docs/devices.md.
"""

import numpy as np
import onnx
from onnx import numpy_helper

# s_c = (range_c / widest range) ** EXPONENT before a pointwise Conv, ** 1 before a depthwise one
EXPONENT = 0.75
# No channel is widened more than this: one nearly silent on the calibration images may not be so on others
MAX_GAIN = 30.0


def groups(conv):
    return next((attribute.i for attribute in conv.attribute if attribute.name == "group"), 1)


def equalizable(graph):
    """(BatchNormalization, Relu, Conv) node triples whose channels can be rescaled: the BatchNormalization feeds
    only the Relu, the Relu only the Conv (neither is a graph output), and the Conv is a plain or a depthwise one with
    constant weights."""
    weights = {tensor.name: tensor for tensor in graph.initializer}
    outputs = {output.name for output in graph.output}
    producer = {output: node for node in graph.node for output in node.output}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    triples = []
    for relu in (node for node in graph.node if node.op_type == "Relu"):
        norm, users = producer.get(relu.input[0]), consumers.get(relu.output[0], [])
        if norm is None or norm.op_type != "BatchNormalization" or len(consumers[norm.output[0]]) != 1:
            continue
        if outputs & {norm.output[0], relu.output[0]} or not all(name in weights for name in norm.input[1:3]):
            continue
        if len(users) != 1 or users[0].op_type != "Conv" or users[0].input[1] not in weights:
            continue
        if groups(users[0]) == 1 or weights[users[0].input[1]].dims[1] == 1:
            triples.append((norm, relu, users[0]))
    return triples


def channel_maxima(model, tensors, images):
    """Each tensor's largest value per channel over NCHW float32 images, by onnxruntime."""
    import onnxruntime

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in tensors
    )
    session = onnxruntime.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    maxima = dict.fromkeys(tensors, 0.0)
    for image in images:
        for name, value in zip(tensors, session.run(tensors, {input_name: image})):
            maxima[name] = np.maximum(maxima[name], value.max(axis=(0, 2, 3)))
    return maxima


def channel_scales(maxima, exponent, max_gain):
    widest = maxima.max()
    scales = np.ones_like(maxima)
    alive = maxima > 0
    scales[alive] = np.maximum((maxima[alive] / widest) ** exponent, 1 / max_gain)
    return scales


def equalize(model, images, exponent=EXPONENT, max_gain=MAX_GAIN):
    """model (onnx.ModelProto) with the channels of every equalizable chain rescaled from the Relu outputs'
    ranges on images (NCHW float32, as the model takes them); returns the number of chains rescaled."""
    weights = {tensor.name: tensor for tensor in model.graph.initializer}
    triples = equalizable(model.graph)
    maxima = channel_maxima(model, [relu.output[0] for _, relu, _ in triples], images)

    def rescale(name, factor):
        value = numpy_helper.to_array(weights[name])
        weights[name].CopyFrom(numpy_helper.from_array((value * factor).astype(value.dtype), name))

    for norm, relu, conv in triples:
        depthwise = groups(conv) > 1
        scales = channel_scales(maxima[relu.output[0]], 1.0 if depthwise else exponent, max_gain)
        rescale(norm.input[1], 1 / scales)  # gamma
        rescale(norm.input[2], 1 / scales)  # beta
        rescale(conv.input[1], scales.reshape((-1, 1, 1, 1) if depthwise else (1, -1, 1, 1)))
    return len(triples)
