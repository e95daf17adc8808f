"""Detect objects with model_float32.tflite or model_int8.tflite (made by workflow.export_litert) on images, a video
file or a camera.

Standalone (ai-edge-litert or tflite-runtime, numpy, OpenCV and infer.py beside it, for its NMS and image helpers):
it is copied next to the models in the artifact folder. The models hold the network: in, the image resized to the
input size (stretched) as RGB, NHWC (float32 0-255 for the float model, uint8 for the INT8 one; the mean is inside);
out, for each feature map i, its anchors' class probabilities ("class_prob_i", background first) and box offsets
("box_offsets_i").
infer.py's `multibox_detection` does with them what MXNet's MultiBoxDetection does (best class, top-k, decoding with
the anchors and variances of litert.contract.json, clipping, greedy NMS as the deploy model's).

    interpreter, contract = load("model_int8.tflite")
    for cls, score, xmin, ymin, xmax, ymax in detect(interpreter, frame_bgr, contract): ...

As a command (in the artifact folder):
    python litert_infer.py photo.jpg more_photos/ --model model_float32.tflite --out-dir annotated/
    python litert_infer.py --video clip.mp4 --out-dir frames/
    python litert_infer.py --camera 0 --max-frames 100
prints one JSON line of detections per image or frame and writes them with the boxes drawn.
"""

import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

if __package__:  # workflow.device.litert_infer, in the repository
    from .infer import default_threshold, multibox_detection
else:  # a file beside infer.py, in the artifact folder
    from infer import default_threshold, multibox_detection

CONTRACT = "litert.contract.json"


def load(model_path, threads=None):
    """(interpreter's signature runner, contract) of a .tflite model and the litert.contract.json beside it; threads:
    the interpreter's (default: every core this process may use)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # the older runtime, as on a Coral or a Pi image that has it
        from tflite_runtime.interpreter import Interpreter
    contract = json.loads((Path(model_path).parent / CONTRACT).read_text())
    contract["anchors"] = np.asarray(contract["anchors"], np.float32)
    threads = threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    return Interpreter(str(model_path), num_threads=threads).get_signature_runner(), contract


def network_outputs(runner, rgb, heads):
    """(class probabilities (anchors, classes + 1), box offsets (anchors, 4)) for a resized RGB uint8 image: the
    outputs of the `heads` feature maps (class_prob_i, box_offsets_i), concatenated in order."""
    detail = runner.get_input_details()["image"]
    image = rgb[np.newaxis]
    if detail["dtype"] == np.float32:
        image = image.astype(np.float32)
    elif detail["quantization"] != (1.0, 0):
        raise ValueError(f"the model's input is quantized as {detail['quantization']}; this runner feeds pixels")
    outputs = runner(image=image.astype(detail["dtype"]))
    details = runner.get_output_details()
    return tuple(
        np.concatenate([real(outputs[f"{kind}_{i}"], details[f"{kind}_{i}"])[0] for i in range(heads)])
        for kind in ("class_prob", "box_offsets")
    )


def real(values, detail):
    """A quantized output as float32 (scale * (q - zero point)); a float one as it is."""
    if detail["dtype"] == np.float32:
        return values
    scale, zero = detail["quantization"]
    return (values.astype(np.float32) - zero) * scale


def model_input(image_bgr, contract):
    """The image as the models take it: resized to the input size (stretched, bilinear), RGB uint8."""
    _, height, width, _ = contract["input_shape"]
    return cv2.cvtColor(cv2.resize(image_bgr, (width, height), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)


def detect(runner, image_bgr, contract, threshold=None):
    """[[class, score, xmin, ymin, xmax, ymax], ...] scoring at least threshold (default: the contract's)."""
    return detections(
        *network_outputs(runner, model_input(image_bgr, contract), contract["heads"]), contract, threshold
    )


def detections(class_prob, offsets, contract, threshold=None):
    """detect's rows from the network's outputs: MultiBoxDetection's post-processing (infer.py's), the threshold."""
    rows = multibox_detection(class_prob, offsets, contract["anchors"], contract["variances"], contract)
    threshold = default_threshold(contract) if threshold is None else threshold
    return [[int(row[0]), *row[1:]] for row in rows[rows[:, 1] >= threshold].tolist()]


def main(argv=None):
    from onnx_infer import frame_parser, parse_frame_args, report  # beside this file: frames, JSON lines, drawing

    here = Path(__file__).resolve().parent
    parser = frame_parser("Detect objects with a LiteRT model; JSON lines out.")
    default = here / "model_int8.tflite" if (here / "model_int8.tflite").is_file() else here / "model_float32.tflite"
    parser.add_argument("--model", default=str(default), help="default: model_int8.tflite if here, else float32")
    parser.add_argument("--threads", type=int, help="interpreter threads (default: every core)")
    args = parse_frame_args(parser, argv)
    if not Path(args.model).is_file():
        sys.exit(f"ERROR: no model at {args.model}")
    runner, contract = load(args.model, args.threads)
    report(args, lambda image: detect(runner, image, contract, args.threshold))


if __name__ == "__main__":
    main()
