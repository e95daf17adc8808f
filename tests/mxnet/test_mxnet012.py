import json

from workflow.lib.mxnet012 import mxnet012_symbol_json


def test_node_attrs_are_renamed_for_mxnet_012():
    graph = {
        "nodes": [
            {"op": "null", "name": "data", "inputs": []},
            {"op": "SoftmaxActivation", "name": "s", "attrs": {"mode": "channel"}, "inputs": [[0, 0, 0]]},
        ],
        "arg_nodes": [0],
        "heads": [[1, 0, 0]],
        "attrs": {"mxnet_version": ["int", 10901]},
    }
    legacy = json.loads(mxnet012_symbol_json(json.dumps(graph)))
    assert legacy["nodes"][1]["attr"] == {"mode": "channel"} and "attrs" not in legacy["nodes"][1]
    assert legacy["attrs"] == graph["attrs"]
