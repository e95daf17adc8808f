"""verify_ir: proof that the OpenVINO IR detects what the MXNet deploy model detects, and how fast.

On every val image: the IR through its input contract (workflow/device/infer.py, the code shipped to the
device, NMS across classes when force_nms) and the MXNet deploy model. The proof runs the IR at the
contract's inference precision (f32), so it checks the conversion and the stored weights and means the same
on every CPU. Detections at or above the parity threshold must pair up (same label, IoU >= MATCH_IOU, or
corners within BOX_TOLERANCE) for at least MIN_AGREEMENT of them (FP16 weights can flip near-tied suppression
decisions), and the IR's mAP must be within MAP_TOLERANCE of MXNet's; otherwise the run fails, and the
differences file lists the detections that differ. Boxes under one input pixel wide or high (clipped to
the image border) have no meaningful IoU: they are counted apart and left out of the agreement; the mAP
still counts them. Where the CPU computes in bf16 (AVX512_BF16 or AMX), the IR's mAP, agreement and
latency at bf16 are measured beside the proof, for information. Latency, batch 1, median after warm-up:
MXNet, the IR as built and the IR at the other weight precision (converted here only to be timed).
"""

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import openvino as ov

from workflow.device import infer
from workflow.lib.cli import Progress, UserError, log, run_main
from workflow.lib.detector import Detector, read_records
from workflow.lib.metrics import evaluate_detections

MAP_TOLERANCE = 0.005
MIN_AGREEMENT = 0.97
MATCH_IOU = 0.9
BOX_TOLERANCE = 0.005
SCORE_MARGIN = 0.01
WARMUP, RUNS = 5, 30
FAST_PRECISION = "bf16"


def unpaired(rows, pool):
    """The rows that find no partner in pool, pairing greedily by score. A partner has the same label and
    IoU >= MATCH_IOU, or corners within BOX_TOLERANCE (for thin boxes, whose IoU moves with a tiny shift)."""
    used = np.zeros(len(pool), dtype=bool)
    missing = []
    for row in rows:
        overlap = infer.iou(row[None, 2:], pool[:, 2:])[0]
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
    """(paired count, rows only MXNet has, rows only the IR has, (MXNet's, IR's) degenerate counts) among detections
    scoring at least min_score. Degenerate boxes are set aside; a partner may be any detection of the other model
    scoring up to SCORE_MARGIN below min_score, so FP16 rounding at the threshold is no difference."""

    def above(rows, score):
        return rows[rows[:, 1] >= score]

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


def describe(image, model, row, classes):
    box = ", ".join(f"{value:.3f}" for value in row[2:])
    return f"val image {image}: only {model}: {classes[int(row[0])]} {row[1]:.3f} at [{box}]"


def median_ms(function):
    for _ in range(WARMUP):
        function()
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def latencies(detector, compiled, contract, image_bgr, deploy_json, min_score):
    """Median ms per image, from the image to the final detections (resize, inference, NMS): MXNet, the IR as
    built, and the IR at the other weight precision (converted here), both IRs at the contract's inference
    precision. The IR's NMS runs on the detections scoring at least min_score, as an application using it would."""
    from workflow import optimize

    image_rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    precision = contract["precision"]
    result = {
        "mxnet_fp32_ms": median_ms(lambda: detector.raw([image_rgb])),
        f"ir_{precision.lower()}_ms": median_ms(lambda: infer.detect(compiled, image_bgr, contract, min_score)),
    }
    other = "FP32" if precision == "FP16" else "FP16"
    log(f"verify_ir: converting the deploy model to an {other} IR too, only to time it")
    with tempfile.TemporaryDirectory() as work:
        args = optimize.parse_args(
            [
                "--deploy",
                str(deploy_json),
                "--precision",
                other,
                "--color",
                contract["color_order"],
                "--mean-in-ir" if contract["mean_in_ir"] else "--no-mean-in-ir",
                "--out-dir",
                work,
                "--model-name",
                "twin",
                "--log",
                str(Path(work) / "mo.log"),
            ]
        )
        twin, twin_contract = infer.load(optimize.optimize(args))
        result[f"ir_{other.lower()}_ms"] = median_ms(lambda: infer.detect(twin, image_bgr, twin_contract, min_score))
    result["ir_speedup"] = result["mxnet_fp32_ms"] / result[f"ir_{precision.lower()}_ms"]
    result["inference_precision"] = contract["inference_precision"]
    return result


def ir_detections(compiled, contract, images_bgr, threshold, label):
    progress = Progress(label, len(images_bgr))
    detections = []
    for index, image in enumerate(images_bgr):
        rows = infer.detect(compiled, image, contract, threshold)
        detections.append(np.array(rows, dtype=np.float32).reshape(-1, 6))
        progress.update(index + 1)
    return detections


@dataclass
class Reference:
    """The val set and what MXNet detects on it, which every IR run is compared with."""

    images_bgr: list
    truths: list
    mxnet: list
    mxnet_map: float
    classes: list
    data_shape: int
    threshold: float  # the deploy model's detection threshold: both models return the detections above it


def compare(reference, ir_all, args):
    """Pairing counts, the IR's mAP and the differing detections of one IR run against MXNet's."""
    totals = np.zeros(5, dtype=int)
    differences = []
    for index, (mxnet_rows, ir_rows) in enumerate(zip(reference.mxnet, ir_all)):
        paired, only_mxnet, only_ir, degenerate = match(mxnet_rows, ir_rows, args.min_score, reference.data_shape)
        totals += (paired, len(only_mxnet), len(only_ir), *degenerate)
        differences += [describe(index, "MXNet", row, reference.classes) for row in only_mxnet]
        differences += [describe(index, "IR", row, reference.classes) for row in only_ir]
    ir_map = evaluate_detections(reference.truths, ir_all, len(reference.classes), args.iou_threshold).map_voc07
    return {
        "matched": int(totals[0]),
        "only_mxnet": int(totals[1]),
        "only_ir": int(totals[2]),
        "degenerate_mxnet": int(totals[3]),
        "degenerate_ir": int(totals[4]),
        "agreement": agreement(*totals[:3]),
        "ir_map_voc07": ir_map,
        "map_difference": abs(ir_map - reference.mxnet_map),
        "differences": differences,
    }


def fast_precision_check(reference, args):
    """The IR at bf16, where the CPU computes in it: what a user of such a CPU gets, for information."""
    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if FAST_PRECISION.upper() not in capabilities:
        log(f"verify_ir: this CPU has no {FAST_PRECISION} ({', '.join(capabilities)}); the IR runs in f32 only")
        return {"inference_precision": FAST_PRECISION, "supported": False}
    compiled, contract = infer.load(args.ir, precision=FAST_PRECISION)
    ir_all = ir_detections(
        compiled, contract, reference.images_bgr, reference.threshold, f"verify_ir ({FAST_PRECISION})"
    )
    image = reference.images_bgr[0]
    return {
        **compare(reference, ir_all, args),
        "inference_precision": FAST_PRECISION,
        "supported": True,
        "ran": infer.precision_ran(compiled),
        "ir_ms": median_ms(lambda: infer.detect(compiled, image, contract, args.min_score)),
    }


def summary(result):
    return (
        f"{result['matched']} detections paired ({result['agreement']:.1%}), {result['only_mxnet']} only in MXNet, "
        f"{result['only_ir']} only in the IR; "
        f"{result['degenerate_mxnet']} MXNet and {result['degenerate_ir']} IR boxes "
        "under one input pixel set aside; "
        f"IR mAP {result['ir_map_voc07']:.4f}"
    )


def write_differences(path, result):
    lines = [f"# {summary(result)} at {result['inference_precision']['ran']} (the proof)", *result["differences"]]
    fast = result["fast_precision"]
    if fast["supported"]:
        lines += [f"# {summary(fast)} at {fast['ran']} (for information)", *fast["differences"]]
    Path(path).write_text("\n".join(lines) + "\n")


def mxnet_reference(detector, args):
    records = list(read_records(args.val_rec))
    progress = Progress("verify_ir (MXNet)", len(records))
    mxnet = []
    for index, (image_rgb, _) in enumerate(records):
        mxnet.append(detector.detect([image_rgb])[0])
        progress.update(index + 1)
    truths = [truth for _, truth in records]
    classes = detector.info["classes"]
    return Reference(
        images_bgr=[cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR) for image_rgb, _ in records],
        truths=truths,
        mxnet=mxnet,
        classes=classes,
        data_shape=detector.data_shape,
        mxnet_map=evaluate_detections(truths, mxnet, len(classes), args.iou_threshold).map_voc07,
        threshold=detector.info["threshold"],
    )


def verify(args):
    detector = Detector(args.deploy)
    reference = mxnet_reference(detector, args)
    compiled, contract = infer.load(args.ir)
    ir_all = ir_detections(
        compiled, contract, reference.images_bgr, reference.threshold, f"verify_ir ({contract['inference_precision']})"
    )
    result = {
        "images": len(ir_all),
        "min_score": args.min_score,
        "match_iou": MATCH_IOU,
        "min_agreement": MIN_AGREEMENT,
        "mxnet_map_voc07": reference.mxnet_map,
        "map_tolerance": MAP_TOLERANCE,
        **compare(reference, ir_all, args),
        "precision": contract["precision"],
        "force_nms": contract["force_nms"],
        "inference_precision": {"requested": contract["inference_precision"], "ran": infer.precision_ran(compiled)},
        "fast_precision": fast_precision_check(reference, args),
    }
    result["latency"] = latencies(detector, compiled, contract, reference.images_bgr[0], args.deploy, args.min_score)
    write_differences(args.differences, result)
    Path(args.out).write_text(json.dumps(result, indent=1))
    log(
        f"verify_ir: {summary(result)} vs MXNet {reference.mxnet_map:.4f}, at {result['inference_precision']['ran']}; "
        "latency " + ", ".join(f"{k} {v:.1f}" for k, v in result["latency"].items() if k.endswith("_ms"))
    )
    fast = result["fast_precision"]
    if fast["supported"]:
        log(
            f"verify_ir: at {fast['ran']} (this CPU's fast path, for information): {summary(fast)}; "
            f"{fast['ir_ms']:.1f} ms"
        )
    for line in result["differences"]:
        log(f"verify_ir: {line}")
    check_proof(result, args)


def check_proof(result, args):
    problems = []
    if result["map_difference"] > MAP_TOLERANCE:
        problems.append(
            f"IR mAP {result['ir_map_voc07']:.4f} differs from MXNet's {result['mxnet_map_voc07']:.4f} "
            f"by more than {MAP_TOLERANCE}"
        )
    if result["agreement"] < MIN_AGREEMENT:
        problems.append(
            f"{result['only_mxnet']} MXNet and {result['only_ir']} IR detections (score >= {args.min_score}) "
            f"have no partner with the same label and IoU >= {MATCH_IOU}: agreement "
            f"{result['agreement']:.3f} < {MIN_AGREEMENT}"
        )
    if problems:
        raise UserError(
            "the IR does not reproduce the MXNet model: "
            + "; ".join(problems)
            + f" (the detections that differ are listed in {args.differences})"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.verify_ir", description=__doc__.split("\n\n")[0])
    parser.add_argument("--deploy", required=True, help="deploy.json of the MXNet deploy model")
    parser.add_argument("--ir", required=True, help="the IR's .xml (its .contract.json beside it)")
    parser.add_argument("--val-rec", required=True)
    parser.add_argument("--min-score", type=float, required=True, help="compare detections scoring at least this")
    parser.add_argument("--iou-threshold", type=float, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--differences",
        required=True,
        help="text file listing the detections that differ (a log: it survives a failed run)",
    )
    verify(parser.parse_args(argv))


if __name__ == "__main__":
    run_main(main)
