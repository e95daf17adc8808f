"""Detect objects with an SSD OpenVINO IR made by workflow.optimize, as the MXNet deploy model would.

Standalone (openvino, numpy, OpenCV and the standard library only): it is copied next to the IR on
the device. The IR's contract (N.contract.json beside N.xml) says how to feed it. The IR holds the network: its
outputs are every anchor's class probabilities and box offsets, and the anchors with their variances;
`multibox_detection` below does with them what the deploy graph's MultiBoxDetection does (each anchor's best class,
the threshold, the nms_topk best, decoding and clipping, NMS across classes when force_nms). litert_infer.py uses the
same post-processing.

The inference precision is always stated, never left to the CPU: OpenVINO's CPU plugin computes in bf16 by
default on CPUs with AVX512_BF16 or AMX and in f32 elsewhere, so the same IR would detect differently from one
machine to the next. The default is the contract's `inference_precision` (f32, the precision the IR was
proven at against MXNet); bf16 is the fast choice on CPUs that have it, f16 on GPUs.

Score threshold: `detect` keeps the detections scoring at least `threshold`. Without one it takes the
contract's `score_threshold`: in the artifact folder, the score that maximised F1 over the val images (written
by the artifacts stage from evaluate's metrics.json); 0.5 where the contract has none.

    compiled, contract = load("model/ssd.xml")
    for cls, score, xmin, ymin, xmax, ymax in detect(compiled, frame_bgr, contract): ...

As a command (in the artifact folder, where it is infer.py):
    python infer.py photo.jpg more_photos/ --threshold 0.5 --out-dir annotated/
prints one JSON line of detections per image and writes the images with the boxes drawn.
"""

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np


PRECISIONS = ("f32", "bf16", "f16")


def load(xml_path, device="CPU", precision=None):
    """Compile the IR at an explicit inference precision (the contract's when None) and read the contract
    written beside it: (compiled model, contract dict)."""
    xml_path = Path(xml_path)
    contract = json.loads(xml_path.with_suffix(".contract.json").read_text())
    precision = precision or contract["inference_precision"]
    if precision not in PRECISIONS:
        raise ValueError(f"inference precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    import openvino as ov  # here: the image helpers below also serve where OpenVINO is not installed (the demo)

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": precision}
    return core.compile_model(core.read_model(xml_path), device, config), contract


def precision_ran(compiled):
    """The precision the plugin really computes in ('f32', 'bf16', ...): a hint it cannot follow is replaced
    (on a CPU without AVX512_FP16, f16 runs as bf16)."""
    return compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()


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
            keep[i + 1 :] &= ~suppresses[i, i + 1 :]
    return detections[keep]


def network_outputs(compiled, tensor, contract):
    """The IR's outputs for one preprocessed image: class probabilities (anchors, classes + 1), background first;
    box offsets (anchors, 4); the anchors' corners (anchors, 4) and their variances (anchors, 4)."""
    results = compiled(tensor)
    names = contract["outputs"]
    class_prob = results[compiled.output(names["class_prob"])][0].T
    offsets = results[compiled.output(names["box_offsets"])][0].reshape(-1, 4)
    anchors, variances = results[compiled.output(names["anchors"])][0].reshape(2, -1, 4)
    return class_prob, offsets, anchors, variances


def decode(offsets, anchors, variances):
    """Boxes [xmin, ymin, xmax, ymax] from the offsets, as MultiBoxDetection's TransformLocations with clip."""
    size = anchors[:, 2:] - anchors[:, :2]
    center = (anchors[:, :2] + anchors[:, 2:]) / 2 + offsets[:, :2] * variances[..., :2] * size
    half = np.exp(offsets[:, 2:] * variances[..., 2:]) * size / 2
    return np.clip(np.concatenate([center - half, center + half], axis=1), 0, 1)


def multibox_detection(class_prob, offsets, anchors, variances, settings):
    """Rows [cls, score, xmin, ymin, xmax, ymax], best first, as MXNet's MultiBoxDetection keeps them: each anchor's
    best class other than background scoring at least settings' model_score_threshold, the nms_topk best of them,
    decoded, then NMS at nms_threshold (across classes when force_nms)."""
    foreground = class_prob[:, 1:]
    label, score = foreground.argmax(axis=1), foreground.max(axis=1)
    candidates = np.flatnonzero(score >= settings["model_score_threshold"])
    candidates = candidates[np.argsort(-score[candidates], kind="stable")]
    if settings["nms_topk"] > 0:
        candidates = candidates[: settings["nms_topk"]]
    variances = np.asarray(variances, np.float32)
    boxes = decode(
        offsets[candidates], anchors[candidates], variances[candidates] if variances.ndim == 2 else variances
    )
    rows = np.column_stack([label[candidates], score[candidates], boxes]).astype(np.float32)
    return nms(rows, settings["nms_threshold"], settings["force_nms"])


FALLBACK_THRESHOLD = 0.5


def default_threshold(contract):
    """The contract's score_threshold (chosen on val), else FALLBACK_THRESHOLD."""
    return contract.get("score_threshold", FALLBACK_THRESHOLD)


def detect(compiled, image_bgr, contract, threshold=None):
    """Rows [cls (0-based), score, xmin, ymin, xmax, ymax] (box normalised to [0, 1]) scoring at least
    threshold (default_threshold(contract) when None), best first: what the MXNet deploy model returns."""
    threshold = default_threshold(contract) if threshold is None else threshold
    rows = multibox_detection(*network_outputs(compiled, preprocess(image_bgr, contract), contract), contract)
    return [[int(row[0]), *row[1:]] for row in rows[rows[:, 1] >= threshold].tolist()]


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def image_paths(items):
    paths = []
    for item in map(Path, items):
        if item.is_dir():
            paths += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            paths.append(item)
        else:
            sys.exit(f"ERROR: {item}: no such image or folder")
    return paths


def draw(image_bgr, detections, labels):
    height, width = image_bgr.shape[:2]
    for cls, score, *box in detections:
        colour = tuple(
            int(c) for c in cv2.cvtColor(np.uint8([[[(cls * 47) % 180, 220, 230]]]), cv2.COLOR_HSV2BGR)[0, 0]
        )
        x1, y1, x2, y2 = (int(round(v * s)) for v, s in zip(box, (width, height, width, height)))
        cv2.rectangle(image_bgr, (x1, y1), (x2, y2), colour, 2)
        cv2.putText(
            image_bgr,
            f"{labels[cls]} {score:.2f}",
            (x1 + 2, max(y1 - 4, 12)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            colour,
            1,
            cv2.LINE_AA,
        )
    return image_bgr


def main(argv=None):
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description="Detect objects in images with the IR; JSON lines out.")
    parser.add_argument("images", nargs="+", help="images or folders")
    parser.add_argument("--model", default=str(here / "model.xml"))
    parser.add_argument("--labels", default=str(here / "labels.txt"))
    parser.add_argument(
        "--threshold",
        type=float,
        help="lowest score kept (default: the contract's score_threshold, chosen on val; else 0.5)",
    )
    parser.add_argument("--device", default="CPU")
    parser.add_argument(
        "--precision-hint",
        choices=PRECISIONS,
        help="inference precision (default: the contract's, f32, as proven against MXNet; bf16 is "
        "faster on CPUs with AVX512_BF16 or AMX, f16 on GPUs)",
    )
    parser.add_argument("--out-dir", help="write the images with their detections drawn here")
    args = parser.parse_args(argv)
    compiled, contract = load(args.model, args.device, args.precision_hint)
    print(f"{args.model} on {args.device}, computing in {precision_ran(compiled)}", file=sys.stderr, flush=True)
    labels = Path(args.labels).read_text(encoding="utf-8").splitlines()  # a name a line: names may hold spaces
    if args.out_dir:
        Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    for path in image_paths(args.images):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if image is None:
            print(json.dumps({"image": str(path), "error": "not a readable image"}), flush=True)
            continue
        detections = detect(compiled, image, contract, args.threshold)
        print(
            json.dumps(
                {
                    "image": str(path),
                    "detections": [
                        {"label": labels[cls], "score": round(score, 4), "box": [round(v, 4) for v in box]}
                        for cls, score, *box in detections
                    ],
                }
            ),
            flush=True,
        )
        if args.out_dir:
            cv2.imwrite(str(Path(args.out_dir) / f"{path.stem}.jpg"), draw(image, detections, labels))


if __name__ == "__main__":
    main()
