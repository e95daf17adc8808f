"""AWS DeepLens inference function, in the style of the device's Lambda samples.

Shipped as deeplens_artifacts/deeplens_lambda.py next to infer.py, model.xml/.bin, model.contract.json
and labels.txt. On the device it reads camera frames with awscam.getLastFrame(), detects with the IR
through infer.py (which applies the cross-class NMS the IR leaves out) and publishes one JSON message per
frame to the IoT topic $aws/things/<AWS_IOT_THING_NAME>/infer with greengrasssdk.

Environment: DETECTION_THRESHOLD (default: model.contract.json's score_threshold, the score that
maximised F1 on the val images; 0.5 without one), OPENVINO_DEVICE (default GPU on the device; CPU works
anywhere), INFERENCE_PRECISION (default f16 on a GPU, the contract's f32 on a CPU: never the plugin's own
choice), AWS_IOT_THING_NAME (set by Greengrass).
"""

import json
import os
import time

import awscam
import greengrasssdk

import infer

HERE = os.path.dirname(os.path.abspath(__file__))


def load_model(device):
    precision = os.environ.get("INFERENCE_PRECISION", "f16" if device == "GPU" else None)
    compiled, contract = infer.load(os.path.join(HERE, "model.xml"), device=device, precision=precision)
    with open(os.path.join(HERE, "labels.txt")) as handle:
        labels = handle.read().split()
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


def infinite_infer_run(frames=None):
    """Detect on camera frames and publish each result; `frames` bounds the loop (None: run forever)."""
    client = greengrasssdk.client("iot-data")
    topic = "$aws/things/{}/infer".format(os.environ.get("AWS_IOT_THING_NAME", "deeplens"))
    compiled, contract, labels = load_model(os.environ.get("OPENVINO_DEVICE", "GPU"))
    setting = os.environ.get("DETECTION_THRESHOLD")
    threshold = float(setting) if setting else infer.default_threshold(contract)
    done = 0
    while frames is None or done < frames:
        ok, frame = awscam.getLastFrame()
        if not ok:
            client.publish(topic=topic, payload=json.dumps({"error": "failed to get a frame from the camera"}))
            continue
        rows = infer.detect(compiled, frame, contract, threshold)
        client.publish(topic=topic, payload=json.dumps(message(rows, labels, frame.shape)))
        done += 1


def function_handler(event, context):
    """Greengrass long-lived Lambdas do their work in infinite_infer_run; the handler is never called."""
    return


if os.environ.get("AWS_IOT_THING_NAME"):  # set by Greengrass on the device: a pinned Lambda starts here
    infinite_infer_run()
