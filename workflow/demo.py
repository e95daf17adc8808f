"""demo: draw a model's detections on images, beside the ground truth where there is one.

In the workflow it draws the first val images; by hand it works on any image or folder:
    .venv/bin/python -m workflow.orchestrator.envs exec mxnet -- \
        python -m workflow.demo --deploy results/sample/deploy/deploy.json \
        --images photo.jpg more_photos/ --threshold 0.5 --out-dir /tmp/demo
printing one JSON line of detections per image.
"""

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from workflow.device.infer import image_paths
from workflow.lib.cli import UserError, run_main
from workflow.lib.detector import Detector
from workflow.lib.images import ImageProblem, load_rgb

MAX_PIXELS = 50_000_000
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


def run_demo(detector, paths, truths, threshold, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = detector.info["classes"]
    written = []
    for index, (path, truth) in enumerate(zip(paths, truths)):
        try:
            rgb = load_rgb(path, MAX_PIXELS)
        except ImageProblem as error:
            raise UserError(f"{path}: {error}") from None
        rows = detector.detect([rgb])[0]
        rows = rows[rows[:, 1] >= threshold]
        name = f"{index:02d}_{Path(path).stem}.jpg"
        picture = render(rgb, rows, truth, classes, (f"detections, score >= {threshold:g}", "ground truth"))
        cv2.imwrite(str(out_dir / name), picture, [cv2.IMWRITE_JPEG_QUALITY, 90])
        found = [
            {"class": classes[int(r[0])], "score": round(float(r[1]), 4), "box": [round(float(v), 4) for v in r[2:]]}
            for r in rows
        ]
        print(json.dumps({"image": str(path), "output": str(out_dir / name), "detections": found}), flush=True)
        written.append(
            {
                "image": str(path),
                "output": name,
                "detections": len(found),
                "ground_truth": None if truth is None else len(truth),
            }
        )
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--deploy", required=True, help="deploy.json of the model")
    parser.add_argument("--images", nargs="+", help="images or folders to run on")
    parser.add_argument("--annotations", help="checked annotations.json (with --ids: draw the ground truth too)")
    parser.add_argument("--ids", help="list of image ids to draw, e.g. the val split")
    parser.add_argument("--count", type=int, help="with --ids: how many of them to draw")
    parser.add_argument("--threshold", type=float, required=True, help="draw the detections scoring at least this")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--index", help="demo.json to write, listing the images drawn")
    args = parser.parse_args(argv)
    detector = Detector(args.deploy)
    if args.images:
        paths = image_paths(args.images)
        truths = [None] * len(paths)
    elif args.annotations and args.ids and args.count is not None:
        by_id = {r["id"]: r for r in json.loads(Path(args.annotations).read_text())}
        chosen = [by_id[i] for i in Path(args.ids).read_text().splitlines()[: args.count]]
        paths, truths = [r["image"] for r in chosen], [ground_truth_rows(r) for r in chosen]
    else:
        raise UserError("give --images, or --annotations with --ids and --count")
    written = run_demo(detector, paths, truths, args.threshold, Path(args.out_dir))
    if args.index:
        Path(args.index).write_text(json.dumps({"threshold": args.threshold, "images": written}, indent=1))


if __name__ == "__main__":
    run_main(main)
