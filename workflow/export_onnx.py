"""export_onnx: the deploy model as ONNX with NMS inside, and the proof that onnxruntime detects what MXNet detects.

Writes model.onnx (opset 13: workflow/lib/onnx_graph.py says how it is made), model.onnx.contract.json (what a caller
feeds and gets back) and verify.json; and network.onnx with network.onnx.contract.json, the same network without
MultiBoxDetection (class probabilities and box offsets out, the anchors in the contract) for converters that take the
post-processing outside: export_litert converts it and proves what it makes against MXNet.

The proof (workflow/lib/proof.py; docs/numbers.md, "The proofs"): on every val image, fed through onnx_infer.py (the
code shipped beside it) to onnxruntime (CPU), model.onnx's network (its class probabilities and box offsets, where its
post-processing starts) must compute MXNet's within proof.NETWORK_TOLERANCE; its post-processing alone (the graph from
there on, anchors and NMS inside) must keep on synthetic network outputs the detections the deploy graph's
MultiBoxDetection keeps on them; its contract must carry the deploy model's settings and class names; and, the same
FP32 weights, its val mAP must be within MAP_TOLERANCE of MXNet's. Otherwise the stage fails naming what differs.
Reported: the detections that pair with MXNet's at the parity threshold (the differences file lists the others), and
the time per image of both (resize and inference; NMS is inside both graphs), median after warm-up.
"""

import argparse
import json
import time
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import onnx
import onnxruntime as ort

from workflow.device import onnx_infer
from workflow.lib import onnx_graph, proof
from workflow.lib.cli import Progress, UserError, log, run_main
from workflow.lib.detector import Detector, read_records
from workflow.lib.metrics import evaluate_detections
from workflow.lib.networks import MEAN_RGB, VARIANCES
from workflow.lib.parity import MAP_TOLERANCE, MATCH_IOU, TIMED_IMAGES, as_rows, median_ms, pair_images


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


ONNXRUNTIME_ERRORS = tuple(
    getattr(ort.capi.onnxruntime_pybind11_state, name) for name in ("Fail", "InvalidArgument", "RuntimeException")
)


def session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def prove(detector, model_path, val_rec, min_score, iou_threshold):
    """verify.json's content: the proof (network, post-processing, contract) and, reported, the pairing, mAPs and
    latency of onnxruntime against MXNet on every val image."""
    model = onnx.load(str(model_path))
    network, network_names = onnx_graph.with_network_outputs(model)
    try:
        runtime, contract = onnx_infer.load(model_path)
        network_runtime = session(network)
    except ONNXRUNTIME_ERRORS as error:  # e.g. anchors of another input size
        raise UserError(f"onnxruntime cannot run model.onnx: {error}") from None
    records = list(read_records(val_rec))
    images_bgr = [cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) for rgb, _ in records]
    classes = detector.info["classes"]
    comparison = proof.NetworkComparison("model.onnx", VARIANCES, classes)
    progress = Progress("export_onnx (onnxruntime and MXNet)", len(records))
    mxnet_all, onnx_all = [], []
    for index, (rgb, _) in enumerate(records):
        mxnet_all.append(detector.detect([rgb])[0])
        rows, class_prob, offsets = network_runtime.run(
            [onnx_graph.OUTPUT, *network_names], {contract["input"]: onnx_infer.preprocess(images_bgr[index], contract)}
        )
        onnx_all.append(as_rows(rows))
        comparison.add(detector.network_outputs(rgb), (class_prob[0].T, offsets[0].reshape(-1, 4)))
        progress.update(index + 1)
    truths = [truth for _, truth in records]
    mxnet_map = evaluate_detections(truths, mxnet_all, len(classes), iou_threshold).map_voc07
    onnx_map = evaluate_detections(truths, onnx_all, len(classes), iou_threshold).map_voc07
    timed = list(range(min(TIMED_IMAGES, len(records))))
    return {
        "images": len(records),
        "proof": {
            "network": comparison.result(),
            "postprocessing": postprocessing_check(detector, model),
            "settings": proof.settings_problems("model.onnx's contract", contract, detector.contract_settings()),
        },
        "min_score": min_score,
        "match_iou": MATCH_IOU,
        "map_tolerance": MAP_TOLERANCE,
        **pair_images(mxnet_all, onnx_all, min_score, detector.data_shape, classes, "ONNX"),
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


def postprocessing_check(detector, model):
    """model.onnx's post-processing alone (its anchors, decoding and NMS inside) against the deploy graph's
    MultiBoxDetection, on the same synthetic network outputs (the class predictions fed as the logarithms of the
    probabilities, which its softmax turns back into them)."""
    postprocessing, (class_input, offsets_input) = onnx_graph.postprocessing_model(model)
    runtime = session(postprocessing)
    synthetic = proof.synthetic_outputs(detector.anchors, VARIANCES, len(detector.info["classes"]), detector.settings)
    expected, found = [], []
    for class_prob, offsets in synthetic:
        expected.append(detector.postprocess(class_prob, offsets))
        inputs = {class_input: np.log(class_prob).T[np.newaxis], offsets_input: offsets.reshape(1, -1)}
        try:
            found.append(runtime.run([onnx_graph.OUTPUT], inputs)[0])
        except ONNXRUNTIME_ERRORS as error:
            raise UserError(f"model.onnx's post-processing fails on MXNet's network outputs: {error}") from None
    return proof.compare_postprocessing("model.onnx", expected, found)


def problems(result):
    """Every problem the proof found, and the mAP rule's."""
    checked = result["proof"]
    found = checked["network"]["problems"] + checked["postprocessing"]["problems"] + checked["settings"]
    if result["map_difference"] > MAP_TOLERANCE:
        found.append(f"its mAP differs from MXNet's by {result['map_difference']:.4f} (> {MAP_TOLERANCE})")
    return found


def summary(result):
    return (
        f"{proof.network_summary(result['proof']['network'])}; "
        f"{proof.postprocessing_summary(result['proof']['postprocessing'])}; reported: "
        f"{result['matched']} detections paired ({result['agreement']:.1%}), {result['only_mxnet']} only in MXNet, "
        f"{result['only_onnx']} only in ONNX; mAP {result['onnx_map_voc07']:.4f} vs MXNet's "
        f"{result['mxnet_map_voc07']:.4f}"
    )


def check(result, differences_path):
    found = problems(result)
    if found:
        raise UserError(
            f"model.onnx does not compute what the MXNet model computes: {'; '.join(found)} (the detections that "
            f"differ at the parity threshold are listed in {differences_path})"
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
