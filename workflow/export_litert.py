"""export_litert: the network as LiteRT (TensorFlow Lite) models, float32 and full-integer INT8, proven with LiteRT's
interpreter against MXNet.

network.onnx (export_onnx: the deploy network without MultiBoxDetection), its channel ranges equalized on the train
records (all of them up to CALIBRATION_IMAGES), is converted by onnx2tf to a TensorFlow function and by TFLite's
converter to model_float32.tflite and, unless --int8 none (litert_int8), the full-integer model_int8.tflite: every op
in int8, uint8 pixels in, int8 outputs, calibrated on the same images. workflow/device/litert_infer.py, shipped beside
them, runs either and does MultiBoxDetection's post-processing in numpy (infer.py's).

The proof (workflow/lib/proof.py; docs/numbers.md, "The proofs"), or the stage fails naming what differs: on every val
image, fed through litert_infer.py, the float32 model's class probabilities and box offsets must be MXNet's within
proof.NETWORK_TOLERANCE; the contract's anchors, variances, post-processing settings and class names must be the deploy
model's; litert_infer.py's post-processing must keep on synthetic network outputs the detections the deploy graph's
MultiBoxDetection keeps on them; and the float32 model's val mAP must be within parity.MAP_TOLERANCE of MXNet's. The
INT8 model's val mAP must be at most --max-map-drop below MXNet's (its network difference is reported: quantization
changes it by design): when it is not, --int8 required fails the stage and --int8 when-within-budget leaves the model
out of litert.contract.json (what is shipped) with a warning and the reason in verify.json. Reported: the detections
that pair with MXNet's at the parity threshold (the differences file lists the others), and the time per image of the
models and MXNet (resize, inference and post-processing), median after warm-up.
"""

import argparse
import json
import os
import tempfile
import time
from itertools import islice
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter (CUDA probing) before its import

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402

from workflow.device import litert_infer  # noqa: E402
from workflow.lib.cli import Progress, UserError, log, run_main  # noqa: E402
from workflow.lib.detector import Detector, read_records  # noqa: E402
from workflow.lib.equalization import equalize  # noqa: E402
from workflow.lib import proof  # noqa: E402
from workflow.lib.metrics import evaluate_detections  # noqa: E402
from workflow.lib.networks import VARIANCES  # noqa: E402
from workflow.lib.parity import MAP_TOLERANCE, MATCH_IOU, TIMED_IMAGES, as_rows, median_ms, pair_images  # noqa: E402

CALIBRATION_IMAGES = 300
# onnx2tf checks its conversion op by op on 20 sample images it downloads, unless this file is in the working folder
ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"
MODELS = {"float32": "model_float32.tflite", "int8": "model_int8.tflite"}
INT8_CHOICES = ("none", "required", "when-within-budget")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m workflow.export_litert", description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", required=True, type=Path, help="network.onnx of export_onnx")
    parser.add_argument("--deploy", required=True, help="deploy.json of the MXNet deploy model")
    parser.add_argument("--train-rec", required=True, help="calibration images")
    parser.add_argument("--val-rec", required=True)
    parser.add_argument("--min-score", type=float, required=True, help="compare detections scoring at least this")
    parser.add_argument("--iou-threshold", type=float, required=True, help="of a correct detection in the mAP")
    parser.add_argument(
        "--int8",
        choices=INT8_CHOICES,
        required=True,
        help="model_int8.tflite: none, required (a miss fails the stage) or when-within-budget (shipped only then)",
    )
    parser.add_argument("--max-map-drop", type=float, required=True, help="largest INT8 val mAP drop from MXNet's")
    parser.add_argument("--out-dir", required=True, type=Path, help="folder for the models, contract, verify.json")
    parser.add_argument("--differences", required=True, help="text file listing the detections that differ (a log)")
    return parser.parse_args(argv)


def resized(records, size):
    return [cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR) for rgb, _ in records]


def calibration_images(train_rec, size):
    """The first CALIBRATION_IMAGES train records' images, resized to the input size."""
    return resized(list(islice(read_records(train_rec), CALIBRATION_IMAGES)), size)


def equalized(network, calibration, **settings):
    """network.onnx with its channel ranges equalized on the calibration images (workflow/lib/equalization.py; settings:
    its exponent and max_gain): the same function in float, and an INT8 model that follows it more closely
    (docs/devices.md)."""
    model = onnx.load(network)
    images = [rgb.transpose(2, 0, 1)[np.newaxis].astype(np.float32) for rgb in calibration]
    chains = equalize(model, images, **settings)
    log(f"export_litert: {chains} Conv-BatchNorm-ReLU-Conv chains equalized on {len(calibration)} train images")
    return model


def keras_network(model, work, calibration):
    """onnx2tf's Keras model of the ONNX model, built in work (its op checks run on calibration images)."""
    import onnx2tf

    onnx.save(model, work / "network.onnx")
    np.save(
        work / ONNX2TF_SAMPLE, np.stack([cv2.resize(rgb, (128, 128)) for rgb in calibration[:20]]) / np.float32(255)
    )
    here = Path.cwd()
    os.chdir(work)
    try:
        return onnx2tf.convert(
            input_onnx_file_path=str(work / "network.onnx"),
            output_folder_path=str(work / "onnx2tf"),
            not_use_onnxsim=True,
            disable_model_save=True,
            non_verbose=True,
        )
    finally:
        os.chdir(here)


def converter(keras_model, output_names):
    """TFLite's converter for the Keras model as a function of `image` returning the ONNX outputs by name: the
    .tflite models' signature (converting the function, not the Keras model, spares two Keras serializations)."""
    import tensorflow as tf

    def network(image):
        return dict(zip(output_names, keras_model(image)))

    signature = [tf.TensorSpec(keras_model.inputs[0].shape, tf.float32, "image")]
    function = tf.function(network, input_signature=signature).get_concrete_function()
    return tf.lite.TFLiteConverter.from_concrete_functions([function], keras_model)


def int8_converter(keras_model, output_names, calibration):
    """Full-integer quantization: int8 ops, uint8 pixels in, int8 out, calibrated on the images."""
    import tensorflow as tf

    quantizer = converter(keras_model, output_names)
    quantizer.optimizations = [tf.lite.Optimize.DEFAULT]
    quantizer.representative_dataset = lambda: ({"image": image[None].astype(np.float32)} for image in calibration)
    quantizer.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    quantizer.inference_input_type = tf.uint8
    quantizer.inference_output_type = tf.int8
    return quantizer


def convert(model, calibration, models, out_dir):
    """Each of models ({precision: file name}) from the ONNX model, written to out_dir."""
    output_names = [output.name for output in model.graph.output]
    with tempfile.TemporaryDirectory() as work:
        started = time.monotonic()
        keras_model = keras_network(model, Path(work), calibration)
        log(f"export_litert: network.onnx to TensorFlow by onnx2tf in {time.monotonic() - started:.0f} s")
    for precision, name in models.items():
        started = time.monotonic()
        if precision == "int8":
            tflite = int8_converter(keras_model, output_names, calibration).convert()
        else:
            tflite = converter(keras_model, output_names).convert()
        (out_dir / name).write_bytes(tflite)
        log(f"export_litert: {name} in {time.monotonic() - started:.0f} s")


def litert_contract(network_contract, models):
    """network.onnx's contract for the .tflite models: NHWC in, the input's type depends on the model."""
    size = network_contract["input_shape"][-1]
    return {
        **network_contract,
        "model": models,
        "input": "image",
        "input_shape": [1, size, size, 3],
        "layout": "NHWC",
        "input_range": "the image resized to the input size (stretched): float32 0-255 (float32 model), uint8 (int8)",
        "runner": "litert_infer.py",
    }


def model_outputs(runner, contract, images_bgr, name):
    """(each image's network outputs, each image's detections down to score 0) of a model through litert_infer.py."""
    progress = Progress(f"export_litert ({name})", len(images_bgr))
    outputs, found = [], []
    for index, image in enumerate(images_bgr):
        outputs.append(
            litert_infer.network_outputs(runner, litert_infer.model_input(image, contract), contract["heads"])
        )
        found.append(as_rows(litert_infer.detections(*outputs[-1], contract, 0.0)))
        progress.update(index + 1)
    return outputs, found


def prove(detector, out, val_rec, args):
    """verify.json's content: the proof (each model's network, the contract, the post-processing; the INT8 model's
    network reported), each model's val mAP against MXNet's, the pairing and latency (reported)."""
    records = list(read_records(val_rec))
    images_bgr = [cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) for rgb, _ in records]
    truths, classes = [truth for _, truth in records], detector.info["classes"]
    mxnet_all = [detector.detect([rgb])[0] for rgb, _ in records]
    mxnet_outputs = [detector.network_outputs(rgb) for rgb, _ in records]
    mxnet_map = evaluate_detections(truths, mxnet_all, len(classes), args.iou_threshold).map_voc07
    timed = list(range(min(TIMED_IMAGES, len(records))))
    result = {"images": len(records), "mxnet_map_voc07": mxnet_map, "latency": {}}
    for precision, name in json.loads((out / litert_infer.CONTRACT).read_text())["model"].items():
        runner, contract = litert_infer.load(out / name)
        outputs, found = model_outputs(runner, contract, images_bgr, name)
        comparison = proof.NetworkComparison(f"the LiteRT {precision} model", VARIANCES, classes)
        for reference, output in zip(mxnet_outputs, outputs):
            comparison.add(reference, output)
        result[f"{precision}_network"] = comparison.result()
        result[f"{precision}_map_voc07"] = evaluate_detections(
            truths, found, len(classes), args.iou_threshold
        ).map_voc07
        result[f"{precision}_paired"] = pair_images(
            mxnet_all, found, args.min_score, contract["input_shape"][1], classes, f"LiteRT {precision}"
        )
        result["latency"][f"{precision}_ms"] = median_ms(
            lambda i: litert_infer.detect(runner, images_bgr[i], contract, 0.0), timed
        )
    if "int8_network" in result:
        result["int8_network"].update(problems=[], note=proof.INT8_NETWORK_NOTE)
    result["proof"] = contract_proof(detector, contract)
    result["latency"]["mxnet_ms"] = median_ms(lambda i: detector.detect([records[i][0]]), timed)
    result["latency"]["images_timed"] = len(timed)
    result.update(min_score=args.min_score, match_iou=MATCH_IOU)
    result.update(map_tolerance=MAP_TOLERANCE, max_map_drop=args.max_map_drop)
    return result


def contract_proof(detector, contract):
    """The contract's anchors, variances, settings and class names against the deploy model's, and litert_infer.py's
    post-processing with them against the deploy graph's MultiBoxDetection on the same synthetic network outputs."""
    anchors, variances = contract["anchors"], np.asarray(contract["variances"], np.float32)
    checked = {
        "anchors": proof.anchor_problems("litert.contract.json", anchors, variances, detector.anchors, VARIANCES),
        "settings": proof.settings_problems("litert.contract.json", contract, detector.contract_settings()),
        "postprocessing": None,
    }
    if anchors.shape == detector.anchors.shape:
        synthetic = proof.synthetic_outputs(
            detector.anchors, VARIANCES, len(detector.info["classes"]), detector.settings
        )
        expected = [detector.postprocess(prob, offsets) for prob, offsets in synthetic]
        found = [litert_infer.detections(prob, offsets, contract, 0.0) for prob, offsets in synthetic]
        checked["postprocessing"] = proof.compare_postprocessing("litert_infer.py", expected, found)
    return checked


def float_problems(result):
    checked = result["proof"]
    found = result["float32_network"]["problems"] + checked["anchors"] + checked["settings"]
    if checked["postprocessing"]:
        found += checked["postprocessing"]["problems"]
    if abs(result["float32_map_voc07"] - result["mxnet_map_voc07"]) > MAP_TOLERANCE:
        found.append(
            f"the float32 model's mAP {result['float32_map_voc07']:.4f} is not MXNet's "
            f"{result['mxnet_map_voc07']:.4f} (tolerance {MAP_TOLERANCE})"
        )
    return found


def int8_problem(result):
    """Why the INT8 model misses its budget, or None when it holds it (or there is none)."""
    drop = result["mxnet_map_voc07"] - result.get("int8_map_voc07", result["mxnet_map_voc07"])
    if drop <= result["max_map_drop"]:
        return None
    return (
        f"the INT8 model's mAP {result['int8_map_voc07']:.4f} is {drop:.4f} below MXNet's "
        f"{result['mxnet_map_voc07']:.4f} (int8_max_map_drop {result['max_map_drop']})"
    )


def summary(result):
    paired = result["float32_paired"]
    postprocessing = result["proof"]["postprocessing"]
    return (
        f"{proof.network_summary(result['float32_network'])}; "
        + (f"{proof.postprocessing_summary(postprocessing)}; " if postprocessing else "")
        + f"val mAP: MXNet {result['mxnet_map_voc07']:.4f}, LiteRT float32 {result['float32_map_voc07']:.4f} "
        f"(reported: {paired['matched']} detections paired, {paired['agreement']:.1%})"
        + (f", INT8 {result['int8_map_voc07']:.4f}" if "int8_map_voc07" in result else "")
    )


def main(argv=None):
    args = parse_args(argv)
    detector = Detector(args.deploy)
    size = detector.data_shape
    network_contract = json.loads(args.network.with_suffix(".onnx.contract.json").read_text())
    calibration = calibration_images(args.train_rec, size)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    models = {precision: name for precision, name in MODELS.items() if precision == "float32" or args.int8 != "none"}
    contract = litert_contract(network_contract, models)
    (args.out_dir / litert_infer.CONTRACT).write_text(json.dumps(contract))
    convert(equalized(args.network, calibration), calibration, models, args.out_dir)
    result = prove(detector, args.out_dir, args.val_rec, args)
    differences = [f"# {summary(result)}"]
    for precision in models:
        differences += [f"{precision}: {line}" for line in result[f"{precision}_paired"].pop("differences")]
    Path(args.differences).write_text("\n".join(differences) + "\n")
    log(f"export_litert: {summary(result)}")
    latency = result["latency"]
    timed = ", ".join(f"{precision} {latency[f'{precision}_ms']:.1f} ms" for precision in models)
    log(f"export_litert: per image: {timed}, MXNet {latency['mxnet_ms']:.1f} ms")
    found, missed = float_problems(result), int8_problem(result)
    if missed and args.int8 == "required":
        found.append(missed)
    if found:
        raise UserError(
            f"the LiteRT models do not compute what the MXNet model computes: {'; '.join(found)} (the detections that "
            f"differ at the parity threshold are in {args.differences})"
        )
    if missed:
        log(
            f"WARNING: export_litert: {missed}: {MODELS['int8']} is not shipped (it stays in {args.out_dir} to look "
            "at; litert_int8: true makes such a miss stop the run)"
        )
        result["int8_not_shipped"] = missed
        del contract["model"]["int8"]
        (args.out_dir / litert_infer.CONTRACT).write_text(json.dumps(contract))
    (args.out_dir / "verify.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    run_main(main)
