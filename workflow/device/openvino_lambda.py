"""Greengrass inference Lambda for Intel devices with the current OpenVINO runtime (not for an AWS DeepLens,
whose runtime is Python 2.7/3.7 with its own 2018-era inference engine: its Lambda is deeplens/lambda_function.py).

Shipped as artifacts/openvino_lambda.py next to infer.py, model.xml/.bin, model.contract.json and
labels.txt. It reads camera frames (awscam.getLastFrame() where the device has awscam, else OpenCV's camera
CAMERA_INDEX), detects with the IR through infer.py (which applies the NMS the IR leaves out) and publishes one
JSON message per frame to the IoT topic $aws/things/<AWS_IOT_THING_NAME>/infer with greengrasssdk.

Environment: DETECTION_THRESHOLD (default: model.contract.json's score_threshold, the score that
maximised F1 on the val images; 0.5 without one), OPENVINO_DEVICE (default GPU; CPU works anywhere),
INFERENCE_PRECISION (default f16 on a GPU, the contract's f32 on a CPU: never the plugin's own choice),
CAMERA_INDEX (default 0, without awscam), AWS_IOT_THING_NAME (set by Greengrass).
"""

import json
import os
import time

import cv2
import greengrasssdk

import infer

try:
    import awscam
except ImportError:  # not a DeepLens: frames from OpenCV's camera
    awscam = None

HERE = os.path.dirname(os.path.abspath(__file__))
NO_FRAME_PAUSE_SECONDS = 1


def load_model(device):
    precision = os.environ.get("INFERENCE_PRECISION", "f16" if device == "GPU" else None)
    compiled, contract = infer.load(os.path.join(HERE, "model.xml"), device=device, precision=precision)
    with open(os.path.join(HERE, "labels.txt"), encoding="utf-8") as handle:
        labels = handle.read().splitlines()  # a name a line: names may hold spaces
    return compiled, contract, labels


def message(rows, labels, frame_shape):
    """Detections as {label, score, box in pixels of the frame}."""
    height, width = frame_shape[:2]
    return {
        "time": time.time(),
        "detections": [
            {
                "label": labels[int(cls)],
                "score": round(score, 4),
                "box": [round(xmin * width), round(ymin * height), round(xmax * width), round(ymax * height)],
            }
            for cls, score, xmin, ymin, xmax, ymax in rows
        ],
    }


def frame_source():
    """A function returning (ok, BGR frame), as awscam.getLastFrame does."""
    if awscam is not None:
        return awscam.getLastFrame
    return cv2.VideoCapture(int(os.environ.get("CAMERA_INDEX", "0"))).read


def infinite_infer_run(frames=None):
    """Detect on camera frames and publish each result; `frames` bounds the loop (None: run forever)."""
    client = greengrasssdk.client("iot-data")
    topic = "$aws/things/{}/infer".format(os.environ.get("AWS_IOT_THING_NAME", "deeplens"))
    compiled, contract, labels = load_model(os.environ.get("OPENVINO_DEVICE", "GPU"))
    setting = os.environ.get("DETECTION_THRESHOLD")
    threshold = float(setting) if setting else infer.default_threshold(contract)
    read, done = frame_source(), 0
    while frames is None or done < frames:
        ok, frame = read()
        if not ok:
            client.publish(topic=topic, payload=json.dumps({"error": "failed to get a frame from the camera"}))
            time.sleep(NO_FRAME_PAUSE_SECONDS)
            continue
        rows = infer.detect(compiled, frame, contract, threshold)
        client.publish(topic=topic, payload=json.dumps(message(rows, labels, frame.shape)))
        done += 1


def function_handler(event, context):
    """Greengrass long-lived Lambdas do their work in infinite_infer_run; the handler is never called."""
    return


if os.environ.get("AWS_IOT_THING_NAME"):  # set by Greengrass on the device: a pinned Lambda starts here
    infinite_infer_run()
