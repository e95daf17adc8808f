"""The DeepLens Lambda (workflow/device/deeplens/) against the stand-ins of awscam, mo and greengrasssdk, with a
seeded tiny SSD (an untrained one, so many near-tied, overlapping boxes) on real sample images.

Needs the optimizer environment (Model Optimizer, OpenVINO, MXNet 1.9.1):
    .venv/bin/python -m workflow.orchestrator.envs exec optimizer -- python -m pytest tests/optimizer
"""

import json
import os
import shutil
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import pytest

from workflow import deeplens_rehearsal
from workflow.deeplens_model import fold_preprocessing, write_model
from workflow.deeplens_package import LAMBDA_FILES, model_settings
from workflow.lib.detector import Detector
from workflow.lib.networks import MEAN_RGB, build_deploy_symbol
from workflow.lib.parity import MIN_AGREEMENT, agreement, match

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


def test_published_detections_are_the_mxnet_models_in_frame_pixels(rehearsal, deploy_model):
    messages, _, frames, _, _ = rehearsal
    results = [payload for _, payload in messages if "detections" in payload]
    detector = Detector.from_graph(INFO, *deploy_model)
    paired, only_mxnet, only_lambda = 0, 0, 0
    for frame, result in zip(frames, results):
        rows = deeplens_rehearsal.as_rows(result, frame.shape, CLASSES)
        expected = detector.detect([cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)])[0]
        count, missing, extra, _ = match(expected, rows, MIN_SCORE, SIDE)
        paired, only_mxnet, only_lambda = paired + count, only_mxnet + len(missing), only_lambda + len(extra)
        assert all(0 <= d["box"][0] <= d["box"][2] <= frame.shape[1] for d in result["detections"])
    assert paired > 10 and agreement(paired, only_mxnet, only_lambda) >= MIN_AGREEMENT


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
