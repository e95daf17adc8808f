"""The DeepLens Lambda (workflow/device/deeplens/) against the stand-ins of awscam, mo and greengrasssdk, with a
seeded tiny SSD (an untrained one, so many near-tied, overlapping boxes) on real sample images; and the rehearsal's
proof, which holds on it and fails on every real defect of the DeepLens path, naming what differs.

Needs the optimizer environment (Model Optimizer, OpenVINO, MXNet 1.9.1):
    .venv/bin/python -m workflow.orchestrator.envs exec optimizer -- python -m pytest tests/optimizer
"""

import hashlib
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import pytest

from conftest import CLASSES as TINY_CLASSES
from conftest import NUM_CLASSES, save_deploy, seeded_weights, synthetic_images, tie_anchors, write_rec

from workflow import deeplens_model, deeplens_rehearsal
from workflow.deeplens_model import fold_preprocessing, write_model
from workflow.deeplens_package import LAMBDA_FILES, model_settings
from workflow.lib.cli import UserError
from workflow.lib.networks import MEAN_RGB, build_deploy_symbol

REPO = Path(__file__).resolve().parents[2]
SIDE, CLASSES, NMS_THRESHOLD, MIN_SCORE = 64, ["swoosh", "stripes"], 0.45, 0.3
INFO = {"data_shape": SIDE, "classes": CLASSES, "epoch": 0}


@pytest.fixture(scope="module")
def deploy_model():
    """(symbol, arg params, aux params) of a seeded tiny SSD with force_nms."""
    symbol = build_deploy_symbol("tiny", len(CLASSES), SIDE, force_nms=True, nms_threshold=NMS_THRESHOLD)
    rng = np.random.default_rng(0)
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=(1, 3, SIDE, SIDE))
    args = {
        name: mx.nd.array(rng.normal(0, 1 / np.sqrt(np.prod(shape[1:])), shape))
        for name, shape in zip(symbol.list_arguments(), arg_shapes)
        if name != "data"
    }
    aux = {
        name: mx.nd.array(np.full(shape, 50.0 if "var" in name else 0.0))
        for name, shape in zip(symbol.list_auxiliary_states(), aux_shapes)
    }
    return symbol, args, aux


@pytest.fixture(scope="module")
def rehearsal(deploy_model, tmp_path_factory):
    """The Lambda run on [no frame, 3 sample frames], its first mo.optimize failing: (messages, FIFO frames, the
    frames given)."""
    symbol, args, aux = deploy_model
    work = tmp_path_factory.mktemp("deeplens")
    graph, folded_args = fold_preprocessing(json.loads(symbol.tojson()), args, MEAN_RGB, 1.0)
    write_model(work / "artifacts", "tiny", graph, folded_args, aux)
    for name in LAMBDA_FILES[:2]:
        shutil.copy(REPO / "workflow" / "device" / "deeplens" / name, work / name)
    description = {"model_name": "tiny", "input_width": SIDE, "input_height": SIDE, "force_nms": True}
    settings = model_settings(
        {**description, "nms_threshold": NMS_THRESHOLD}, {"score_threshold": {"overall": {"threshold": None}}}
    )
    (work / "model.json").write_text(json.dumps(settings))
    (work / "labels.txt").write_text("\n".join(CLASSES))
    fifo = work / "results.mjpeg"
    os.mkfifo(fifo)
    reader = deeplens_rehearsal.FifoReader(fifo)
    reader.start()
    lambda_function, awscam, greengrasssdk, mo, displays = deeplens_rehearsal.import_lambda(
        work, work / "artifacts", fifo
    )
    real_optimize, calls = mo.optimize, []

    def optimize_failing_once(*arguments):
        calls.append(arguments)
        return (2, "") if len(calls) == 1 else real_optimize(*arguments)

    mo.optimize = optimize_failing_once
    frames = [cv2.imread(str(p)) for p in sorted((REPO / "data" / "sample" / "JPEGImages").glob("*.jpg"))[:3]]
    os.environ.update(AWS_IOT_THING_NAME="test-thing", DETECTION_THRESHOLD=str(MIN_SCORE - 0.01), RETRY_SECONDS="0")
    awscam.play([None] + frames)
    with pytest.raises(awscam.EndOfFrames):
        lambda_function.infinite_infer_run()
    for display in displays:
        display.join(10)
    reader.join(10)
    messages = [(topic, json.loads(payload)) for topic, payload in greengrasssdk.published]
    return messages, deeplens_rehearsal.jpeg_frames(reader.data), frames, calls, lambda_function


def test_errors_are_published_and_retried_not_raised(rehearsal):
    messages, _, frames, calls, _ = rehearsal
    assert {topic for topic, _ in messages} == {"$aws/things/test-thing/infer"}
    errors = [payload["error"] for _, payload in messages if "error" in payload]
    assert errors == [
        "ModelError: mo.optimize(tiny) failed with error 2",
        "OSError: no frame from the camera (awscam.getLastFrame)",
    ]
    assert calls == [("tiny", SIDE, SIDE)] * 2  # optimized again after the failure, then kept
    assert len(messages) == 2 + len(frames)


def test_frames_reach_the_display_fifo_as_jpegs(rehearsal):
    _, shown, _, _, _ = rehearsal
    assert shown and all(frame.shape == (480, 858, 3) for frame in shown)


def parsed(*rows):
    return {"ssd": [dict(zip(("label", "prob", "xmin", "ymin", "xmax", "ymax"), row)) for row in rows]}


def test_nms_threshold_scaling_and_label_offset(rehearsal):
    lambda_function = rehearsal[4]
    settings = {"threshold": 0.2, "force_nms": True, "nms_threshold": 0.45, "input_width": 100, "input_height": 50}
    settings.update(labels=CLASSES, label_offset=0)
    boxes = parsed([0, 0.9, 10, 10, 50, 40], [1, 0.8, 12, 10, 50, 40], [1, 0.7, 60, 0, 90, 20], [0, 0.1, 0, 0, 9, 9])
    across = lambda_function.detections_in_frame(boxes, settings, (100, 300, 3))  # frame 300 wide, 100 high
    assert [(d["label"], d["score"], d["box"]) for d in across] == [
        ("swoosh", 0.9, [30.0, 20.0, 150.0, 80.0]),
        ("stripes", 0.7, [180.0, 0.0, 270.0, 40.0]),
    ]
    per_class = lambda_function.detections_in_frame(boxes, dict(settings, force_nms=False), (100, 300, 3))
    assert [d["score"] for d in per_class] == [0.9, 0.8, 0.7]
    shifted = lambda_function.detections_in_frame(boxes, dict(settings, label_offset=1), (100, 300, 3))
    assert [d["label"] for d in shifted] == ["class -1", "swoosh"]
    assert lambda_function.iou(parsed([0, 1, 0, 0, 2, 2])["ssd"][0], parsed([0, 1, 1, 0, 3, 2])["ssd"][0]) == 1 / 3


def test_each_anchors_best_class_only_as_multibox_detection_keeps_it(rehearsal):
    """DetectionOutput gives a row for every class of an anchor above its threshold, with the anchor's box."""
    lambda_function = rehearsal[4]
    settings = {"threshold": 0.2, "force_nms": False, "nms_threshold": 0.45, "input_width": 100, "input_height": 50}
    settings.update(labels=CLASSES, label_offset=0)
    boxes = parsed([1, 0.3, 10, 10, 50, 40], [0, 0.6, 10, 10, 50, 40], [1, 0.5, 60, 0, 90, 20])
    kept = lambda_function.detections_in_frame(boxes, settings, (50, 100, 3))
    assert [(d["label"], d["score"]) for d in kept] == [("swoosh", 0.6), ("stripes", 0.5)]


@pytest.fixture(scope="module")
def conversions(tmp_path_factory):
    """The stand-in mo's conversions, each made once for the module: the same model files (by their sha256) at the
    same precision give the same IR, so the rehearsals below copy it instead of running the Model Optimizer."""
    sys.path.insert(0, str(deeplens_rehearsal.STANDINS))
    import mo

    sys.path.remove(str(deeplens_rehearsal.STANDINS))
    cache, real = tmp_path_factory.mktemp("conversions"), mo.convert

    def convert(model_name, input_width, input_height, output_dir, compress_to_fp16):
        files = sorted(Path(mo.ARTIFACTS).glob(f"{model_name}-*"))
        key = hashlib.sha256(b"".join(f.read_bytes() for f in files) + bytes([compress_to_fp16])).hexdigest()[:16]
        if not (cache / key).is_dir():
            error, xml = real(model_name, input_width, input_height, str(cache / key), compress_to_fp16)
            assert error == 0, mo.log[-1]
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        for suffix in (".xml", ".bin"):
            shutil.copy(cache / key / f"{model_name}{suffix}", Path(output_dir) / f"{model_name}{suffix}")
        return 0, str(Path(output_dir) / f"{model_name}.xml")

    mo.convert = convert
    yield
    mo.convert = real


def deeplens_path(folder, args, aux, val_rec):
    """What the deploy, deeplens_model and deeplens_package stages write for the tiny model: (deploy.json,
    deeplens_model.json, the Lambda zip)."""
    deploy_json = save_deploy(folder / "deploy", args, aux)
    model_info = folder / "deeplens_model" / "deeplens_model.json"
    deeplens_model.main(
        ["--deploy", str(deploy_json), "--val-rec", str(val_rec), "--out-dir", str(model_info.parent / "model")]
        + ["--out", str(model_info)]
    )
    description = json.loads(model_info.read_text())
    upload = folder / "upload"
    upload.mkdir()
    for name in LAMBDA_FILES[:2]:
        shutil.copy(REPO / "workflow" / "device" / "deeplens" / name, upload / name)
    threshold = {"score_threshold": {"overall": {"threshold": 0.3}}}
    (upload / "model.json").write_text(json.dumps(model_settings(description, threshold)))
    (upload / "labels.txt").write_text("".join(f"{name}\n" for name in TINY_CLASSES))
    return deploy_json, model_info, zip_folder(upload)


def zip_folder(upload):
    with zipfile.ZipFile(upload / "lambda.zip", "w") as archive:
        for name in LAMBDA_FILES:
            archive.write(upload / name, name)
    return upload / "lambda.zip"


def rehearse(deploy_json, model_info, zip_path, val_rec, folder):
    deeplens_rehearsal.main(
        ["--deploy", str(deploy_json), "--model-info", str(model_info), "--zip", str(zip_path)]
        + ["--val-rec", str(val_rec), "--min-score", "0.05", "--out", str(folder / "rehearsal.json")]
        + ["--differences", str(folder / "differences.txt")]
    )
    return json.loads((folder / "rehearsal.json").read_text())


@pytest.fixture(scope="module")
def tiny_weights():
    return seeded_weights(build_deploy_symbol("tiny", NUM_CLASSES, SIDE))


@pytest.fixture(scope="module")
def val_rec(tmp_path_factory):
    truth = np.array([[0, 0.1, 0.1, 0.6, 0.6, 0]], dtype=np.float32)
    return write_rec(tmp_path_factory.mktemp("val") / "val.rec", [(image, truth) for image in synthetic_images(4)])


@pytest.fixture(scope="module")
def path(tiny_weights, val_rec, conversions, tmp_path_factory):
    return deeplens_path(tmp_path_factory.mktemp("deeplens"), *tiny_weights, val_rec)


def test_the_rehearsal_proves_the_deeplens_path_of_an_untrained_model(path, val_rec, tmp_path):
    result = rehearse(*path, val_rec, tmp_path)
    checked = result["proof"]
    twin, deeplens = checked["networks"]
    assert (twin["reference"], deeplens["reference"]) == ("MXNet", "the same IR with FP32 weights rounded to FP16")
    assert twin["max_class_prob_difference"] < 1e-5 and deeplens["max_class_prob_difference"] <= 1e-6
    assert checked["anchors"] == [] and twin["problems"] == deeplens["problems"] == []
    postprocessing = checked["postprocessing"]
    assert postprocessing["model"] == "the Lambda" and postprocessing["mxnet_detections"] > 50
    assert postprocessing["problems"] == [] and postprocessing["tolerance"] == deeplens_rehearsal.PUBLISHED_TOLERANCE
    assert result["images"] == 4 and result["messages"] == 4 and result["display_frames"] == 4


def test_anchors_tied_within_fp16_resolution_flip_the_lambdas_boxes_but_not_the_proof(
    tiny_weights, val_rec, conversions, tmp_path
):
    path = deeplens_path(tmp_path, tie_anchors(tiny_weights[0]), tiny_weights[1], val_rec)
    result = rehearse(*path, val_rec, tmp_path)
    assert result["agreement"] < 0.97 and result["only_mxnet"] > 10  # the pairing, reported
    assert result["proof"]["postprocessing"]["problems"] == []


def edit_lambda(upload, old, new):
    path = upload / "lambda_function.py"
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))


def edit_json(path, **changes):
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def read_the_frame_befores_output(upload):
    edit_lambda(upload, "    model = None\n", "    model = None\n    outputs = []\n")
    edit_lambda(
        upload,
        "parsed = model.parseResult(MODEL_TYPE, model.doInference(resized))",
        "outputs.append(model.doInference(resized))\n            parsed = model.parseResult(MODEL_TYPE, outputs[0])"
        "\n            del outputs[:-1]",
    )


POST_PROCESSING = r"on synthetic network outputs \d, MXNet's MultiBoxDetection keeps \d+ detections and the Lambda's"
LAMBDA_DEFECTS = {
    "the Lambda scaling boxes by the wrong frame size": (
        lambda upload: edit_lambda(upload, "float(frame_shape[1]) / settings", "float(frame_shape[0]) / settings"),
        POST_PROCESSING,
    ),
    "the Lambda reading the wrong output (the frame before's)": (read_the_frame_befores_output, POST_PROCESSING),
    "nms_threshold changed": (lambda upload: edit_json(upload / "model.json", nms_threshold=0.5), POST_PROCESSING),
    "force_nms flipped": (lambda upload: edit_json(upload / "model.json", force_nms=False), POST_PROCESSING),
    "classes swapped": (lambda upload: (upload / "labels.txt").write_text("b\na\nc\n"), POST_PROCESSING),
}


@pytest.mark.parametrize("defect", LAMBDA_DEFECTS)
def test_a_defective_lambda_fails_the_proof_naming_what_differs(path, val_rec, tmp_path, defect):
    deploy_json, model_info, zip_path = path
    upload = tmp_path / "upload"
    shutil.copytree(zip_path.parent, upload)
    make, message = LAMBDA_DEFECTS[defect]
    make(upload)
    with pytest.raises(
        UserError, match="^the DeepLens Lambda does not publish what the MXNet model detects: " + message
    ):
        rehearse(deploy_json, model_info, zip_folder(upload), val_rec, tmp_path)


def test_a_deeplens_model_with_one_convolution_scaled_by_1_02_fails_the_proof(path, val_rec, tmp_path):
    deploy_json, model_info, zip_path = path
    shutil.copytree(model_info.parent, tmp_path / "deeplens_model")
    params = next((tmp_path / "deeplens_model" / "model").glob("*.params"))
    weights = mx.nd.load(str(params))
    name = sorted(key for key in weights if key.endswith("conv_weight") and "tiny2" in key)[0]
    weights[name] = weights[name] * 1.02
    mx.nd.save(str(params), weights)
    message = r"the DeepLens IR's FP32 twin's (class probabilities|box offsets \(times the variances\)) differ"
    with pytest.raises(UserError, match=message):
        rehearse(deploy_json, tmp_path / "deeplens_model" / "deeplens_model.json", zip_path, val_rec, tmp_path)
