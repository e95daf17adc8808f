"""Quantize stage: an INT8 OpenVINO IR for CPU targets, within an mAP budget on val.

The deploy model is converted to an FP32 IR (workflow.optimize, the same input contract as the shipped IR) and
quantized after training by NNCF's `quantize_with_accuracy_control`: calibrated on the train records fed through
the IR's own contract (infer.preprocess; all of them up to CALIBRATION_IMAGES), with the detection head's
anchors (PriorBox and the ops that only feed them) and the ops between the heads and the outputs (reshapes, softmax,
concatenations) left in float, and validated by our val mAP (infer.detect's post-processing as deployed, VOC07 by
workflow.lib.metrics). NNCF restores layers to float until the
drop from the FP32 IR's mAP is at most --max-map-drop (absolute); when even the restored model misses it, the
stage fails saying what it reached. Every model NNCF compiles runs at an explicit inference precision (f32), so
the choice means the same on every CPU (the CPU plugin's own default is bf16 on CPUs with AVX512_BF16 or AMX).
"""

import argparse
import contextlib
import json
import logging
import tempfile
import time
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import openvino as ov

from workflow.lib import model_optimizer
from workflow.device import infer
from workflow.lib.cli import UserError, log, run_main
from workflow.lib.detector import read_records
from workflow.lib.metrics import evaluate_detections

CALIBRATION_IMAGES = 300  # NNCF's default subset; fewer train records: all of them
POSTPROCESSING = ("PriorBox", "PriorBoxClustered", "Result")
# ops that only move, reshape or normalise what feeds the outputs or the anchors (no weights, no features computed)
POSTPROCESSING_FEEDERS = ("ShapeOf", "StridedSlice", "Gather", "Unsqueeze", "Squeeze", "Reshape", "Transpose")
POSTPROCESSING_FEEDERS += ("Concat", "Softmax", "Convert")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m workflow.quantize", description=__doc__.split("\n\n")[0])
    parser.add_argument("--deploy", required=True, type=Path, help="deploy.json of the deploy stage")
    parser.add_argument("--train-rec", required=True, type=Path, help="calibration images")
    parser.add_argument("--val-rec", required=True, type=Path, help="the images the mAP is measured on")
    parser.add_argument("--max-map-drop", required=True, type=float, help="largest VOC07 val mAP drop (absolute)")
    parser.add_argument("--iou-threshold", required=True, type=float)
    parser.add_argument("--color", choices=("RGB", "BGR"), required=True)
    parser.add_argument("--mean-in-ir", action=argparse.BooleanOptionalAction, required=True)
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--summary", required=True, type=Path, help="JSON: what was quantized and reached")
    parser.add_argument("--log", required=True, type=Path, help="file that keeps the full Model Optimizer output")
    return parser.parse_args(argv)


def fp32_ir(args, work):
    """The deploy model as an FP32 IR in `work`, with the shipped IR's input contract: (xml path, contract)."""
    mean = "--mean-in-ir" if args.mean_in_ir else "--no-mean-in-ir"
    xml = model_optimizer.optimize(
        model_optimizer.parse_args(
            ["--deploy", str(args.deploy), "--precision", "FP32", "--color", args.color, mean]
            + ["--out-dir", str(work), "--model-name", args.model_name, "--log", str(args.log)]
        )
    )
    return xml, json.loads(xml.with_suffix(".contract.json").read_text())


def postprocessing_scope(model):
    """Names of the anchors' ops (PriorBox) and of the ops whose every output only feeds them or the IR's outputs."""
    scope = set()
    for op in reversed(model.get_ordered_ops()):  # consumers before the ops feeding them
        kind = op.get_type_name()
        consumers = [
            target.get_node().get_friendly_name() for out in op.outputs() for target in out.get_target_inputs()
        ]
        if kind in POSTPROCESSING or (kind in POSTPROCESSING_FEEDERS and consumers and set(consumers) <= scope):
            scope.add(op.get_friendly_name())
    if not any(op.get_type_name() == "PriorBox" for op in model.get_ordered_ops()):
        raise UserError("the IR has no PriorBox: not an SSD deploy model")
    return sorted(name for name in scope if name not in {result.get_friendly_name() for result in model.get_results()})


@contextlib.contextmanager
def compiled_at(precision):
    """Every model compiled inside (NNCF's too) computes at `precision` unless told otherwise: NNCF compiles with
    the CPU plugin's default, which is bf16 on CPUs with AVX512_BF16 or AMX and f32 elsewhere."""
    compile_model = ov.Core.compile_model

    def explicit(core, model, device_name=None, config=None, **kwargs):
        return compile_model(
            core, model, device_name, {"INFERENCE_PRECISION_HINT": precision, **(config or {})}, **kwargs
        )

    with mock.patch.object(ov.Core, "compile_model", explicit):
        yield


class ValMap:
    """NNCF's validation function: the VOC07 mAP of a compiled IR on (BGR image, ground truth) items, detections
    as infer.detect returns them (the deploy model's detection threshold, NMS as deployed)."""

    def __init__(self, contract, num_classes, threshold, iou_threshold):
        self.contract, self.num_classes = contract, num_classes
        self.threshold, self.iou_threshold = threshold, iou_threshold

    def __call__(self, compiled, items):
        if infer.precision_ran(compiled) != self.contract["inference_precision"]:
            raise RuntimeError(f"the IR was compiled at {infer.precision_ran(compiled)}, not at the contract's")
        truths, detections = [], []
        for image_bgr, truth in items:
            rows = infer.detect(compiled, image_bgr, self.contract, self.threshold)
            detections.append(np.array(rows, dtype=np.float32).reshape(-1, 6))
            truths.append(truth)
        return evaluate_detections(truths, detections, self.num_classes, self.iou_threshold).map_voc07


def bgr_records(rec_path):
    return [(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), truth) for image_rgb, truth in read_records(rec_path)]


def int8_convolutions(model):
    """(convolutions whose input is quantized, all convolutions)."""
    convolutions = [op for op in model.get_ordered_ops() if op.get_type_name() in ("Convolution", "GroupConvolution")]
    quantized = [op for op in convolutions if op.input_value(0).get_node().get_type_name() == "FakeQuantize"]
    return len(quantized), len(convolutions)


def quantize(args):
    import nncf  # here: importing it takes seconds, and argparse errors should not wait for it

    logging.getLogger("nncf").setLevel(logging.WARNING)
    deploy = json.loads(args.deploy.read_text())
    train, val = bgr_records(args.train_rec), bgr_records(args.val_rec)
    if not train or not val:
        raise UserError(
            f"quantize needs train and val images: {len(train)} in {args.train_rec}, {len(val)} in {args.val_rec}"
        )
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as work:
        xml, contract = fp32_ir(args, Path(work))
        model = ov.Core().read_model(xml)
        quantized, summary = quantize_model(
            nncf, model, contract, deploy, train, val, args.max_map_drop, args.iou_threshold
        )
    summary["seconds"] = time.monotonic() - start
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(json.dumps(summary, indent=1) + "\n")
    reached = check_drop(summary, args.max_map_drop)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out_xml = args.out_dir / f"{args.model_name}.xml"
    ov.save_model(quantized, out_xml, compress_to_fp16=False)  # the float layers as validated, not rounded again
    int8_contract = {
        **contract,
        "model": out_xml.name,
        "precision": "INT8",
        "quantization": f"NNCF {nncf.__version__}: {reached}",
    }
    out_xml.with_suffix(".contract.json").write_text(json.dumps(int8_contract, indent=2) + "\n")
    log(f"quantize: {out_xml}: {reached} in {summary['seconds']:.0f} s")


def check_drop(summary, max_map_drop):
    """What the INT8 IR reached, in words; a UserError saying it when the drop is over max_map_drop."""
    reached = (
        f"INT8 val mAP {summary['int8_map_voc07']:.4f} against the FP32 IR's {summary['fp32_ir_map_voc07']:.4f} "
        f"(drop {summary['map_drop']:.4f}, {summary['int8_convolutions']} of {summary['convolutions']} "
        "convolutions in INT8)"
    )
    if summary["map_drop"] > max_map_drop:
        raise UserError(
            f"quantize: even with layers restored to float the INT8 IR misses int8_max_map_drop {max_map_drop}: "
            f"{reached}; allow a larger int8_max_map_drop, or set int8_ir: false and use the FP16/FP32 IR"
        )
    return reached


def quantize_model(nncf, model, contract, deploy, train, val, max_map_drop, iou_threshold):
    """(the INT8 model, what it reached): NNCF's accuracy-controlled quantization at the contract's precision."""
    scope = postprocessing_scope(model)
    val_map = ValMap(contract, len(deploy["classes"]), deploy["threshold"], iou_threshold)

    def to_tensor(item):
        return infer.preprocess(item[0], contract)

    calibration = nncf.Dataset(train, to_tensor)
    validation = nncf.Dataset(val, to_tensor)
    with compiled_at(contract["inference_precision"]):
        fp32_map = val_map(ov.Core().compile_model(model, "CPU"), val)
        log(
            f"quantize: FP32 IR val mAP {fp32_map:.4f} on {len(val)} images; calibrating on "
            f"{min(len(train), CALIBRATION_IMAGES)} train images, {len(scope)} post-processing ops kept in float"
        )
        quantized = nncf.quantize_with_accuracy_control(
            model,
            calibration,
            validation,
            validation_fn=val_map,
            max_drop=max_map_drop,
            drop_type=nncf.DropType.ABSOLUTE,
            subset_size=min(len(train), CALIBRATION_IMAGES),
            ignored_scope=nncf.IgnoredScope(names=scope),
        )
        int8_map = val_map(ov.Core().compile_model(quantized, "CPU"), val)
    int8, convolutions = int8_convolutions(quantized)
    return quantized, {
        "fp32_ir_map_voc07": fp32_map,
        "int8_map_voc07": int8_map,
        "map_drop": fp32_map - int8_map,
        "max_map_drop": max_map_drop,
        "val_images": len(val),
        "calibration_images": min(len(train), CALIBRATION_IMAGES),
        "int8_convolutions": int8,
        "convolutions": convolutions,
        "float_postprocessing_ops": scope,
        "inference_precision": contract["inference_precision"],
        "nncf": nncf.__version__,
    }


def main(argv=None):
    quantize(parse_args(argv))


if __name__ == "__main__":
    run_main(main)
