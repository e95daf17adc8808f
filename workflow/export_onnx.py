"""export_onnx: the deploy model as ONNX with NMS inside, and the proof that onnxruntime detects what MXNet detects.

Writes model.onnx (opset 13: workflow/lib/onnx_graph.py says how it is made), model.onnx.contract.json (what a caller
feeds and gets back) and verify.json; and network.onnx with network.onnx.contract.json, the same network without
MultiBoxDetection (class probabilities and box offsets out, the anchors in the contract) for converters that take the
post-processing outside: export_litert converts it and proves what it makes against MXNet.

On every val image, onnxruntime (CPU) runs model.onnx through onnx_infer.py (the code shipped beside it) and MXNet runs
the deploy model; their detections at or above the parity threshold must pair (workflow/lib/parity.py, as the IR's do)
for at least MIN_AGREEMENT of them, and, with the same FP32 weights, the mAPs must agree within MAP_TOLERANCE;
otherwise the stage fails and the differences file lists the detections that differ. Both are timed per image (resize
and inference; NMS is inside both graphs), median after warm-up.
"""

import argparse
import json
import time
from pathlib import Path

import cv2
import mxnet as mx
import onnx
import onnxruntime as ort

from workflow.device import onnx_infer
from workflow.lib import onnx_graph
from workflow.lib.cli import Progress, UserError, log, run_main
from workflow.lib.detector import Detector, read_records
from workflow.lib.metrics import evaluate_detections
from workflow.lib.networks import MEAN_RGB, VARIANCES
from workflow.lib.parity import MAP_TOLERANCE, MATCH_IOU, MIN_AGREEMENT, TIMED_IMAGES, as_rows, median_ms, pair_images


def contract(info):
    size = info["data_shape"]
    return {
        "model": "model.onnx",
        "opset": onnx_graph.OPSET,
        "input": onnx_graph.INPUT,
        "input_shape": [1, 3, size, size],
        "layout": "NCHW",
        "color_order": "RGB",
        "input_range": "float32 0-255: the image resized to the input size (stretched, aspect ratio not kept)",
        "mean_values": list(MEAN_RGB),
        "mean_in_model": True,
        "scale": None,
        "output": onnx_graph.OUTPUT,
        "output_rows": "[n, 6] rows (class id, score, xmin, ymin, xmax, ymax), boxes normalised to [0, 1], best first",
        "labels": info["classes"],
        "nms_in_model": True,
        "force_nms": info["force_nms"],
        "nms_threshold": info["nms_threshold"],
        "nms_topk": info["nms_topk"],
        "model_score_threshold": info["threshold"],
    }


def network_contract(info, anchors, heads):
    """The contract of network.onnx: model.onnx's input, the post-processing's settings and the anchors."""
    outputs = ("output", "output_rows", "nms_in_model")
    return {
        **{key: value for key, value in contract(info).items() if key not in outputs},
        "model": "network.onnx",
        "heads": heads,
        "outputs": "for each feature map i, largest first: class_prob_i (1, anchors_i, classes + 1), the softmax over "
        "the classes, background first; box_offsets_i (1, anchors_i, 4), decoded with the anchors and the variances. "
        "Concatenated over i they pair with the anchors, in order",
        "nms_in_model": False,
        "variances": list(VARIANCES),
        "anchors": anchors.tolist(),
    }


def prove(detector, model_path, val_rec, min_score, iou_threshold):
    """verify.json's content: pairing, mAPs and latency of onnxruntime against MXNet on every val image."""
    runtime, contract = onnx_infer.load(model_path)
    size = detector.data_shape
    records = list(read_records(val_rec))
    images_bgr = [cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) for rgb, _ in records]
    progress = Progress("export_onnx (onnxruntime and MXNet)", len(records))
    mxnet_all, onnx_all = [], []
    for index, (rgb, _) in enumerate(records):
        mxnet_all.append(detector.detect([rgb])[0])
        onnx_all.append(as_rows(onnx_infer.detect(runtime, images_bgr[index], contract, 0.0)))
        progress.update(index + 1)
    truths, classes = [truth for _, truth in records], len(detector.info["classes"])
    mxnet_map = evaluate_detections(truths, mxnet_all, classes, iou_threshold).map_voc07
    onnx_map = evaluate_detections(truths, onnx_all, classes, iou_threshold).map_voc07
    paired = pair_images(mxnet_all, onnx_all, min_score, size, detector.info["classes"], "ONNX")
    timed = list(range(min(TIMED_IMAGES, len(records))))
    return {
        "images": len(records),
        "min_score": min_score,
        "match_iou": MATCH_IOU,
        "min_agreement": MIN_AGREEMENT,
        "map_tolerance": MAP_TOLERANCE,
        **paired,
        "mxnet_map_voc07": mxnet_map,
        "onnx_map_voc07": onnx_map,
        "map_difference": abs(onnx_map - mxnet_map),
        "latency": {
            "onnxruntime_ms": median_ms(lambda i: onnx_infer.detect(runtime, images_bgr[i], contract, 0.0), timed),
            "mxnet_ms": median_ms(lambda i: detector.detect([records[i][0]]), timed),
            "images_timed": len(timed),
            "onnxruntime": ort.__version__,
        },
    }


def summary(result):
    return (
        f"{result['matched']} detections paired ({result['agreement']:.1%}), {result['only_mxnet']} only in MXNet, "
        f"{result['only_onnx']} only in ONNX; mAP {result['onnx_map_voc07']:.4f} vs MXNet's "
        f"{result['mxnet_map_voc07']:.4f}"
    )


def check(result, differences_path):
    problems = []
    if result["map_difference"] > MAP_TOLERANCE:
        problems.append(f"its mAP differs from MXNet's by {result['map_difference']:.4f} (> {MAP_TOLERANCE})")
    if result["agreement"] < MIN_AGREEMENT:
        problems.append(f"agreement {result['agreement']:.3f} < {MIN_AGREEMENT}")
    if problems:
        raise UserError(
            f"model.onnx does not reproduce the MXNet model: {'; '.join(problems)} (the detections that differ are "
            f"listed in {differences_path})"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.export_onnx", description=__doc__.split("\n\n")[0])
    parser.add_argument("--deploy", required=True, help="deploy.json of the MXNet deploy model")
    parser.add_argument("--val-rec", required=True)
    parser.add_argument("--min-score", type=float, required=True, help="compare detections scoring at least this")
    parser.add_argument("--iou-threshold", type=float, required=True, help="of a correct detection in the mAP")
    parser.add_argument(
        "--out-dir", required=True, help="folder for model.onnx, network.onnx, their contracts, verify.json"
    )
    parser.add_argument("--differences", required=True, help="text file listing the detections that differ (a log)")
    args = parser.parse_args(argv)
    detector = Detector(args.deploy)
    info, out = detector.info, Path(args.out_dir)
    folder = Path(args.deploy).parent
    symbol = mx.sym.load(str(folder / info["symbol"]))
    arg_params, aux_params = mx.model.load_params(str(folder / info["params"].rsplit("-", 1)[0]), info["epoch"])
    started = time.monotonic()
    model = onnx_graph.build(symbol, arg_params, aux_params, info)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out / "model.onnx"))
    (out / "model.onnx.contract.json").write_text(json.dumps(contract(info), indent=1))
    network, anchors = onnx_graph.build_network(symbol, arg_params, aux_params, info)
    onnx.save(network, str(out / "network.onnx"))
    heads = len(network.graph.output) // 2
    (out / "network.onnx.contract.json").write_text(json.dumps(network_contract(info, anchors, heads)))
    seconds = time.monotonic() - started
    log(f"export_onnx: {out / 'model.onnx'} (opset {onnx_graph.OPSET}, NMS inside) in {seconds:.1f} s")
    result = prove(detector, out / "model.onnx", args.val_rec, args.min_score, args.iou_threshold)
    Path(args.differences).write_text("\n".join([f"# {summary(result)}", *result["differences"]]) + "\n")
    log(f"export_onnx: {summary(result)}")
    latency = result["latency"]
    log(
        f"export_onnx: per image (resize + inference + NMS): onnxruntime {latency['onnxruntime_ms']:.1f} ms, "
        f"MXNet {latency['mxnet_ms']:.1f} ms"
    )
    check(result, args.differences)
    (out / "verify.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    run_main(main)
