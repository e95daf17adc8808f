"""verify_mxnet012: MXNet 0.12 (the DeepLens' version; mxnet012 environment: mxnet 0.12 and numpy only) loads what
export_mxnet012 wrote and computes what MXNet 1.9.1 computes.

The proof (workflow/lib/proof.py; docs/numbers.md, "The proofs"), or the stage fails naming what differs: on the
reference's val images, the network's class probabilities and box offsets within proof.NETWORK_TOLERANCE of MXNet
1.9.1's, the same anchors; and the graph's own MultiBoxDetection, run by MXNet 0.12 on the reference's synthetic
network outputs, keeping the detections MXNet 1.9.1's keeps.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from workflow.lib import deploy_graph, proof
from workflow.lib.cli import UserError, log, run_main
from workflow.lib.mxnet012 import REFERENCE, SUMMARY


def bound(mx, symbol, params, shapes):
    """symbol bound on the CPU for inputs of `shapes` ({name: shape}), with params ("arg:"/"aux:" keys) set."""
    executor = symbol.simple_bind(mx.cpu(), grad_req="null", **shapes)
    for key, value in params.items():
        kind, name = key.split(":", 1)
        target = (executor.arg_dict if kind == "arg" else executor.aux_dict).get(name)
        if target is not None:
            target[:] = value
    return executor


def network_outputs(mx, graph, params, inputs):
    """(each input's (class probabilities (anchors, classes + 1), box offsets (anchors, 4)), the anchors) of the
    graph's network in this MXNet."""
    internals = mx.sym.load_json(json.dumps(graph)).get_internals()
    network = mx.sym.Group([internals[name] for name in deploy_graph.output_names(graph, "the MXNet 0.12 symbol")])
    executor = bound(mx, network, params, {"data": (1,) + inputs.shape[1:]})
    outputs = []
    for single in inputs:
        executor.arg_dict["data"][:] = single[None]
        class_prob, offsets, anchors = (output.asnumpy()[0] for output in executor.forward(is_train=False))
        outputs.append((class_prob.T, offsets.reshape(-1, 4)))
    return outputs, anchors.reshape(-1, 4)


def detections(mx, graph, class_probs, box_offsets, anchors):
    """The rows the graph's MultiBoxDetection keeps in this MXNet on each (class probabilities, box offsets)."""
    detection = mx.sym.load_json(json.dumps(deploy_graph.detection_graph(graph, "the MXNet 0.12 symbol")))
    shapes = {
        "class_prob": (1,) + class_probs.shape[1:][::-1],
        "box_offsets": (1, anchors.size),
        "anchors": (1,) + anchors.shape,
    }
    executor = bound(mx, detection, {}, shapes)
    executor.arg_dict["anchors"][:] = anchors[None]
    found = []
    for class_prob, offsets in zip(class_probs, box_offsets):
        executor.arg_dict["class_prob"][:] = class_prob.T[None]
        executor.arg_dict["box_offsets"][:] = offsets.reshape(1, -1)
        rows = executor.forward(is_train=False)[0].asnumpy()[0]
        found.append(rows[rows[:, 0] >= 0])
    return found


def verify(folder, out):
    import mxnet as mx

    folder = Path(folder)
    names = json.loads((folder / SUMMARY).read_text())
    graph = json.loads((folder / names["symbol"]).read_text())
    params = mx.nd.load(str(folder / names["params"]))
    reference = np.load(folder / REFERENCE)
    classes = reference["class_prob"].shape[-1] - 1
    outputs, anchors = network_outputs(mx, graph, params, reference["inputs"])
    classes = [f"class {i}" for i in range(classes)]
    comparison = proof.NetworkComparison(f"MXNet {mx.__version__}", reference["variances"], classes, "MXNet 1.9.1")
    for expected, found in zip(zip(reference["class_prob"], reference["box_offsets"]), outputs):
        comparison.add(expected, found)
    variances = reference["variances"]
    expected = np.split(reference["detections"], np.cumsum(reference["detection_counts"])[:-1])
    checked = {
        "network": comparison.result(),
        "anchors": proof.anchor_problems(
            f"MXNet {mx.__version__}", anchors, variances, reference["anchors"], variances
        ),
        "postprocessing": proof.compare_postprocessing(
            f"MXNet {mx.__version__}",
            expected,
            detections(
                mx, graph, reference["synthetic_class_prob"], reference["synthetic_box_offsets"], reference["anchors"]
            ),
        ),
    }
    result = {"mxnet_version": mx.__version__, "images": len(outputs), "proof": checked}
    Path(out).write_text(json.dumps(result, indent=1))
    problems = checked["network"]["problems"] + checked["anchors"] + checked["postprocessing"]["problems"]
    if problems:
        raise UserError(f"MXNet {mx.__version__} does not compute what MXNet 1.9.1 computes: " + "; ".join(problems))
    log(
        f"verify_mxnet012: MXNet {mx.__version__} loads the model; {proof.network_summary(checked['network'])}; "
        f"{proof.postprocessing_summary(checked['postprocessing'])}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.verify_mxnet012", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True, help="export_mxnet012's folder")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    verify(args.dir, args.out)


if __name__ == "__main__":
    run_main(main)
