"""verify_ir: proof that the OpenVINO IR computes what the MXNet deploy model computes, and how fast.

The proof (workflow/lib/proof.py; docs/numbers.md, "The proofs"), the IRs computing at the contract's inference
precision (f32) so that it means the same on every CPU, fails the run naming what differs when:
- the network: on every val image, fed through its contract (workflow/device/infer.py, the code shipped to the
  device), the IR with FP32 weights (the shipped IR, or one converted here beside an FP16 IR) gives class
  probabilities or boxes beyond proof.NETWORK_TOLERANCE from MXNet's; or the FP16 IR from that FP32 IR with its
  weights rounded to FP16 as the FP16 IR's are (what FP16 weights compute, exactly);
- its anchors or variances are not MXNet's, or its contract's post-processing settings or class names are not the
  deploy model's;
- the post-processing: infer.py's, on synthetic network outputs with the IR's anchors, keeps other detections than
  the deploy graph's MultiBoxDetection on the same outputs;
- the FP32 IR's val mAP differs from MXNet's by more than MAP_TOLERANCE, or (with --int8-ir, workflow.quantize's INT8
  IR for CPU targets) the INT8 IR's is more than --int8-max-map-drop below MXNet's: the mAP budgets, rules of quality.
Reported beside the proof: the detections that pair with MXNet's at the parity threshold, each IR's mAP, the INT8
IR's network difference (quantization changes it by design), and, where the CPU computes in bf16 (AVX512_BF16 or
AMX), the IR's mAP, pairing and latency at bf16. Side by side, in one run on this machine: val mAP and latency
(resize + inference + NMS, batch 1, median after warm-up) of MXNet, the IR as built, the IR at the other weight
precision (converted here), the INT8 IR, model.onnx and the LiteRT models, with the CPU's name and ISA extensions.
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
from workflow.lib import proof
from workflow.lib.metrics import evaluate_detections
from workflow.lib.networks import VARIANCES
from workflow.lib.parity import MAP_TOLERANCE, MATCH_IOU, as_rows, pair_images

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
    """The deploy model converted to an IR at the other weight precision, with the same input contract: its .xml."""

    log(f"verify_ir: converting the deploy model to an {precision} IR too, to compare it")
    mean = "--mean-in-ir" if contract["mean_in_ir"] else "--no-mean-in-ir"
    args = model_optimizer.parse_args(
        ["--deploy", str(deploy_json), "--precision", precision, "--color", contract["color_order"], mean]
        + ["--out-dir", str(work), "--model-name", "twin", "--log", str(Path(work) / "mo.log")]
    )
    return model_optimizer.optimize(args)


def prove(detector, reference, shipped, fp32_xml, int8=None):
    """verify.json's "proof" (workflow/lib/proof.py): the network of the FP32 IR against MXNet's and of an FP16 IR
    against the FP32 one with its weights rounded to FP16; the shipped IR's anchors, contract settings and
    post-processing; the INT8 IR's network difference, reported."""
    compiled, contract = shipped
    classes = reference.classes
    models = {"FP32": infer.load(fp32_xml)}
    comparisons = {"FP32": proof.NetworkComparison("the FP32 IR", VARIANCES, classes)}
    if contract["precision"] == "FP16":
        rounded = ov.Core().compile_model(model_optimizer.fp16_rounded(fp32_xml), "CPU", infer_config(contract))
        models.update(rounded=(rounded, models["FP32"][1]), FP16=shipped)
        reference_name = "the FP32 IR with its weights rounded to FP16"
        comparisons["FP16"] = proof.NetworkComparison("the FP16 IR", VARIANCES, classes, reference_name)
    if int8:
        models["INT8"] = int8
        comparisons["INT8"] = proof.NetworkComparison("the INT8 IR", VARIANCES, classes)
    progress = Progress("verify_ir (the networks)", len(reference.images_bgr))
    for index, image_bgr in enumerate(reference.images_bgr):
        mxnet = detector.network_outputs(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
        outputs = {key: ir_network_outputs(model, image_bgr) for key, model in models.items()}
        for key, comparison in comparisons.items():
            comparison.add(outputs["rounded"] if key == "FP16" else mxnet, outputs[key])
        progress.update(index + 1)
    *_, anchors, variances = infer.network_outputs(
        compiled, infer.preprocess(reference.images_bgr[0], contract), contract
    )
    result = {
        "networks": [comparisons[key].result() for key in comparisons if key != "INT8"],
        "anchors": proof.anchor_problems("the IR", anchors, variances, detector.anchors, VARIANCES),
        "settings": proof.settings_problems("the IR's contract", contract, detector.contract_settings()),
        "postprocessing": postprocessing_check(detector, anchors, variances, contract),
    }
    if int8:
        result["int8_network"] = {**comparisons["INT8"].result(), "problems": [], "note": proof.INT8_NETWORK_NOTE}
    return result


def infer_config(contract):
    return {"INFERENCE_PRECISION_HINT": contract["inference_precision"]}


def ir_network_outputs(model, image_bgr):
    compiled, contract = model
    return infer.network_outputs(compiled, infer.preprocess(image_bgr, contract), contract)[:2]


def postprocessing_check(detector, anchors, variances, contract):
    """infer.py's post-processing (the contract's settings, the IR's anchors) against the deploy graph's
    MultiBoxDetection on the same synthetic network outputs; None when the anchors do not even match in number."""
    if anchors.shape != detector.anchors.shape:
        return None
    synthetic = proof.synthetic_outputs(detector.anchors, VARIANCES, len(detector.info["classes"]), detector.settings)
    expected = [detector.postprocess(prob, offsets) for prob, offsets in synthetic]
    found = [infer.multibox_detection(prob, offsets, anchors, variances, contract) for prob, offsets in synthetic]
    return proof.compare_postprocessing("infer.py", expected, found)


def proof_problems(checked):
    """Every problem the proof found, in the order of its parts."""
    found = [problem for network in checked["networks"] for problem in network["problems"]]
    found += checked["anchors"] + checked["settings"]
    if checked["postprocessing"]:
        found += checked["postprocessing"]["problems"]
    return found


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


def cpu_description(compiled):
    """This CPU (workflow/lib/cpu.py), the optimization capabilities OpenVINO's CPU plugin reports on it, and the
    kernels it picked for the compiled IR's convolutions (their names say the ISA they run: brgconv_avx2_f32 ...)."""
    kernels = {
        op.get_rt_info()["primitiveType"].astype(str)
        for op in compiled.get_runtime_model().get_ops()
        if op.get_rt_info()["layerType"].astype(str) == "Convolution"
    }
    capabilities = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return {**cpu.describe(), "openvino_capabilities": capabilities, "convolution_kernels": sorted(kernels)}


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
    proof_note = "reported; the proof compares the networks and the post-processing"
    lines = [f"# {summary(result)} at {result['inference_precision']['ran']} ({proof_note})", *result["differences"]]
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
        "mxnet_map_voc07": reference.mxnet_map,
        "map_tolerance": MAP_TOLERANCE,
        **compare(reference, ir_all, args),
        "precision": contract["precision"],
        "force_nms": contract["force_nms"],
        "inference_precision": {"requested": contract["inference_precision"], "ran": infer.precision_ran(compiled)},
        "fast_precision": fast_precision_check(reference, args),
    }
    irs = {contract["precision"]: (compiled, contract, ir_all)}
    int8_model = None
    if args.int8_ir:
        int8, int8_contract = int8_model = infer.load(args.int8_ir)
        int8_all = ir_detections(int8, int8_contract, reference.images_bgr, reference.threshold, "verify_ir (INT8)")
        result["int8"] = int8_check(reference, int8_all, int8_contract, int8, args)
        irs["INT8"] = (int8, int8_contract, int8_all)
    with tempfile.TemporaryDirectory() as work:
        twin = "FP32" if contract["precision"] == "FP16" else "FP16"
        twin_xml = twin_ir(args.deploy, contract, twin, work)
        twin_compiled, twin_contract = infer.load(twin_xml)
        twin_all = ir_detections(
            twin_compiled, twin_contract, reference.images_bgr, reference.threshold, f"verify_ir ({twin})"
        )
        irs[twin] = (twin_compiled, twin_contract, twin_all)
        result["conversion"] = conversion_check(reference, irs["FP32"][2])
        fp32_xml = twin_xml if twin == "FP32" else args.ir
        result["proof"] = prove(detector, reference, (compiled, contract), fp32_xml, int8_model)
        result["side_by_side"] = side_by_side(reference, detector, irs, args.min_score, args.onnx, args.litert)
    result["latency"] = latency_summary(result["side_by_side"], contract["precision"])
    result["cpu"] = cpu_description(compiled)
    write_differences(args.differences, result)
    Path(args.out).write_text(json.dumps(result, indent=1))
    log_result(result, reference)
    check_proof(result, args)


def log_result(result, reference):
    checked = result["proof"]
    for network in checked["networks"] + ([checked["int8_network"]] if "int8_network" in checked else []):
        log(f"verify_ir: {proof.network_summary(network)}")
    postprocessing = checked["postprocessing"]
    if postprocessing:
        log(f"verify_ir: {proof.postprocessing_summary(postprocessing)}")
    log(
        f"verify_ir: reported: {summary(result)} vs MXNet {reference.mxnet_map:.4f}, "
        f"at {result['inference_precision']['ran']}"
    )
    conversion = result["conversion"]
    log(
        f"verify_ir: the FP32 IR's mAP {conversion['ir_map_voc07']:.4f} vs MXNet {reference.mxnet_map:.4f} "
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


def conversion_check(reference, fp32_detections):
    """The FP32 IR's mAP against MXNet's: the same weights, so any difference is the conversion's."""
    fp32_map = voc07(reference, fp32_detections)
    return {"weights": "FP32", "ir_map_voc07": fp32_map, "map_difference": abs(fp32_map - reference.mxnet_map)}


def check_proof(result, args):
    problems = proof_problems(result["proof"])
    conversion = result["conversion"]
    if conversion["map_difference"] > MAP_TOLERANCE:
        problems.append(
            f"the FP32 IR's mAP {conversion['ir_map_voc07']:.4f} differs from MXNet's "
            f"{result['mxnet_map_voc07']:.4f} by more than {MAP_TOLERANCE}"
        )
    int8 = result.get("int8")
    if int8 and int8["map_drop"] > int8["max_map_drop"]:
        problems.append(
            f"the INT8 IR's mAP {int8['ir_map_voc07']:.4f} is {int8['map_drop']:.4f} below MXNet's "
            f"{result['mxnet_map_voc07']:.4f}, more than int8_max_map_drop {int8['max_map_drop']}"
        )
    if problems:
        raise UserError(
            "the IR does not compute what the MXNet model computes: "
            + "; ".join(problems)
            + f" (the detections that differ at the parity threshold are listed in {args.differences})"
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
