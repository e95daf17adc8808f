"""The deploy model as one ONNX graph: MXNet's own exporter for the network, onnx.helper for what it cannot export.

MXNet 1.9.1's exporter (mx.onnx, opset 13) translates the network up to its heads: convolutions, BatchNorm, ReLU,
the heads' transposes, flattens and concats. It has no translation for MultiBoxPrior or MultiBoxDetection, so they
are written here, as MultiBoxDetection computes them (src/operator/contrib/multibox_detection.cc):
- the anchors, computed by MXNet for the fixed input size, as a constant;
- softmax over the classes, each anchor's best class other than background and its score; the nms_topk best
  anchors (TopK) as candidates; their boxes decoded with the variances and clipped to [0, 1];
- ONNX NonMaxSuppression: across classes when force_nms, per class otherwise (each anchor keeps its best class);
  candidates under the detection threshold are dropped. ONNX suppresses at IoU > nms_threshold, MXNet at >=.
The mean is subtracted inside, so the input is the resized RGB image as float32 0-255.
"""

import json
import tempfile
from pathlib import Path

import mxnet as mx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from workflow.lib.networks import MEAN_RGB, VARIANCES

OPSET = 13
IR_VERSION = 8  # what opset 13 needs; onnxruntime 1.22 reads up to 10, onnx 1.18 writes 11 by default
INPUT, OUTPUT = "image", "detections"


def deploy_parts(symbol):
    """(class predictions (1, classes + 1, anchors) before the softmax, box offsets (1, anchors * 4), anchors)."""
    internals = symbol.get_internals()
    return tuple(internals[f"multibox_{part}_output"] for part in ("cls_pred", "loc_pred", "anchors"))


def anchor_boxes(anchors_symbol, data_shape):
    """The anchors' corners (anchors, 4) for the input size: MultiBoxPrior depends on the input's shape only."""
    executor = anchors_symbol.simple_bind(mx.cpu(), data=(1, 3, data_shape, data_shape), grad_req="null")
    return executor.forward(is_train=False)[0].asnumpy()[0]


def fixed_gammas(symbol):
    """The gammas of the BatchNorms with fix_gamma (MXNet's default): MXNet computes with 1 whatever is stored (weight
    decay moves it in training), mx.onnx exports what is stored."""
    nodes = json.loads(symbol.tojson())["nodes"]
    fixed = [n for n in nodes if n["op"] == "BatchNorm" and n.get("attrs", {}).get("fix_gamma", "True") == "True"]
    return [nodes[n["inputs"][1][0]]["name"] for n in fixed]


def network_graph(body, args, aux, data_shape):
    """mx.onnx's graph of the network body: input "data" (mean subtracted), one output per body output. The exporter
    labels its graph with the newest opset the installed onnx knows, made of its opset-13 translations: relabelled."""
    needed = set(body.list_arguments()) | set(body.list_auxiliary_states())
    params = {name: value for name, value in {**args, **aux}.items() if name in needed}
    for gamma in fixed_gammas(body):  # the exporter would use the stored value
        params[gamma] = mx.nd.ones_like(params[gamma])
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "body.onnx"
        mx.onnx.export_model(
            body,
            params,
            in_shapes=[(1, 3, data_shape, data_shape)],
            in_types=[np.float32],
            onnx_file_path=str(path),
        )
        model = onnx.load(str(path))
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", OPSET))
    model.ir_version = IR_VERSION
    initializers = {tensor.name for tensor in model.graph.initializer}
    for weight in [value for value in model.graph.input if value.name in initializers]:
        model.graph.input.remove(weight)  # weights, not inputs: onnxruntime folds them as constants
    flatten_as_reshape(model.graph)
    return model


def flatten_as_reshape(graph):
    """Each Flatten (axis 1, batch 1) as the same Reshape to (1, -1). onnx2tf flattens a head's NHWC transpose in the
    wrong order when its channels, height and width are equal (a 16-channel head on a 16x16 map); a Reshape it
    converts right."""
    for index, node in enumerate(graph.node):
        if node.op_type != "Flatten":
            continue
        if any(a.name == "axis" and a.i != 1 for a in node.attribute):
            raise ValueError(f"{node.name}: Flatten with an axis other than 1")
        shape = f"{node.name}_shape"
        graph.initializer.append(numpy_helper.from_array(np.array([1, -1], np.int64), shape))
        graph.node[index].CopyFrom(
            helper.make_node("Reshape", [node.input[0], shape], list(node.output), name=node.name)
        )


class _Nodes:
    """Nodes and constants appended to a graph, each named after its output."""

    def __init__(self):
        self.nodes, self.constants = [], []

    def const(self, name, value):
        self.constants.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def add(self, op, inputs, outputs, **attributes):
        outputs = [outputs] if isinstance(outputs, str) else outputs
        self.nodes.append(helper.make_node(op, inputs, outputs, name=outputs[0], **attributes))
        return outputs[0] if len(outputs) == 1 else outputs


def build(symbol, args, aux, info):
    """The whole detector as an onnx.ModelProto: input "image" float32 [1, 3, S, S] RGB 0-255, output "detections"
    float32 [n, 6] rows (class, score, xmin, ymin, xmax, ymax), normalised, best score first."""
    cls_preds, loc_preds, anchors = deploy_parts(symbol)
    model, g, (cls_name, loc_name) = _with_image_input(mx.sym.Group([cls_preds, loc_preds]), args, aux, info)
    detection(g, cls_name, loc_name, anchor_boxes(anchors, info["data_shape"]), info)
    return _finish(model, g, [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["detections", 6])])


def network_outputs(heads):
    """The output names of build_network's model with `heads` feature maps: class_prob_0 ..., box_offsets_0 ..."""
    return [f"class_prob_{i}" for i in range(heads)], [f"box_offsets_{i}" for i in range(heads)]


def build_network(symbol, args, aux, info):
    """The network without MultiBoxDetection, for converters that take the post-processing outside (LiteRT): input
    as build's; for each feature map i, largest first, "class_prob_i" (1, anchors_i, classes + 1), the softmax with
    background first, and "box_offsets_i" (1, anchors_i, 4), the offsets MultiBoxDetection decodes with the anchors
    and the variances. Concatenated in that order they are MultiBoxDetection's inputs, as the anchors are. Each
    head keeps outputs of its own: INT8 quantization then gives each its own scale, where a concatenation would
    force one scale on every head. Returns (model, the anchors' corners (anchors, 4))."""
    data_shape, classes = info["data_shape"], len(info["classes"]) + 1
    cls_preds, loc_preds, anchors = deploy_parts(symbol)
    cls_heads = cls_preds.get_children()[0].get_children()[0].get_children()  # transpose, reshape, concat, flattens
    loc_heads = loc_preds.get_children()  # concat, flattens
    counts = [head.infer_shape(data=(1, 3, data_shape, data_shape))[1][0][1] // 4 for head in loc_heads]
    model, g, names = _with_image_input(mx.sym.Group([*cls_heads, *loc_heads]), args, aux, info)
    cls_outputs, loc_outputs = network_outputs(len(counts))
    outputs = []
    for i, count in enumerate(counts):
        shaped = g.add("Reshape", [names[i], g.const(f"class_shape_{i}", [1, count, classes])], f"class_logits_{i}")
        g.add("Softmax", [shaped], cls_outputs[i], axis=2)
        g.add("Reshape", [names[len(counts) + i], g.const(f"offsets_shape_{i}", [1, count, 4])], loc_outputs[i])
        outputs += [(cls_outputs[i], [1, count, classes]), (loc_outputs[i], [1, count, 4])]
    outputs.sort(key=lambda item: item[0].startswith("box"))  # the class outputs first, then the offsets
    values = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in outputs]
    return _finish(model, g, values), anchor_boxes(anchors, data_shape)


def _with_image_input(body, args, aux, info):
    """mx.onnx's graph of the network body with the image input and the mean subtracted, the nodes to append, and
    the names of the body's outputs."""
    data_shape = info["data_shape"]
    model = network_graph(body, args, aux, data_shape)
    graph = model.graph
    names = [output.name for output in graph.output]
    data_name = graph.input[0].name
    del graph.output[:]
    graph.input.remove(graph.input[0])
    graph.input.insert(0, helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [1, 3, data_shape, data_shape]))
    g = _Nodes()
    mean = g.const("mean_rgb", np.array(MEAN_RGB, np.float32).reshape(1, 3, 1, 1))
    graph.node.insert(0, helper.make_node("Sub", [INPUT, mean], [data_name], name="subtract_mean"))
    return model, g, names


def _finish(model, g, outputs):
    model.graph.node.extend(g.nodes)
    model.graph.initializer.extend(g.constants)
    model.graph.output.extend(outputs)
    onnx.checker.check_model(model, full_check=True)
    return model


def with_network_outputs(model):
    """(a copy of build's model with two more outputs, (their names)): the network's outputs as MultiBoxDetection
    takes them, the class probabilities (1, classes + 1, anchors) and the box offsets (1, anchors * 4)."""
    nodes = {node.name: node for node in model.graph.node}
    names = (nodes["class_prob"].output[0], nodes["offsets"].input[0])
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in names)
    return copy, names


def postprocessing_model(model):
    """build's model from its network's outputs on: inputs the class predictions (1, classes + 1, anchors) before
    the softmax and the box offsets (1, anchors * 4), output "detections". Returns (model, (its input names))."""
    nodes = {node.name: node for node in model.graph.node}
    names = [nodes["class_prob"].input[0], nodes["offsets"].input[0]]
    producers = {output: node for node in model.graph.node for output in node.output}
    needed, pending = set(), [OUTPUT]
    while pending:  # the nodes OUTPUT depends on, back to the network's outputs
        name = pending.pop()
        if name in names or name not in producers or producers[name].name in needed:
            continue
        needed.add(producers[name].name)
        pending += producers[name].input
    kept = [node for node in model.graph.node if node.name in needed]
    used = {name for node in kept for name in node.input}
    constants = [tensor for tensor in model.graph.initializer if tensor.name in used]
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in names]
    graph = helper.make_graph(kept, "postprocessing", inputs, [model.graph.output[0]], constants)
    return helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version), names


def detection_model(anchors, info):
    """MultiBoxDetection alone as a model: inputs "cls_preds" (1, classes + 1, anchors) before the softmax and
    "loc_preds" (1, anchors * 4), output "detections" as build's."""
    g = _Nodes()
    detection(g, "cls_preds", "loc_preds", anchors, info)
    inputs = [
        helper.make_tensor_value_info("cls_preds", TensorProto.FLOAT, [1, len(info["classes"]) + 1, len(anchors)]),
        helper.make_tensor_value_info("loc_preds", TensorProto.FLOAT, [1, len(anchors) * 4]),
    ]
    output = helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["detections", 6])
    graph = helper.make_graph(g.nodes, "multibox_detection", inputs, [output], g.constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    return model


def detection(g, cls_name, loc_name, anchors, info):
    """MultiBoxDetection's nodes from the class predictions and box offsets named cls_name and loc_name, with the
    anchors' corners (anchors, 4) as a constant; the last node's output is OUTPUT."""
    for name, value in {"axis0": [0], "axis1": [1], "axis2": [2], "zero": np.float32(0), "one": np.float32(1)}.items():
        g.const(name, value)
    boxes = _decode(g, loc_name, anchors)
    classes = len(info["classes"])
    top_k = min(info["nms_topk"], len(anchors)) if info["nms_topk"] > 0 else len(anchors)
    prob = g.add("Softmax", [cls_name], "class_prob", axis=1)
    foreground = g.add("Slice", [prob, g.const("first_class", [1]), g.const("end_class", [classes + 1]), "axis1"], "fg")
    best = g.add("ReduceMax", [foreground], "best_score", axes=[1], keepdims=0)
    label = g.add("ArgMax", [foreground], "best_class", axis=1, keepdims=0)
    scores, picked = g.add("TopK", [best, g.const("top_k", [top_k])], ["candidate_scores", "candidate_index"], axis=1)
    index = g.add("Squeeze", [picked, "axis0"], "candidate_index_1d")
    candidate_boxes = g.add("Gather", [boxes, index], "candidate_boxes", axis=1)
    candidate_labels = g.add("Gather", [label, index], "candidate_labels", axis=1)
    nms_scores = _nms_scores(g, scores, candidate_labels, classes, info["force_nms"])
    limits = [
        g.const("max_per_class", [top_k]),
        g.const("iou_threshold", np.array([info["nms_threshold"]], np.float32)),
        g.const("score_threshold", np.array([info["threshold"]], np.float32)),
    ]
    selected = g.add("NonMaxSuppression", [candidate_boxes, nms_scores, *limits], "selected")
    return _rows(g, selected, candidate_boxes, scores, candidate_labels)


def _decode(g, loc_name, anchors):
    """Boxes (1, anchors, 4) from the offsets, as MultiBoxDetection's TransformLocations with clip."""
    size = anchors[:, 2:] - anchors[:, :2]
    center = (anchors[:, :2] + anchors[:, 2:]) / 2
    variances = np.array(VARIANCES, np.float32)
    offsets = g.add("Reshape", [loc_name, g.const("offsets_shape", [1, -1, 4])], "offsets")
    shift = g.add("Slice", [offsets, g.const("xy_start", [0]), g.const("xy_end", [2]), "axis2"], "offset_xy")
    scale = g.add("Slice", [offsets, g.const("wh_start", [2]), g.const("wh_end", [4]), "axis2"], "offset_wh")
    moved = g.add("Mul", [shift, g.const("xy_factor", (variances[:2] * size)[None].astype(np.float32))], "moved")
    middle = g.add("Add", [moved, g.const("anchor_center", center[None].astype(np.float32))], "box_center")
    scaled = g.add("Mul", [scale, g.const("wh_variance", variances[2:])], "scaled_wh")
    half = g.add("Mul", [g.add("Exp", [scaled], "grown_wh"), g.const("half_anchor", (size / 2)[None])], "half_size")
    top_left, bottom_right = g.add("Sub", [middle, half], "top_left"), g.add("Add", [middle, half], "bottom_right")
    corners = g.add("Concat", [top_left, bottom_right], "corners", axis=2)
    return g.add("Clip", [corners, "zero", "one"], "boxes")


def _nms_scores(g, scores, labels, classes, force_nms):
    """NonMaxSuppression's scores: one row for every class at once (force_nms), else one row per class holding the
    score of the anchors whose best class it is."""
    row = g.add("Unsqueeze", [scores, "axis1"], "scores_row")  # (1, 1, candidates)
    if force_nms:
        return row
    ids = g.const("class_ids", np.arange(classes, dtype=np.int64).reshape(1, classes, 1))
    mine = g.add("Equal", [g.add("Unsqueeze", [labels, "axis1"], "labels_row"), ids], "class_mask")
    return g.add("Where", [mine, row, "zero"], "class_scores")


def _rows(g, selected, boxes, scores, labels):
    """The kept candidates as the output rows (class, score, xmin, ymin, xmax, ymax), best score first."""
    column = g.add("Slice", [selected, g.const("box_column", [2]), g.const("box_column_end", [3]), "axis1"], "column")
    kept = g.add("Squeeze", [column, "axis1"], "kept")
    kept_scores = g.add("Gather", [g.add("Squeeze", [scores, "axis0"], "scores_1d"), kept], "kept_scores")
    count = g.add("Shape", [kept_scores], "kept_count")
    sorted_scores, order = g.add("TopK", [kept_scores, count], ["sorted_scores", "order"], axis=0)
    kept = g.add("Gather", [kept, order], "kept_sorted")
    kept_boxes = g.add("Gather", [g.add("Squeeze", [boxes, "axis0"], "boxes_2d"), kept], "kept_boxes")
    kept_labels = g.add("Gather", [g.add("Squeeze", [labels, "axis0"], "labels_1d"), kept], "kept_labels")
    label_column = g.add(
        "Unsqueeze", [g.add("Cast", [kept_labels], "labels_float", to=TensorProto.FLOAT), "axis1"], "l"
    )
    score_column = g.add("Unsqueeze", [sorted_scores, "axis1"], "score_column")
    return g.add("Concat", [label_column, score_column, kept_boxes], OUTPUT, axis=1)
