"""Detections and ground truth drawn on images: the demo's and the report's worst images."""

import cv2
import numpy as np


CAPTION_HEIGHT = 24


def class_colour(class_id):
    hue = (class_id * 47) % 180
    bgr = cv2.cvtColor(np.uint8([[[hue, 220, 230]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return tuple(int(c) for c in bgr)


def draw_boxes(bgr, rows, classes, with_score):
    """rows: [cls, score, xmin, ymin, xmax, ymax] normalised (score ignored for ground truth)."""
    height, width = bgr.shape[:2]
    thickness = max(1, round(max(height, width) / 250))
    for cls, score, *box in rows:
        colour = class_colour(int(cls))
        x1, y1, x2, y2 = (int(round(v * s)) for v, s in zip(box, (width, height, width, height)))
        cv2.rectangle(bgr, (x1, y1), (x2, y2), colour, thickness)
        text = f"{classes[int(cls)]} {score:.2f}" if with_score else classes[int(cls)]
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, 1)
        top = max(y1, th + 4)
        cv2.rectangle(bgr, (x1, top - th - 4), (x1 + tw + 4, top), colour, -1)
        cv2.putText(bgr, text, (x1 + 2, top - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, (0, 0, 0), 1, cv2.LINE_AA)
    return bgr


def caption(bgr, text):
    """The picture under a white band holding the text, so that the text hides no box."""
    band = np.full((CAPTION_HEIGHT, bgr.shape[1], 3), 255, np.uint8)
    cv2.putText(band, text, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([band, bgr])


def render(rgb, detections, ground_truth, classes, captions=("detections", "ground truth")):
    """BGR picture of the detections (left) beside the ground truth (right) when there is one.

    The one place where the workflow draws boxes: the demo and evaluate's worst images.
    """
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    left = caption(draw_boxes(bgr.copy(), detections, classes, with_score=True), captions[0])
    if ground_truth is None:
        return left
    right = caption(draw_boxes(bgr.copy(), ground_truth, classes, with_score=False), captions[1])
    return np.hstack([left, np.full((left.shape[0], 4, 3), 255, np.uint8), right])


def ground_truth_rows(record):
    """Drawing rows of a checked annotation record (pixel boxes)."""
    w, h = record["width"], record["height"]
    return [
        [o["class"], 1.0, o["box"][0] / w, o["box"][1] / h, o["box"][2] / w, o["box"][3] / h] for o in record["objects"]
    ]


def truth_rows(label_rows):
    """Drawing rows of a packed record's ground truth [cls, xmin, ymin, xmax, ymax, difficult] (normalised)."""
    return [[row[0], 1.0, *row[1:5]] for row in label_rows]
