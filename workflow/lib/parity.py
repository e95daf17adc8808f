"""How many of an exported model's detections pair with the MXNet deploy model's, image by image: a figure every
proof reports (verify_ir, export_onnx, export_litert, deeplens_rehearsal), not what it decides by
(workflow/lib/proof.py): near-tied boxes flip with the last bits of a float. Also the mAP rule of an export with MXNet's
own FP32 weights, and the latency helpers. Rows are [class, score, xmin, ymin, xmax, ymax], boxes normalised to [0, 1].
"""

import statistics
import time

import numpy as np

from workflow.lib.metrics import above, iou_matrix

MAP_TOLERANCE = 0.005  # an export with MXNet's own FP32 weights: its val mAP within this of MXNet's
MATCH_IOU = 0.9
BOX_TOLERANCE = 0.005
SCORE_MARGIN = 0.01
TIMED_IMAGES, WARMUP = 10, 3  # latency: the median over the first TIMED_IMAGES val images, after WARMUP runs


def unpaired(rows, pool):
    """The rows that find no partner in pool, pairing greedily by score. A partner has the same label and
    IoU >= MATCH_IOU, or corners within BOX_TOLERANCE (for thin boxes, whose IoU moves with a tiny shift)."""
    used = np.zeros(len(pool), dtype=bool)
    missing = []
    for row in rows:
        overlap = iou_matrix(row[None, 2:], pool[:, 2:])[0]
        near = np.abs(pool[:, 2:] - row[2:]).max(axis=1, initial=0) <= BOX_TOLERANCE
        candidates = np.flatnonzero((pool[:, 0] == row[0]) & ((overlap >= MATCH_IOU) | near) & ~used)
        if len(candidates):
            used[candidates[np.argmax(overlap[candidates])]] = True
        else:
            missing.append(row)
    return missing


def is_degenerate(rows, data_shape):
    """Boxes less than one input pixel wide or high: clipped to the image border, they have no usable IoU."""
    return np.minimum(rows[:, 4] - rows[:, 2], rows[:, 5] - rows[:, 3]) * data_shape < 1


def match(mxnet_rows, ir_rows, min_score, data_shape):
    """(paired count, rows only MXNet has, rows only the other model (ir_rows) has, (MXNet's, other's) degenerate
    counts) among detections scoring at least min_score. Degenerate boxes are set aside; a partner may be any
    detection of the other model scoring up to SCORE_MARGIN below min_score, so rounding at the threshold is no
    difference."""
    mxnet_kept, ir_kept = above(mxnet_rows, min_score), above(ir_rows, min_score)
    mxnet_thin, ir_thin = is_degenerate(mxnet_kept, data_shape), is_degenerate(ir_kept, data_shape)
    only_mxnet = unpaired(mxnet_kept[~mxnet_thin], above(ir_rows, min_score - SCORE_MARGIN))
    only_ir = unpaired(ir_kept[~ir_thin], above(mxnet_rows, min_score - SCORE_MARGIN))
    paired = int((~mxnet_thin).sum()) - len(only_mxnet)
    return paired, only_mxnet, only_ir, (int(mxnet_thin.sum()), int(ir_thin.sum()))


def agreement(paired, only_mxnet, only_ir):
    """The share of compared detections that paired; 1 when no detection reached the parity threshold (an
    undertrained model): then only the mAP, over every detection, compares the two."""
    compared = paired + only_mxnet + only_ir
    return float(paired / compared) if compared else 1.0


def as_rows(detections):
    """A list of [class, score, xmin, ymin, xmax, ymax] as the float32 array the pairing takes."""
    return np.array(detections, dtype=np.float32).reshape(-1, 6)


def pair_images(mxnet_all, other_all, min_score, data_shape, classes, other):
    """The pairing of another model's detections with MXNet's over every image: counts (the other's keyed by its
    name in lower case, spaces as underscores: only_ir, degenerate_litert_float32 ...), agreement, and a line for
    each detection that differs."""
    totals = np.zeros(5, dtype=int)
    differences = []
    for index, (mxnet_rows, other_rows) in enumerate(zip(mxnet_all, other_all)):
        paired, only_mxnet, only_other, degenerate = match(mxnet_rows, other_rows, min_score, data_shape)
        totals += (paired, len(only_mxnet), len(only_other), *degenerate)
        differences += [describe(index, "MXNet", row, classes) for row in only_mxnet]
        differences += [describe(index, other, row, classes) for row in only_other]
    key = other.lower().replace(" ", "_")
    return {
        "matched": int(totals[0]),
        "only_mxnet": int(totals[1]),
        f"only_{key}": int(totals[2]),
        "degenerate_mxnet": int(totals[3]),
        f"degenerate_{key}": int(totals[4]),
        "agreement": agreement(*totals[:3]),
        "differences": differences,
    }


def describe(image, model, row, classes):
    box = ", ".join(f"{value:.3f}" for value in row[2:])
    return f"val image {image}: only {model}: {classes[int(row[0])]} {row[1]:.3f} at [{box}]"


def median_ms(function, inputs):
    """The median milliseconds of function(item) over inputs, after WARMUP untimed calls."""
    for item in inputs[:WARMUP]:
        function(item)
    times = []
    for item in inputs:
        start = time.perf_counter()
        function(item)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
