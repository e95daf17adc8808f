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

from workflow.device.infer import image_paths
from workflow.lib.cli import UserError, run_main
from workflow.lib.detector import Detector
from workflow.lib.drawing import ground_truth_rows, render
from workflow.lib.images import ImageProblem, load_rgb
from workflow.lib.metrics import above

MAX_PIXELS = 50_000_000


def run_demo(detector, paths, truths, threshold, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = detector.info["classes"]
    written = []
    for index, (path, truth) in enumerate(zip(paths, truths)):
        try:
            rgb = load_rgb(path, MAX_PIXELS)
        except ImageProblem as error:
            raise UserError(f"{path}: {error}") from None
        rows = above(detector.detect([rgb])[0], threshold)
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
