"""AWS DeepLens inference Lambda for the SSD this workflow trains (Python 2.7 and 3.7, the device's runtimes).

It follows the Developer Guide's inference function template: mo.optimize converts the model imported into the
project (model_name-symbol.json + -0000.params, named in model.json beside this file) on the device,
awscam.Model loads the result on the GPU, every awscam.getLastFrame() frame is resized to the model input and
given to doInference, and parseResult('ssd') returns the detections in pixels of the model input. The model takes
the raw BGR frame: its first layer swaps the channels and subtracts the training mean. The device's optimizer
would suppress overlapping boxes per class only, so the model keeps every candidate and this function applies the
deploy model's NMS: across classes when it was deployed with force_nms, at its threshold (model.json), keeping each
anchor's best class only, so that the detections are the MXNet model's. The boxes, scaled to the frame, are drawn on
the project stream (local_display.py) and published, one JSON message per frame, to
$aws/things/<AWS_IOT_THING_NAME>/infer:
    {"time": ..., "detections": [{"label": "swoosh", "score": 0.93, "box": [xmin, ymin, xmax, ymax]}, ...]}
with the box in pixels of the frame. An error (no frame from the camera, the optimizer refusing the model) is
published as {"error": "..."} and retried after RETRY_SECONDS: the function never exits.

Lambda environment variables (console: Configuration, Environment variables):
    DETECTION_THRESHOLD  lowest score published; default: model.json's score_threshold, the score that maximised
                         F1 on the val images
    LABEL_OFFSET         subtracted from parseResult's label to give the line of labels.txt; default 0 (the ids
                         our conversion gives); set 1 if the device's optimizer counts the background as class 0
                         (boxes then carry the next class's name, the last class showing as "class <N>")
    RETRY_SECONDS        pause after an error before trying again; default 10
"""

import json
import os
import time

import awscam  # before cv2: the Developer Guide notes that on the device cv2 depends on it
import mo
import cv2
import greengrasssdk

from local_display import LocalDisplay

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_TYPE = "ssd"
DEFAULT_RETRY_SECONDS = 10


def read_settings():
    with open(os.path.join(HERE, "model.json")) as handle:
        settings = json.load(handle)
    with open(os.path.join(HERE, "labels.txt")) as handle:
        settings["labels"] = [line.strip() for line in handle.read().splitlines() if line.strip()]  # may hold spaces
    threshold = os.environ.get("DETECTION_THRESHOLD")
    settings["threshold"] = float(threshold) if threshold else settings["score_threshold"]
    settings["label_offset"] = int(os.environ.get("LABEL_OFFSET", "0"))
    settings["retry_seconds"] = float(os.environ.get("RETRY_SECONDS", DEFAULT_RETRY_SECONDS))
    return settings


class ModelError(Exception):
    pass


def load_model(settings):
    error, model_path = mo.optimize(settings["model_name"], settings["input_width"], settings["input_height"])
    if error != 0:
        raise ModelError("mo.optimize({}) failed with error {}".format(settings["model_name"], error))
    return awscam.Model(model_path, {"GPU": 1})


def iou(a, b):
    width = min(a["xmax"], b["xmax"]) - max(a["xmin"], b["xmin"])
    height = min(a["ymax"], b["ymax"]) - max(a["ymin"], b["ymin"])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a["xmax"] - a["xmin"]) * (a["ymax"] - a["ymin"]) + (b["xmax"] - b["xmin"]) * (b["ymax"] - b["ymin"])
    return float(inter) / (union - inter) if union > inter else 0.0


def suppress(detections, threshold, across_classes):
    """MultiBoxDetection's greedy NMS: best score first, each kept box removes the later boxes that overlap it with
    IoU >= threshold (of any class when across_classes, as force_nms deploys it; else of its own class)."""
    kept = []
    for detection in sorted(detections, key=lambda d: -d["prob"]):
        rivals = [k for k in kept if across_classes or k["label"] == detection["label"]]
        if all(iou(detection, other) < threshold for other in rivals):
            kept.append(detection)
    return kept


def best_class_of_each_box(detections):
    """The device's DetectionOutput gives a row for every class of an anchor that reaches its threshold, each with
    the anchor's box; MXNet's MultiBoxDetection keeps each anchor's best class only, and so does this."""
    best = {}
    for d in detections:
        box = (d["xmin"], d["ymin"], d["xmax"], d["ymax"])
        if box not in best or d["prob"] > best[box]["prob"]:
            best[box] = d
    return [d for d in detections if best[(d["xmin"], d["ymin"], d["xmax"], d["ymax"])] is d]


def detections_in_frame(parsed, settings, frame_shape):
    """parseResult's boxes (pixels of the model input) -> label, score and box in pixels of the frame."""
    candidates = [d for d in parsed[MODEL_TYPE] if d["prob"] >= settings["threshold"]]
    candidates = best_class_of_each_box(candidates)
    candidates = suppress(candidates, settings["nms_threshold"], settings["force_nms"])
    x_scale = float(frame_shape[1]) / settings["input_width"]
    y_scale = float(frame_shape[0]) / settings["input_height"]
    labels = settings["labels"]
    result = []
    for d in sorted(candidates, key=lambda d: -d["prob"]):
        index = int(d["label"]) - settings["label_offset"]
        box = [
            float(d["xmin"]) * x_scale,
            float(d["ymin"]) * y_scale,
            float(d["xmax"]) * x_scale,
            float(d["ymax"]) * y_scale,
        ]
        result.append(
            {
                "label": labels[index] if 0 <= index < len(labels) else "class {}".format(index),
                "score": round(float(d["prob"]), 4),
                "box": [round(v, 2) for v in box],
            }
        )
    return result


def draw(frame, detections):
    for d in detections:
        xmin, ymin, xmax, ymax = [int(round(v)) for v in d["box"]]
        cv2.rectangle(frame, (xmin, ymin), (xmax, ymax), (255, 165, 20), 4)
        text = "{} {:.2f}".format(d["label"], d["score"])
        cv2.putText(
            frame,
            text,
            (xmin, max(ymin - 10, 30)),
            cv2.FONT_HERSHEY_SIMPLEX,
            1.5,
            (255, 165, 20),
            4,
        )


def infinite_infer_run():
    """Detect on every camera frame and publish the result, forever."""
    client = greengrasssdk.client("iot-data")
    topic = "$aws/things/{}/infer".format(os.environ.get("AWS_IOT_THING_NAME", "deeplens"))
    local_display = LocalDisplay("480p")
    local_display.start()
    settings = read_settings()
    model = None
    while True:
        try:
            if model is None:
                model = load_model(settings)
            ok, frame = awscam.getLastFrame()
            if not ok:
                raise IOError("no frame from the camera (awscam.getLastFrame)")
            resized = cv2.resize(frame, (settings["input_width"], settings["input_height"]))
            parsed = model.parseResult(MODEL_TYPE, model.doInference(resized))
            detections = detections_in_frame(parsed, settings, frame.shape)
            draw(frame, detections)
            local_display.set_frame_data(frame)
            client.publish(
                topic=topic,
                payload=json.dumps({"time": time.time(), "detections": detections}),
            )
        except Exception as error:  # publish, pause, retry: a crashing pinned Lambda would restart in a loop
            client.publish(
                topic=topic,
                payload=json.dumps({"error": "{}: {}".format(type(error).__name__, error)}),
            )
            time.sleep(settings["retry_seconds"])


def lambda_handler(event, context):
    """Empty entry point: the pinned Lambda does its work in infinite_infer_run, started at import."""
    return


if os.environ.get("AWS_IOT_THING_NAME"):  # set by AWS IoT Greengrass on the device
    infinite_infer_run()
