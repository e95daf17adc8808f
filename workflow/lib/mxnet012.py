"""The MXNet 0.12 form of a symbol (the DeepLens' MXNet), and comparing its detections with MXNet 1.9.1's."""

import json

import numpy as np


TOLERANCE = 1e-4
# what export_mxnet012 writes beside the model and verify_mxnet012 reads
SUMMARY = "mxnet012.json"
REFERENCE = "reference.npz"


def mxnet012_symbol_json(symbol_json):
    graph = json.loads(symbol_json)
    for node in graph["nodes"]:
        if "attrs" in node:
            node["attr"] = node.pop("attrs")
    return json.dumps(graph, indent=1)


def compare(reference, mxnet012_rows, min_score):
    """Per image: the detections at or above min_score must agree in label, box and score."""
    mismatches, compared, worst = [], 0, 0.0
    for index, (want, got) in enumerate(zip(reference, mxnet012_rows)):
        want = want[(want[:, 0] >= 0) & (want[:, 1] >= min_score)]
        got = got[(got[:, 0] >= 0) & (got[:, 1] >= min_score)]
        if want.shape != got.shape:
            mismatches.append(f"image {index}: {len(want)} detections in MXNet 1.9.1, {len(got)} in MXNet 0.12")
            continue
        if not np.array_equal(want[:, 0], got[:, 0]):
            mismatches.append(
                f"image {index}: labels differ: {want[:, 0].astype(int).tolist()} vs {got[:, 0].astype(int).tolist()}"
            )
            continue
        difference = float(np.abs(want[:, 1:] - got[:, 1:]).max()) if len(want) else 0.0
        worst = max(worst, difference)
        compared += len(want)
        if difference > TOLERANCE:
            mismatches.append(f"image {index}: scores or boxes differ by {difference:.2e} (> {TOLERANCE})")
    return {
        "images": len(reference),
        "detections_compared": compared,
        "max_abs_difference": worst,
        "min_score": min_score,
        "mismatches": mismatches,
    }
