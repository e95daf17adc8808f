"""The deploy graph (a symbol JSON, MXNet 1.x or 0.12 form) in its two parts: the network, whose outputs are the
inputs of the graph's one MultiBoxDetection node (class probabilities, box offsets, anchors), and that node.

JSON only, so that MXNet 0.12's environment and the Model Optimizer's use it as MXNet 1.9.1's does.
"""

import json

from workflow.lib.cli import UserError

DETECTION_OP = "_contrib_MultiBoxDetection"
NETWORK_OUTPUTS = ("class_prob", "box_offsets", "anchors")  # the node's inputs, in order
MXNET_DEFAULTS = {"force_suppress": "False", "nms_threshold": "0.5", "nms_topk": "-1", "threshold": "0.01"}
MXNET_DEFAULTS["variances"] = "(0.1, 0.1, 0.2, 0.2)"


def attributes(node):
    """A node's attributes: MXNet 1.x writes them as "attrs", MXNet 0.12 as "attr"."""
    return node.setdefault("attr" if "attr" in node else "attrs", {})


def detection_index(graph, where):
    """The index of the graph's one MultiBoxDetection node, which must be its last node and only output."""
    indices = [i for i, node in enumerate(graph.get("nodes", [])) if node.get("op") == DETECTION_OP]
    if len(indices) != 1:
        raise UserError(f"{where} has {len(indices)} MultiBoxDetection nodes; an SSD deploy symbol has one")
    if indices[0] != len(graph["nodes"]) - 1 or [head[0] for head in graph["heads"]] != indices:
        raise UserError(f"{where}: its MultiBoxDetection is not the graph's output; not a deploy symbol")
    return indices[0]


def detection_attributes(graph, where):
    """The attributes of the graph's MultiBoxDetection (a dict that can be edited in place)."""
    return attributes(graph["nodes"][detection_index(graph, where)])


def settings(graph, where):
    """The post-processing MultiBoxDetection does, from its attributes (MXNet's defaults where absent), in the
    contracts' names: force_nms, nms_threshold, nms_topk, model_score_threshold, variances."""
    attrs = {**MXNET_DEFAULTS, **detection_attributes(graph, where)}
    return {
        "force_nms": attrs["force_suppress"].strip().lower() in ("true", "1"),
        "nms_threshold": float(attrs["nms_threshold"]),
        "nms_topk": int(attrs["nms_topk"]),
        "model_score_threshold": float(attrs["threshold"]),
        "variances": [float(v) for v in attrs["variances"].strip("()[] ").split(",") if v.strip()],
    }


def output_names(graph, where):
    """The names MXNet gives the network's outputs (get_internals()[name]): class probabilities, box offsets,
    anchors."""
    node = graph["nodes"][detection_index(graph, where)]
    return [f"{graph['nodes'][entry[0]]['name']}_output" for entry in node["inputs"]]


def network_graph(graph, where):
    """The graph without its MultiBoxDetection: its outputs are what the node took."""
    index = detection_index(graph, where)
    network = json.loads(json.dumps(graph))
    network["heads"] = [list(entry) for entry in network["nodes"][index]["inputs"]]
    del network["nodes"][index]
    if "node_row_ptr" in network:
        del network["node_row_ptr"][-1]
    return network


def detection_graph(graph, where):
    """The graph's MultiBoxDetection alone, its inputs the variables class_prob, box_offsets and anchors."""
    node = dict(graph["nodes"][detection_index(graph, where)])
    variables = [{"op": "null", "name": name, "inputs": []} for name in NETWORK_OUTPUTS]
    node["inputs"] = [[i, 0, 0] for i in range(len(variables))]
    alone = {"nodes": [*variables, node], "arg_nodes": list(range(len(variables))), "heads": [[len(variables), 0, 0]]}
    if "attrs" in graph:
        alone["attrs"] = graph["attrs"]
    return alone
