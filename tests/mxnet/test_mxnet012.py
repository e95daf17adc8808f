import json

import numpy as np

from workflow.lib.mxnet012 import compare, mxnet012_symbol_json


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


def detections(*rows):
    padded = list(rows) + [[-1, 0, 0, 0, 0, 0]] * 3
    return np.array([padded], dtype=np.float32)


def test_compare_accepts_tiny_differences_and_reports_real_ones():
    reference = detections([0, 0.9, 0.1, 0.1, 0.5, 0.5], [1, 0.02, 0.2, 0.2, 0.3, 0.3])
    close = reference.copy()
    close[0, 0, 1] += 5e-5
    result = compare(reference, close, min_score=0.05)
    assert result["mismatches"] == [] and result["detections_compared"] == 1
    other_label = reference.copy()
    other_label[0, 0, 0] = 1
    assert compare(reference, other_label, 0.05)["mismatches"] == ["image 0: labels differ: [0] vs [1]"]
    assert "1 detections in MXNet 1.9.1, 0 in MXNet 0.12" in compare(reference, reference * 0, 0.05)["mismatches"][0]
    moved = reference.copy()
    moved[0, 0, 2] += 0.01
    assert "differ by 1.00e-02" in compare(reference, moved, 0.05)["mismatches"][0]
