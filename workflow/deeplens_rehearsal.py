"""deeplens_rehearsal: the packaged DeepLens Lambda run here, against stand-ins of the device's libraries, on every
val image; its published detections must be the MXNet deploy model's.

As on the device: the Lambda zip is unpacked into a folder of its own and the DeepLens model (model/) copied to
where the device deploys it (the stand-in mo's ARTIFACTS); workflow/deeplens_standins/ comes first on sys.path, so
the Lambda's `import awscam, mo, greengrasssdk` finds the stand-ins (the zip's greengrasssdk would look for
Greengrass Core). mo.optimize converts the model with our Model Optimizer (FP16, as for the device's GPU),
awscam.Model runs it with OpenVINO at f32, awscam.getLastFrame returns the val images as BGR frames, and the
Lambda's endless loop ends when they run out. Its project stream goes to a FIFO read here.

The published boxes (frame pixels), divided by the frame size, are paired with MXNet's as verify_ir pairs the FP16
IR with MXNet (workflow/lib/parity.py: same label and IoU >= MATCH_IOU or corners within BOX_TOLERANCE, partners
down to SCORE_MARGIN below the parity threshold, which is why the Lambda's DETECTION_THRESHOLD is that much lower
here): at least MIN_AGREEMENT of the detections at or above the parity threshold must pair, every frame must give
one message and no error, and the frames written to the project stream must arrive as JPEGs of its resolution.
"""

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

import cv2
import numpy as np

from workflow.lib.cli import UserError, log, run_main
from workflow.lib.detector import Detector, read_records
from workflow.lib.parity import MIN_AGREEMENT, SCORE_MARGIN, agreement, match

STANDINS = Path(__file__).resolve().parent / "deeplens_standins"
THING_NAME = "deeplens-rehearsal"


def jpeg_frames(data):
    """The images in a stream of concatenated JPEGs (as the display FIFO carries them)."""
    frames, start = [], data.find(b"\xff\xd8")
    while start >= 0:
        end = data.find(b"\xff\xd9", start)
        if end < 0:
            break
        frames.append(cv2.imdecode(np.frombuffer(data[start : end + 2], np.uint8), cv2.IMREAD_COLOR))
        start = data.find(b"\xff\xd8", end + 2)
    return frames


class FifoReader(threading.Thread):
    """Reads the project stream's FIFO, as the device's video server does, until the writer closes it."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path, self.data = path, b""

    def run(self):
        with open(self.path, "rb") as fifo:
            self.data = fifo.read()


def import_lambda(lambda_dir, artifacts, fifo):
    """The Lambda module of lambda_dir with the stand-ins in place, and the list its LocalDisplays go to."""
    os.environ.pop("AWS_IOT_THING_NAME", None)  # set, the module would start its loop as it is imported
    sys.path[:0] = [str(STANDINS), str(lambda_dir)]
    import awscam
    import greengrasssdk
    import local_display
    import mo

    mo.ARTIFACTS = str(artifacts)
    local_display.FIFO_PATH = str(fifo)
    lambda_function = importlib.import_module("lambda_function")
    displays = []

    class RecordedDisplay(local_display.LocalDisplay):
        def __init__(self, resolution):
            super().__init__(resolution)
            displays.append(self)

    lambda_function.LocalDisplay = RecordedDisplay
    return lambda_function, awscam, greengrasssdk, mo, displays


def run_lambda(zip_path, model_dir, frames, threshold):
    """Run the packaged Lambda on frames: (its messages as (topic, payload dict), frames read from the display
    FIFO, frames the display wrote, the stand-in mo's log)."""
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(work / "lambda")
        shutil.copytree(model_dir, work / "artifacts")
        fifo = work / "results.mjpeg"
        os.mkfifo(fifo)
        reader = FifoReader(fifo)
        reader.start()
        lambda_function, awscam, greengrasssdk, mo, displays = import_lambda(work / "lambda", work / "artifacts", fifo)
        os.environ.update(AWS_IOT_THING_NAME=THING_NAME, DETECTION_THRESHOLD=repr(threshold), RETRY_SECONDS="0")
        awscam.play(frames)
        try:
            lambda_function.infinite_infer_run()
        except awscam.EndOfFrames:
            pass
        for display in displays:
            display.join(10)
        reader.join(10)
        messages = [(topic, json.loads(payload)) for topic, payload in greengrasssdk.published]
        return messages, jpeg_frames(reader.data), sum(d.frames_written for d in displays), mo.log


def as_rows(message, frame_shape, classes):
    """A published message -> rows [cls, score, xmin, ymin, xmax, ymax], the box normalised as MXNet's."""
    height, width = frame_shape[:2]
    return np.array(
        [
            [classes.index(d["label"]), d["score"], d["box"][0] / width, d["box"][1] / height]
            + [d["box"][2] / width, d["box"][3] / height]
            for d in message["detections"]
        ],
        dtype=np.float64,
    ).reshape(-1, 6)


def rehearse(args):
    deploy = json.loads(Path(args.deploy).read_text())
    images = [rgb for rgb, _ in read_records(args.val_rec)]
    frames = [cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) for rgb in images]
    messages, shown, written, mo_log = run_lambda(
        args.zip, Path(args.model_info).parent / "model", frames, args.min_score - SCORE_MARGIN
    )
    problems = [f"published an error: {payload['error']}" for _, payload in messages if "error" in payload]
    problems += [f"published to {topic}" for topic, _ in messages if topic != f"$aws/things/{THING_NAME}/infer"]
    results = [payload for _, payload in messages if "detections" in payload]
    if len(results) != len(frames):
        problems.append(f"{len(results)} detection messages for {len(frames)} frames")
    if not shown or len(shown) != written or any(f is None or f.shape != (480, 858, 3) for f in shown):
        problems.append(f"the display FIFO gave {len(shown)} 858x480 JPEG frames of the {written} the display wrote")
    if problems:
        raise UserError("the DeepLens Lambda rehearsal failed: " + "; ".join(problems[:5]) + "\n" + "\n".join(mo_log))

    detector = Detector(args.deploy)
    paired, only_mxnet, only_lambda, differences = 0, 0, 0, []
    for index, (rgb, result) in enumerate(zip(images, results)):
        lambda_rows = as_rows(result, rgb.shape, deploy["classes"])
        count, missing, extra, _ = match(detector.detect([rgb])[0], lambda_rows, args.min_score, deploy["data_shape"])
        paired, only_mxnet, only_lambda = paired + count, only_mxnet + len(missing), only_lambda + len(extra)
        differences += [f"image {index}: only MXNet {row.round(4).tolist()}" for row in missing]
        differences += [f"image {index}: only the Lambda {row.round(4).tolist()}" for row in extra]
    share = agreement(paired, only_mxnet, only_lambda)
    Path(args.differences).write_text("".join(f"{line}\n" for line in differences))
    summary = {
        "images": len(images),
        "messages": len(messages),
        "topic": f"$aws/things/{THING_NAME}/infer",
        "min_score": args.min_score,
        "lambda_threshold": args.min_score - SCORE_MARGIN,
        "paired": paired,
        "only_mxnet": only_mxnet,
        "only_lambda": only_lambda,
        "agreement": share,
        "min_agreement": MIN_AGREEMENT,
        "display_frames": len(shown),
    }
    Path(args.out).write_text(json.dumps(summary, indent=1))
    if share < MIN_AGREEMENT:
        raise UserError(
            f"the DeepLens Lambda's detections pair with MXNet's for only {share:.1%} (< {MIN_AGREEMENT:.0%}); "
            f"the differences are in {args.differences}"
        )
    log(
        f"deeplens_rehearsal: the Lambda on {len(images)} val images: {paired} detections as MXNet's, "
        f"{only_mxnet} only MXNet's, {only_lambda} only the Lambda's (agreement {share:.1%}); "
        f"{len(shown)} frames reached the display FIFO"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.deeplens_rehearsal", description=__doc__.split("\n\n")[0])
    parser.add_argument("--deploy", required=True, help="deploy.json: the MXNet deploy model to compare with")
    parser.add_argument("--model-info", required=True, help="deeplens_model.json, beside the model/ folder")
    parser.add_argument("--zip", required=True, help="the Lambda zip of deeplens_package")
    parser.add_argument("--val-rec", required=True)
    parser.add_argument("--min-score", type=float, required=True, help="the parity threshold")
    parser.add_argument("--out", required=True, help="rehearsal.json to write")
    parser.add_argument("--differences", required=True, help="file listing the detections that differ")
    rehearse(parser.parse_args(argv))


if __name__ == "__main__":
    run_main(main)
