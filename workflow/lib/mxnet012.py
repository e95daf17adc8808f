"""The MXNet 0.12 form of a symbol (the DeepLens' MXNet), and the files export_mxnet012 writes for verify_mxnet012."""

import json


# what export_mxnet012 writes beside the model and verify_mxnet012 reads
SUMMARY = "mxnet012.json"
REFERENCE = "reference.npz"


def mxnet012_symbol_json(symbol_json):
    graph = json.loads(symbol_json)
    for node in graph["nodes"]:
        if "attrs" in node:
            node["attr"] = node.pop("attrs")
    return json.dumps(graph, indent=1)
