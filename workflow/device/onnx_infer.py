"""Detect objects with model.onnx (made by workflow.export_onnx) on images, a video file or a camera.

Standalone (onnxruntime, numpy, OpenCV and infer.py beside it, for its image helpers): it is copied next to
model.onnx in the artifact folder. The caller resizes the image to the input size (stretched) and passes it as RGB
float32 0-255; the mean, the box decoding and the non-maximum suppression are inside the model. The contract
(model.onnx.contract.json) says so, with the score threshold chosen on val (score_threshold; 0.5 where none was).

    session, contract = load("model.onnx")
    for cls, score, xmin, ymin, xmax, ymax in detect(session, frame_bgr, contract): ...

As a command (in the artifact folder):
    python onnx_infer.py photo.jpg more_photos/ --out-dir annotated/
    python onnx_infer.py --video clip.mp4 --out-dir frames/
    python onnx_infer.py --camera 0 --max-frames 100
prints one JSON line of detections per image or frame and writes them with the boxes drawn.
"""

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np


def load(model_path, providers=("CPUExecutionProvider",)):
    """(onnxruntime session, contract) of model.onnx and the contract beside it."""
    import onnxruntime as ort  # here: the module is imported for its helpers where onnxruntime is not installed

    model_path = Path(model_path)
    contract = json.loads(model_path.with_suffix(".onnx.contract.json").read_text())
    return ort.InferenceSession(str(model_path), providers=list(providers)), contract


def preprocess(image_bgr, contract):
    """The model's input: the image resized to the input size (stretched, bilinear), RGB float32 0-255, NCHW."""
    _, _, height, width = contract["input_shape"]
    rgb = cv2.cvtColor(cv2.resize(image_bgr, (width, height), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(rgb.astype(np.float32).transpose(2, 0, 1)[None])


def detect(session, image_bgr, contract, threshold=None):
    """[[class, score, xmin, ymin, xmax, ymax], ...] scoring at least threshold (default: the contract's)."""
    rows = session.run(None, {contract["input"]: preprocess(image_bgr, contract)})[0]
    threshold = contract.get("score_threshold", 0.5) if threshold is None else threshold
    return [[int(row[0]), *row[1:]] for row in rows[rows[:, 1] >= threshold].tolist()]


def frames(args):
    """(name, BGR image or None) from the images, the video file or the camera."""
    from infer import image_paths  # beside this file in the artifact folder; detect() alone does not need it

    if args.video or args.camera is not None:
        source = args.video if args.video else args.camera
        capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            sys.exit(f"ERROR: cannot open {'video ' + args.video if args.video else f'camera {args.camera}'}")
        count = 0
        while args.max_frames is None or count < args.max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            count += 1
            yield f"frame_{count:06d}.jpg", frame
        capture.release()
        return
    for path in image_paths(args.images):
        yield str(path), cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)


def frame_parser(description):
    """A command's arguments for where the frames come from, the labels, the threshold and the drawn output; the
    caller adds its --model (and its own options)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("images", nargs="*", help="images or folders")
    parser.add_argument("--video", help="a video file instead of images")
    parser.add_argument("--camera", type=int, help="a camera index (OpenCV) instead of images")
    parser.add_argument("--max-frames", type=int, help="stop after this many video or camera frames")
    parser.add_argument("--labels", default=str(Path(__file__).resolve().parent / "labels.txt"))
    parser.add_argument("--threshold", type=float, help="lowest score kept (default: the contract's, else 0.5)")
    parser.add_argument("--out-dir", help="write the images or frames with their detections drawn here")
    return parser


def parse_frame_args(parser, argv):
    args = parser.parse_args(argv)
    if not args.images and not args.video and args.camera is None:
        parser.error("give images or folders, --video or --camera")
    return args


def report(args, detect_frame):
    """One JSON line of detect_frame(image)'s detections per frame, and the frames drawn in --out-dir."""
    from infer import draw  # beside this file in the artifact folder

    labels = Path(args.labels).read_text(encoding="utf-8").splitlines()  # a name a line: names may hold spaces
    if args.out_dir:
        Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    for name, image in frames(args):
        if image is None:
            print(json.dumps({"image": name, "error": "not a readable image"}), flush=True)
            continue
        detections = detect_frame(image)
        found = [
            {"label": labels[cls], "score": round(score, 4), "box": [round(v, 4) for v in box]}
            for cls, score, *box in detections
        ]
        print(json.dumps({"image": name, "detections": found}), flush=True)
        if args.out_dir:
            cv2.imwrite(str(Path(args.out_dir) / Path(name).name), draw(image, detections, labels))


def main(argv=None):
    parser = frame_parser("Detect objects with model.onnx; JSON lines out.")
    parser.add_argument("--model", default=str(Path(__file__).resolve().parent / "model.onnx"))
    args = parse_frame_args(parser, argv)
    session, contract = load(args.model)
    report(args, lambda image: detect(session, image, contract, args.threshold))


if __name__ == "__main__":
    main()
