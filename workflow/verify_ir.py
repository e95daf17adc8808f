"""verify_ir: proof that the OpenVINO IR detects what the MXNet deploy model detects, and how fast.

On every val image: the IR through its input contract (workflow/ir_infer.py, the code shipped to the
device, NMS across classes when force_nms) and the MXNet deploy model. Detections at or above the demo
threshold must pair up (same label, IoU >= 0.9, or corners within BOX_TOLERANCE for boxes clipped to zero
area at the image border, which have no IoU) for at least MIN_AGREEMENT of them (FP16 rounding can flip
near-tied suppression decisions), and the IR's mAP must be within MAP_TOLERANCE of MXNet's; otherwise the
run fails, and the log lists the detections that differ. Latency, batch 1, median after warm-up: MXNet FP32, IR FP32 and IR FP16.
"""
import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from workflow import ir_infer
from workflow.cli import Progress, UserError, log, run_main
from workflow.detector import Detector, read_records
from workflow.metrics import evaluate_detections

MAP_TOLERANCE = 0.005
MIN_AGREEMENT = 0.97
MATCH_IOU = 0.9
BOX_TOLERANCE = 0.005
SCORE_MARGIN = 0.01
WARMUP, RUNS = 5, 30


def unpaired(rows, pool):
    """The rows that find no partner in pool, pairing greedily by score. A partner has the same label and
    IoU >= MATCH_IOU, or corners within BOX_TOLERANCE (a box clipped to zero area has IoU 0 even with itself)."""
    used = np.zeros(len(pool), dtype=bool)
    missing = []
    for row in rows:
        overlap = ir_infer.iou(row[None, 2:], pool[:, 2:])[0]
        near = np.abs(pool[:, 2:] - row[2:]).max(axis=1, initial=0) <= BOX_TOLERANCE
        candidates = np.flatnonzero((pool[:, 0] == row[0]) & ((overlap >= MATCH_IOU) | near) & ~used)
        if len(candidates):
            used[candidates[np.argmax(overlap[candidates])]] = True
        else:
            missing.append(row)
    return missing


def match(mxnet_rows, ir_rows, min_score):
    """(paired count, rows only MXNet has, rows only the IR has) among detections scoring at least min_score.
    A partner may score up to SCORE_MARGIN below min_score, so FP16 rounding at the threshold is no difference."""
    def above(rows, score):
        return rows[rows[:, 1] >= score]
    only_mxnet = unpaired(above(mxnet_rows, min_score), above(ir_rows, min_score - SCORE_MARGIN))
    only_ir = unpaired(above(ir_rows, min_score), above(mxnet_rows, min_score - SCORE_MARGIN))
    return len(above(mxnet_rows, min_score)) - len(only_mxnet), only_mxnet, only_ir


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


def latencies(detector, ir_xml, image_rgb, precision, deploy_json, min_score):
    """Median ms per image, from the image to the final detections (resize, inference, NMS): MXNet, the IR as
    built, and the IR at the other precision (converted here). The IR's NMS runs on the detections scoring at
    least min_score, as an application using it would."""
    from workflow import optimize

    compiled, contract = ir_infer.load(ir_xml)
    image_bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    result = {"mxnet_fp32_ms": median_ms(lambda: detector.raw([image_rgb])),
              f"ir_{precision.lower()}_ms": median_ms(lambda: ir_infer.detect(compiled, image_bgr, contract, min_score))}
    other = "FP32" if precision == "FP16" else "FP16"
    with tempfile.TemporaryDirectory() as work:
        args = optimize.parse_args(["--deploy", str(deploy_json), "--precision", other, "--color", contract["color_order"],
                                    "--mean-in-ir", "yes" if contract["mean_in_ir"] else "no", "--out-dir", work,
                                    "--model-name", "twin", "--log", str(Path(work) / "mo.log")])
        twin, twin_contract = ir_infer.load(optimize.optimize(args))
        result[f"ir_{other.lower()}_ms"] = median_ms(lambda: ir_infer.detect(twin, image_bgr, twin_contract, min_score))
    return result


def verify(args):
    detector = Detector(args.deploy)
    compiled, contract = ir_infer.load(args.ir)
    classes = detector.info["classes"]
    records = list(read_records(args.val_rec))
    truths, mxnet_all, ir_all = [], [], []
    totals = np.zeros(3, dtype=int)
    differences = []
    progress = Progress("verify_ir", len(records))
    for index, (image_rgb, truth) in enumerate(records):
        mxnet_rows = detector.detect([image_rgb])[0]
        ir_rows = np.array(ir_infer.detect(compiled, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), contract,
                                           detector.info["threshold"]), dtype=np.float32).reshape(-1, 6)
        paired, only_mxnet, only_ir = match(mxnet_rows, ir_rows, args.min_score)
        totals += (paired, len(only_mxnet), len(only_ir))
        differences += [describe(index, "MXNet", row, classes) for row in only_mxnet]
        differences += [describe(index, "IR", row, classes) for row in only_ir]
        truths.append(truth)
        mxnet_all.append(mxnet_rows)
        ir_all.append(ir_rows)
        progress.update(index + 1)
    mxnet_map = evaluate_detections(truths, mxnet_all, len(classes), args.iou_threshold).map_voc07
    ir_map = evaluate_detections(truths, ir_all, len(classes), args.iou_threshold).map_voc07
    result = {"images": len(records), "min_score": args.min_score, "match_iou": MATCH_IOU,
              "matched": int(totals[0]), "only_mxnet": int(totals[1]), "only_ir": int(totals[2]),
              "agreement": totals[0] / max(1, totals.sum()), "min_agreement": MIN_AGREEMENT,
              "mxnet_map_voc07": mxnet_map, "ir_map_voc07": ir_map, "map_difference": abs(ir_map - mxnet_map),
              "map_tolerance": MAP_TOLERANCE, "precision": contract["precision"], "force_nms": contract["force_nms"],
              "differences": differences}
    result["latency"] = latencies(detector, args.ir, records[0][0], contract["precision"], args.deploy, args.min_score)
    result["latency"]["ir_speedup"] = result["latency"]["mxnet_fp32_ms"] / result["latency"][f"ir_{contract['precision'].lower()}_ms"]
    Path(args.out).write_text(json.dumps(result, indent=1))
    log(f"verify_ir: {result['matched']} detections matched ({result['agreement']:.1%}), {result['only_mxnet']} only in MXNet, {result['only_ir']} only in "
        f"the IR; mAP MXNet {mxnet_map:.4f} vs IR {ir_map:.4f}; latency " +
        ", ".join(f"{k} {v:.1f}" for k, v in result["latency"].items()))
    for line in differences:
        log(f"verify_ir: {line}")
    problems = []
    if result["map_difference"] > MAP_TOLERANCE:
        problems.append(f"IR mAP {ir_map:.4f} differs from MXNet's {mxnet_map:.4f} by more than {MAP_TOLERANCE}")
    if result["agreement"] < MIN_AGREEMENT:
        problems.append(f"{result['only_mxnet']} MXNet and {result['only_ir']} IR detections (score >= {args.min_score}) "
                        f"have no partner with the same label and IoU >= {MATCH_IOU}: agreement "
                        f"{result['agreement']:.3f} < {MIN_AGREEMENT}")
    if problems:
        raise UserError("the IR does not reproduce the MXNet model: " + "; ".join(problems) +
                        " (the detections that differ are listed above)")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.verify_ir", description=__doc__.split("\n\n")[0])
    parser.add_argument("--deploy", required=True, help="deploy.json of the MXNet deploy model")
    parser.add_argument("--ir", required=True, help="the IR's .xml (its .contract.json beside it)")
    parser.add_argument("--val-rec", required=True)
    parser.add_argument("--min-score", type=float, default=0.5, help="compare detections scoring at least this")
    parser.add_argument("--iou-threshold", type=float, default=0.5)
    parser.add_argument("--out", required=True)
    verify(parser.parse_args(argv))


if __name__ == "__main__":
    run_main(main)
