"""verify_ir: proof that the OpenVINO IR detects what the MXNet deploy model detects, and how fast.

On every val image: the IR through its input contract (workflow/device/infer.py, the code shipped to the
device, NMS across classes when force_nms) and the MXNet deploy model, the IRs at the contract's inference
precision (f32), so the proof means the same on every CPU. Two parts, or the run fails and the differences file
lists the detections that differ:
- the conversion: the IR with FP32 weights (the shipped IR, or one converted here beside an FP16 IR) computes
  what MXNet computes, so its mAP must be within MAP_TOLERANCE of MXNet's;
- the shipped IR: its detections at or above the parity threshold must pair with MXNet's (same label, IoU >=
  MATCH_IOU, or corners within BOX_TOLERANCE) for at least MIN_AGREEMENT of them. FP16 weights move scores by
  about 0.002 and boxes by a fraction of a pixel: that can flip near-tied suppression decisions, and it can flip a
  low-scoring box whose IoU with its object sits at the mAP's threshold, which on a small val set moves the mAP
  by a step (0.0126 on the sample's 23 images, from one box scoring under 0.1). So an FP16 IR's mAP is measured
  and reported beside MXNet's, not held to MAP_TOLERANCE.
Boxes under one input pixel wide or high (clipped to the image border) have no meaningful IoU: they are counted
apart and left out of the agreement; the mAP still counts them. Where the CPU computes in bf16 (AVX512_BF16 or
AMX), the IR's mAP, agreement and latency at bf16 are measured beside the proof, for information.

With --int8-ir (workflow.quantize's INT8 IR for CPU targets), the proof also requires the INT8 IR's mAP to be at
most --int8-max-map-drop below MXNet's, at the same explicit precision; its pairing with MXNet is reported, for
information (INT8 moves boxes more than FP16 does). Side by side, in one run on this machine: val mAP and latency
(resize + inference + NMS, batch 1, median after warm-up) of MXNet, the IR as built, the IR at the other weight
precision (converted here) and the INT8 IR, with the CPU's name and ISA extensions (VNNI, AMX, bf16).
"""

import argparse
import functools
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import onnxruntime as ort
import openvino as ov

from workflow.device import infer, litert_infer, onnx_infer
from workflow.lib import cpu, model_optimizer
from workflow.lib.cli import Progress, UserError, log, run_main
from workflow.lib.detector import Detector, read_records
from workflow.lib.metrics import evaluate_detections
from workflow.lib.parity import MAP_TOLERANCE, MATCH_IOU, MIN_AGREEMENT, as_rows, pair_images

WARMUP, RUNS = 5, 30
FAST_PRECISION = "bf16"
WEIGHTS = ("FP32", "FP16", "INT8")
INFERENCE_NOTE = (
    "an INT8 IR computes its quantized layers in int8 (VNNI or AMX where the CPU has them) at any hint; the hint "
    "sets the precision of the layers left in float"
)


def median_ms(function):
    for _ in range(WARMUP):
        function()
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def twin_ir(deploy_json, contract, precision, work):
    """The deploy model converted to an IR at the other weight precision, with the same input contract."""

    log(f"verify_ir: converting the deploy model to an {precision} IR too, to compare it")
    mean = "--mean-in-ir" if contract["mean_in_ir"] else "--no-mean-in-ir"
    args = model_optimizer.parse_args(
        ["--deploy", str(deploy_json), "--precision", precision, "--color", contract["color_order"], mean]
        + ["--out-dir", str(work), "--model-name", "twin", "--log", str(Path(work) / "mo.log")]
    )
    return infer.load(model_optimizer.optimize(args))


def side_by_side(reference, detector, irs, min_score, onnx_model=None, litert_models=()):
    """MXNet, every IR (weights precision -> (compiled, contract, detections)), model.onnx under onnxruntime and the
    LiteRT models (litert_infer.py's post-processing) in one run on this machine: val mAP and median ms per image
    from the image to the final detections (resize, inference, NMS), the IRs at their contract's inference
    precision. The runs take turns (one image each, round after round), so a change of the machine's load falls on
    every model alike. The IR's and LiteRT's NMS run on the detections scoring at least min_score, as an application
    using them would; model.onnx has its NMS inside."""
    image_bgr = reference.images_bgr[0]
    image_rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    rows = [{"model": "MXNet", "weights": "FP32", "computes_in": "f32", "map_voc07": reference.mxnet_map}]
    runs = [functools.partial(detector.raw, [image_rgb])]
    for weights, (compiled, contract, detections) in sorted(irs.items(), key=lambda item: WEIGHTS.index(item[0])):
        ran = infer.precision_ran(compiled)
        rows.append(
            {
                "model": "IR",
                "weights": weights,
                "computes_in": f"int8 and {ran}" if weights == "INT8" else ran,
                "map_voc07": voc07(reference, detections),
            }
        )
        runs.append(functools.partial(infer.detect, compiled, image_bgr, contract, min_score))
    if onnx_model:
        session, contract = onnx_infer.load(onnx_model)
        found = [
            as_rows(onnx_infer.detect(session, image, contract, reference.threshold)) for image in reference.images_bgr
        ]
        runtime = f"f32 (onnxruntime {ort.__version__})"
        rows.append({"model": "ONNX", "weights": "FP32", "computes_in": runtime, "map_voc07": voc07(reference, found)})
        runs.append(functools.partial(onnx_infer.detect, session, image_bgr, contract, min_score))
    for path in litert_models:
        runner, contract = litert_infer.load(path)
        precision = {name: precision for precision, name in contract["model"].items()}.get(Path(path).name)
        if precision is None:
            log(f"verify_ir: {path} is not timed: its contract does not ship it (export_litert's verify.json says why)")
            continue
        found = [
            as_rows(litert_infer.detect(runner, image, contract, reference.threshold)) for image in reference.images_bgr
        ]
        weights = "INT8" if precision == "int8" else "FP32"
        computes_in = "int8 (XNNPACK)" if weights == "INT8" else "f32 (XNNPACK)"
        rows.append(
            {"model": "LiteRT", "weights": weights, "computes_in": computes_in, "map_voc07": voc07(reference, found)}
        )
        runs.append(functools.partial(litert_infer.detect, runner, image_bgr, contract, min_score))
    for row, ms in zip(rows, median_ms_in_turns(runs)):
        row["ms"] = ms
    return rows


def median_ms_in_turns(functions):
    """Each function's median ms over RUNS calls after WARMUP, the functions called in turns."""
    for function in functions:
        for _ in range(WARMUP):
            function()
    times = [[] for _ in functions]
    for _ in range(RUNS):
        for function, kept in zip(functions, times):
            start = time.perf_counter()
            function()
            kept.append((time.perf_counter() - start) * 1000)
    return [statistics.median(kept) for kept in times]


def latency_summary(rows, precision):
    """The side-by-side table's times as {mxnet_fp32_ms, ir_<weights>_ms..., ir_speedup} (the shipped IR's)."""
    result = {f"{row['model'].lower()}_{row['weights'].lower()}_ms": row["ms"] for row in rows}
    result["ir_speedup"] = result["mxnet_fp32_ms"] / result[f"ir_{precision.lower()}_ms"]
    return result


def cpu_description():
    """This CPU (workflow/lib/cpu.py) and the optimization capabilities OpenVINO's CPU plugin reports on it."""
    return {**cpu.describe(), "openvino_capabilities": list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))}


def ir_detections(compiled, contract, images_bgr, threshold, label):
    progress = Progress(label, len(images_bgr))
    detections = []
    for index, image in enumerate(images_bgr):
        detections.append(as_rows(infer.detect(compiled, image, contract, threshold)))
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
    iou_threshold: float  # of a correct detection in the mAP


def voc07(reference, detections):
    return evaluate_detections(reference.truths, detections, len(reference.classes), reference.iou_threshold).map_voc07


def compare(reference, ir_all, args):
    """Pairing counts, the IR's mAP and the differing detections of one IR run against MXNet's."""
    ir_map = voc07(reference, ir_all)
    paired = pair_images(reference.mxnet, ir_all, args.min_score, reference.data_shape, reference.classes, "IR")
    return {**paired, "ir_map_voc07": ir_map, "map_difference": abs(ir_map - reference.mxnet_map)}


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
    if "int8" in result:
        lines += [f"# INT8 IR: {summary(result['int8'])} (pairing for information)", *result["int8"]["differences"]]
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
        iou_threshold=args.iou_threshold,
    )


def int8_check(reference, ir_all, contract, compiled, args):
    """The INT8 IR against MXNet: its mAP within the configured drop (the proof), the pairing for information
    (INT8 moves boxes more than FP16 does)."""
    return {
        **compare(reference, ir_all, args),
        "max_map_drop": args.int8_max_map_drop,
        "map_drop": reference.mxnet_map - voc07(reference, ir_all),
        "precision": contract["precision"],
        "quantization": contract.get("quantization"),
        "inference_precision": {
            "requested": contract["inference_precision"],
            "ran": infer.precision_ran(compiled),
            "note": INFERENCE_NOTE,
        },
    }


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
    irs = {contract["precision"]: (compiled, contract, ir_all)}
    if args.int8_ir:
        int8, int8_contract = infer.load(args.int8_ir)
        int8_all = ir_detections(int8, int8_contract, reference.images_bgr, reference.threshold, "verify_ir (INT8)")
        result["int8"] = int8_check(reference, int8_all, int8_contract, int8, args)
        irs["INT8"] = (int8, int8_contract, int8_all)
    with tempfile.TemporaryDirectory() as work:
        twin = "FP32" if contract["precision"] == "FP16" else "FP16"
        twin_compiled, twin_contract = twin_ir(args.deploy, contract, twin, work)
        twin_all = ir_detections(
            twin_compiled, twin_contract, reference.images_bgr, reference.threshold, f"verify_ir ({twin})"
        )
        irs[twin] = (twin_compiled, twin_contract, twin_all)
        result["conversion"] = conversion_check(reference, irs["FP32"][2])
        result["side_by_side"] = side_by_side(reference, detector, irs, args.min_score, args.onnx, args.litert)
    result["latency"] = latency_summary(result["side_by_side"], contract["precision"])
    result["cpu"] = cpu_description()
    write_differences(args.differences, result)
    Path(args.out).write_text(json.dumps(result, indent=1))
    log(f"verify_ir: {summary(result)} vs MXNet {reference.mxnet_map:.4f}, at {result['inference_precision']['ran']}")
    conversion = result["conversion"]
    log(
        f"verify_ir: the conversion: FP32 IR mAP {conversion['ir_map_voc07']:.4f} vs MXNet {reference.mxnet_map:.4f} "
        f"(difference {conversion['map_difference']:.4f}, tolerance {MAP_TOLERANCE})"
    )
    fast = result["fast_precision"]
    if fast["supported"]:
        log(
            f"verify_ir: at {fast['ran']} (this CPU's fast path, for information): {summary(fast)}; "
            f"{fast['ir_ms']:.1f} ms"
        )
    if "int8" in result:
        log(f"verify_ir: INT8 IR: {summary(result['int8'])} (pairing for information)")
    log(f"verify_ir: side by side on {cpu.one_line(result['cpu'])}, resize + inference + NMS, batch 1, median:")
    for row in result["side_by_side"]:
        log(
            f"verify_ir:   {row['model']:5} {row['weights']} computing in {row['computes_in']:12}  "
            f"val mAP {row['map_voc07']:.4f}  {row['ms']:.2f} ms"
        )
    for line in result["differences"]:
        log(f"verify_ir: {line}")
    check_proof(result, args)


def conversion_check(reference, fp32_detections):
    """The FP32 IR's mAP against MXNet's: the same weights, so any difference is the conversion's."""
    fp32_map = voc07(reference, fp32_detections)
    return {"weights": "FP32", "ir_map_voc07": fp32_map, "map_difference": abs(fp32_map - reference.mxnet_map)}


def check_proof(result, args):
    problems = []
    conversion = result["conversion"]
    if conversion["map_difference"] > MAP_TOLERANCE:
        problems.append(
            f"the FP32 IR's mAP {conversion['ir_map_voc07']:.4f} differs from MXNet's "
            f"{result['mxnet_map_voc07']:.4f} by more than {MAP_TOLERANCE}"
        )
    if result["agreement"] < MIN_AGREEMENT:
        problems.append(
            f"{result['only_mxnet']} MXNet and {result['only_ir']} IR detections (score >= {args.min_score}) "
            f"have no partner with the same label and IoU >= {MATCH_IOU}: agreement "
            f"{result['agreement']:.3f} < {MIN_AGREEMENT}"
        )
    int8 = result.get("int8")
    if int8 and int8["map_drop"] > int8["max_map_drop"]:
        problems.append(
            f"the INT8 IR's mAP {int8['ir_map_voc07']:.4f} is {int8['map_drop']:.4f} below MXNet's "
            f"{result['mxnet_map_voc07']:.4f}, more than int8_max_map_drop {int8['max_map_drop']}"
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
    parser.add_argument("--int8-ir", help="an INT8 IR (workflow.quantize) to prove and time beside the IR")
    parser.add_argument("--onnx", help="model.onnx (workflow.export_onnx, which proves it) to time beside the IR")
    parser.add_argument(
        "--litert", nargs="*", required=True, help="the .tflite models (export_litert proves them) to time too, or none"
    )
    parser.add_argument("--int8-max-map-drop", type=float, help="the INT8 IR's largest val mAP drop against MXNet's")
    args = parser.parse_args(argv)
    if args.int8_ir and args.int8_max_map_drop is None:
        parser.error("--int8-ir needs --int8-max-map-drop")
    verify(args)


if __name__ == "__main__":
    run_main(main)
