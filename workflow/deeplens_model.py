"""deeplens_model: the deploy model as an AWS DeepLens takes it: raw BGR frames in, only the device's layers.

The documented DeepLens Lambdas feed `cv2.resize(frame, (width, height))` of the BGR uint8 frame from
awscam.getLastFrame() straight to model.doInference; nothing there swaps channels or subtracts a mean. So the
DeepLens graph starts with a fixed 1x1 Convolution, `deeplens_preprocess`: output channel c (RGB order) is
scale * (input channel 2 - c - mean_rgb[c]), the training-time preprocessing of workflow/lib/detector.py. A 1x1
convolution has no padding, so it is exact at every pixel, borders included. `_copy` identity nodes are dropped
(the original project's resnet50 deploy graph has one after data) and every layer must be one the device's Model
Optimizer accepts (DEEPLENS_LAYERS), else the stage fails naming the layer.

The device's optimizer, like ours (workflow/optimize.py), turns MultiBoxDetection into a DetectionOutput that
suppresses per class and drops force_suppress, and per-class suppression followed by a cross-class one keeps fewer
boxes than MXNet's single cross-class pass. So the shipped graph keeps every candidate (nms_threshold 1) and the
Lambda applies the deploy model's NMS (across classes when force_nms) to parseResult's boxes.

Written, as mo.optimize(model_name, width, height) finds them: model/<model_name>-symbol.json in MXNet 0.12 form
(the DeepLens' version) and model/<model_name>-0000.params; and deeplens_model.json with the proof
(workflow/lib/proof.py) that on every val image the DeepLens graph's network on the raw resized BGR frame computes
the deploy model's on the training-time preprocessing of the same image: class probabilities and box offsets within
proof.NETWORK_TOLERANCE, the same anchors. Its post-processing is the Lambda's, which deeplens_rehearsal proves.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from workflow.lib import deploy_graph, proof
from workflow.lib.cli import UserError, log, run_main
from workflow.lib.mxnet012 import mxnet012_symbol_json

# The MXNet layers the DeepLens' Model Optimizer accepts (AWS DeepLens Developer Guide,
# deeplens-supported-frameworks-mxnet-layers.md). "null" nodes are the graph's inputs and weights.
DEEPLENS_LAYERS = frozenset(
    "Activation BatchNorm Concat _contrib_MultiBoxDetection _contrib_MultiBoxPrior Convolution Deconvolution "
    "elemwise_add Flatten FullyConnected InputLayer L2Norm LRN Pooling Reshape ScaleShift SoftmaxActivation "
    "SoftmaxOutput transpose UpSampling _mul _Plus".split()
)
IDENTITY_OPS = ("_copy",)
PREPROCESS = "deeplens_preprocess"
EPOCH = 0  # the DeepLens console and mo.optimize take <model_name>-NNNN.params; SageMaker's models are -0000


def deeplens_graph(graph):
    """The symbol JSON `graph` with the preprocessing convolution between `data` and its consumers and without
    identity nodes (each consumer of one reads the identity's input instead)."""
    nodes, new_index = [], {}  # new_index: old node index -> the (node, output) that replaces its output 0

    def entry(old):
        node, output = new_index[old[0]]
        return [node, output + old[1], 0]

    def add(node):
        nodes.append(node)
        return len(nodes) - 1

    for index, node in enumerate(graph["nodes"]):
        if node["op"] in IDENTITY_OPS:
            new_index[index] = tuple(entry(node["inputs"][0])[:2])
            continue
        node = {**node, "inputs": [entry(i) for i in node["inputs"]]}
        position = add(node)
        new_index[index] = (position, 0)
        if node["op"] == "null" and node["name"] == "data":
            weight = add({"op": "null", "name": f"{PREPROCESS}_weight", "inputs": []})
            bias = add({"op": "null", "name": f"{PREPROCESS}_bias", "inputs": []})
            conv = add(
                {
                    "op": "Convolution",
                    "name": PREPROCESS,
                    "attrs": {
                        "kernel": "(1, 1)",
                        "num_filter": "3",
                        "no_bias": "False",
                    },
                    "inputs": [[position, 0, 0], [weight, 0, 0], [bias, 0, 0]],
                }
            )
            new_index[index] = (conv, 0)
    if PREPROCESS not in {n["name"] for n in nodes}:
        raise UserError("the deploy graph has no input named 'data'")
    return {
        "nodes": nodes,
        "arg_nodes": [i for i, n in enumerate(nodes) if n["op"] == "null"],
        "heads": [entry(head) for head in graph["heads"]],
        "attrs": graph.get("attrs", {}),
    }


def check_layers(graph, where):
    """Fail, naming the layer, when the graph uses one the DeepLens' Model Optimizer does not accept."""
    for node in graph["nodes"]:
        if node["op"] != "null" and node["op"] not in DEEPLENS_LAYERS:
            raise UserError(
                f"{where}: layer {node['op']} (node '{node['name']}') is not one the DeepLens' Model Optimizer "
                f"accepts ({', '.join(sorted(DEEPLENS_LAYERS))}); the device cannot convert this model"
            )
    return sorted({node["op"] for node in graph["nodes"] if node["op"] != "null"})


def preprocess_params(mean_rgb, scale):
    """The 1x1 convolution's weight and bias: BGR in, scale * (RGB - mean) out."""
    weight = np.zeros((3, 3, 1, 1), dtype=np.float32)
    for channel in range(3):
        weight[channel, 2 - channel] = scale
    return weight, -scale * np.asarray(mean_rgb, dtype=np.float32)


def raw_frame_input(image_bgr, side):
    """What the device feeds doInference: the BGR frame resized (cv2.resize's default, bilinear), as NCHW floats."""
    import cv2

    return cv2.resize(image_bgr, (side, side)).astype(np.float32).transpose(2, 0, 1)[np.newaxis]


def fold_preprocessing(graph, arg_params, mean_rgb, scale):
    """(DeepLens graph, its arg params) of a deploy graph (symbol JSON) and its arg params (NDArrays)."""
    import mxnet as mx

    weight, bias = preprocess_params(mean_rgb, scale)
    weights = {f"{PREPROCESS}_weight": mx.nd.array(weight), f"{PREPROCESS}_bias": mx.nd.array(bias)}
    return deeplens_graph(graph), {**arg_params, **weights}


def write_model(out_dir, model_name, graph, arg_params, aux_params):
    """model_name-symbol.json (MXNet 0.12 form, NMS left to the Lambda) and model_name-0000.params in out_dir."""
    import mxnet as mx

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    graph = json.loads(json.dumps(graph))
    deploy_graph.detection_attributes(graph, model_name)["nms_threshold"] = "1"  # IoU > 1 never: the Lambda suppresses
    (out_dir / f"{model_name}-symbol.json").write_text(mxnet012_symbol_json(json.dumps(graph)))
    mx.nd.save(
        str(out_dir / f"{model_name}-{EPOCH:04d}.params"),
        {**{f"arg:{k}": v for k, v in arg_params.items()}, **{f"aux:{k}": v for k, v in aux_params.items()}},
    )


def build(args):
    import cv2
    import mxnet as mx

    from workflow.lib.detector import Detector, Network, read_records
    from workflow.lib.networks import VARIANCES

    deploy_json = Path(args.deploy)
    info = json.loads(deploy_json.read_text())
    model_name = Path(info["symbol"]).name[: -len("-symbol.json")]
    arg_params, aux_params = mx.model.load_params(str(deploy_json.parent / model_name), info["epoch"])
    deploy_symbol = json.loads((deploy_json.parent / info["symbol"]).read_text())
    graph, arg_params = fold_preprocessing(deploy_symbol, arg_params, info["input"]["mean_rgb"], info["input"]["scale"])
    layers = check_layers(graph, f"the DeepLens graph of {deploy_json.parent / info['symbol']}")
    symbol = mx.sym.load_json(json.dumps(graph))

    detector, side = Detector(deploy_json), info["data_shape"]
    internals = symbol.get_internals()
    outputs = [internals[name] for name in deploy_graph.output_names(graph, "the DeepLens graph")]
    network = Network(mx.sym.Group(outputs), arg_params, aux_params, side)
    what = "the DeepLens graph on raw BGR frames"
    comparison = proof.NetworkComparison(what, VARIANCES, info["classes"])
    for rgb, _ in read_records(args.val_rec):
        comparison.add(
            detector.network_outputs(rgb),
            network.outputs(raw_frame_input(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), side)[0]),
        )
    check = {
        "network": comparison.result(),
        "anchors": proof.anchor_problems(what, network.anchors, VARIANCES, detector.anchors, VARIANCES),
    }
    problems = check["network"]["problems"] + check["anchors"]
    if problems:
        raise UserError(f"{what} does not compute what the deploy model computes: {'; '.join(problems)}")

    write_model(args.out_dir, model_name, graph, arg_params, aux_params)
    description = {
        "model_name": model_name,
        "symbol": f"{model_name}-symbol.json",
        "params": f"{model_name}-{EPOCH:04d}.params",
        "input_width": side,
        "input_height": side,
        "input": "raw BGR frames resized to input_width x input_height (cv2.resize), 0-255, NCHW; the graph's "
        f"{PREPROCESS} convolution swaps to RGB, subtracts mean_rgb {info['input']['mean_rgb']} and scales by "
        f"{info['input']['scale']}",
        "layers": layers,
        "classes": info["classes"],
        **{key: info[key] for key in ("force_nms", "nms_threshold", "nms_topk", "threshold")},
        "nms_in_graph": False,
        "proof": check,
    }
    Path(args.out).write_text(json.dumps(description, indent=1))
    log(f"deeplens_model: {model_name} for the DeepLens (raw BGR in, layers {', '.join(layers)})")
    log(f"deeplens_model: {proof.network_summary(check['network'])}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.deeplens_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--deploy", required=True, help="deploy.json of the deploy stage")
    parser.add_argument("--val-rec", required=True, help="val .rec: the images of the raw-frame check")
    parser.add_argument("--out-dir", required=True, help="the model/ folder to write")
    parser.add_argument("--out", required=True, help="deeplens_model.json to write")
    build(parser.parse_args(argv))


if __name__ == "__main__":
    run_main(main)
