"""Detect objects with an SSD OpenVINO IR made by workflow.optimize, as the MXNet deploy model would.

Standalone (openvino, numpy, OpenCV and the standard library only): it is copied next to the IR on
the device. The IR's contract (N.contract.json beside N.xml) says how to feed it; the IR does no
non-maximum suppression, `nms` below applies the deploy symbol's (across classes when force_nms).

    compiled, contract = load("model/ssd.xml")
    for cls, score, xmin, ymin, xmax, ymax in detect(compiled, frame_bgr, contract, threshold=0.5): ...
"""
import json
from pathlib import Path

import cv2
import numpy as np
import openvino as ov


def load(xml_path, device="CPU"):
    """Compile the IR and read the contract written beside it: (compiled model, contract dict)."""
    xml_path = Path(xml_path)
    contract = json.loads(xml_path.with_suffix(".contract.json").read_text())
    core = ov.Core()
    return core.compile_model(core.read_model(xml_path), device), contract


def preprocess(image_bgr, contract):
    """An HxWx3 uint8 BGR image -> the 1x3xSxS float32 tensor the IR takes."""
    _, _, height, width = contract["input_shape"]
    image = cv2.resize(image_bgr, (width, height), interpolation=cv2.INTER_LINEAR)
    if contract["color_order"] == "RGB":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    tensor = image.astype(np.float32)
    if not contract["mean_in_ir"]:
        tensor -= np.array(contract["mean_values"], dtype=np.float32)
    return tensor.transpose(2, 0, 1)[np.newaxis]


def area(boxes):
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def iou(a, b):
    """len(a) x len(b) intersections over union of [xmin, ymin, xmax, ymax] rows, computed as MXNet does."""
    a, b = a[:, np.newaxis], b[np.newaxis]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    union = area(a) + area(b) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(detections, threshold, across_classes):
    """MultiBoxDetection's greedy NMS on rows [cls, score, xmin, ymin, xmax, ymax]: best score first, each kept
    row removes the later rows (of any class when across_classes, else of its own) with IoU >= threshold."""
    detections = detections[np.argsort(-detections[:, 1], kind="stable")]
    suppresses = iou(detections[:, 2:], detections[:, 2:]) >= threshold
    if not across_classes:
        suppresses &= detections[:, :1] == detections[:, 0]
    keep = np.ones(len(detections), dtype=bool)
    for i in range(len(detections)):
        if keep[i]:
            keep[i + 1:] &= ~suppresses[i, i + 1:]
    return detections[keep]


def raw_output(compiled, tensor):
    """The IR's rows [label, score, xmin, ymin, xmax, ymax] up to the image_id -1 end marker."""
    rows = compiled(tensor)[compiled.output(0)][0, 0]
    end = np.flatnonzero(rows[:, 0] == -1)
    return rows[:end[0] if len(end) else len(rows), 1:]


def detect(compiled, image_bgr, contract, threshold):
    """Rows [cls (0-based), score, xmin, ymin, xmax, ymax] (box normalised to [0, 1]) scoring at least
    threshold, best first: what the MXNet deploy model returns for the image."""
    candidates = raw_output(compiled, preprocess(image_bgr, contract))
    # only better-scoring rows can suppress a row, so dropping the low scores first changes nothing but the time
    candidates = candidates[candidates[:, 1] >= threshold]
    detections = nms(candidates, contract["nms_threshold"], contract["force_nms"])
    return [[int(row[0]), *row[1:]] for row in detections.tolist()]
