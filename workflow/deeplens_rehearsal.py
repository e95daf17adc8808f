"""deeplens_rehearsal: the packaged DeepLens Lambda run here against stand-ins of the device's libraries, and the
proof that what it publishes is what the MXNet deploy model detects.

As on the device: the Lambda zip is unpacked into a folder of its own and the DeepLens model (model/) copied to
where the device deploys it (the stand-in mo's ARTIFACTS); workflow/deeplens_standins/ comes first on sys.path, so
the Lambda's `import awscam, mo, greengrasssdk` finds the stand-ins (the zip's greengrasssdk would look for
Greengrass Core). mo.optimize converts the model with our Model Optimizer (FP16, as for the device's GPU),
awscam.Model runs it with OpenVINO at f32, awscam.getLastFrame returns the frames given, and the Lambda's endless
loop ends when they run out. Its project stream goes to a FIFO read here.

The Lambda runs twice; the stage fails naming what differs (workflow/lib/proof.py; docs/numbers.md, "The proofs"):
- On every val image as a camera frame: every frame must give one message and no error, and the frames written to
  the project stream must arrive as JPEGs of its resolution. Its detections are paired with MXNet's (reported; its
  DETECTION_THRESHOLD is SCORE_MARGIN under the parity threshold here, as verify_ir's partners are).
- On synthetic network outputs, which the stand-in awscam.Model post-processes in place of the frame's with the
  model's own anchors, in frames of the camera's 1080p and the stream's 480p: what it publishes at the deploy
  model's score threshold must be, in the frame's pixels, what the deploy graph's MultiBoxDetection keeps on the
  same outputs, scores and boxes within PUBLISHED_TOLERANCE (the Lambda rounds them). That proves the device's
  post-processing (the optimizer's DetectionOutput, parseResult) and the Lambda's (threshold, best class, NMS,
  labels, scaling to the frame). The device's DetectionOutput counts its top-k over the rows of every class, not
  over anchors: the synthetic outputs hold fewer candidate rows than nms_topk, where the two agree.
And the network: on every val image resized as the Lambda resizes it, the DeepLens IR (FP16, as the device's optimizer
makes it) against the same conversion with FP32 weights rounded to FP16, and that FP32 IR against MXNet's network,
within proof.NETWORK_TOLERANCE; its anchors and variances MXNet's.
"""

import argparse
import importlib
import itertools
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
import openvino as ov

from workflow.lib import model_optimizer, proof
from workflow.lib.cli import Progress, UserError, log, run_main
from workflow.lib.detector import Detector, read_records
from workflow.lib.networks import VARIANCES
from workflow.lib.parity import SCORE_MARGIN, agreement, match

STANDINS = Path(__file__).resolve().parent / "deeplens_standins"
THING_NAME = "deeplens-rehearsal"
DISPLAY_SHAPE = (480, 858, 3)  # the project stream's 480p
SYNTHETIC_FRAME_SHAPES = ((1080, 1920, 3), DISPLAY_SHAPE)
PUBLISHED_TOLERANCE = 1e-4  # the Lambda publishes scores to 4 decimals and boxes to 0.01 pixel


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
    for name in ("lambda_function", "local_display"):  # this zip's, not an earlier one's
        sys.modules.pop(name, None)
    sys.path[:0] = [str(STANDINS), str(lambda_dir)]
    try:
        import awscam
        import greengrasssdk
        import local_display
        import mo

        lambda_function = importlib.import_module("lambda_function")
    finally:
        del sys.path[:2]
    mo.ARTIFACTS = str(artifacts)
    local_display.FIFO_PATH = str(fifo)
    displays = []

    class RecordedDisplay(local_display.LocalDisplay):
        def __init__(self, resolution):
            super().__init__(resolution)
            displays.append(self)

    lambda_function.LocalDisplay = RecordedDisplay
    return lambda_function, awscam, greengrasssdk, mo, displays


class LambdaRun:
    """The Lambda zip unpacked in work, the DeepLens model where the stand-in mo finds it, the Lambda imported with
    the stand-ins: play() runs it on frames."""

    def __init__(self, zip_path, model_dir, work):
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(work / "lambda")
        shutil.copytree(model_dir, work / "artifacts")
        self.fifo = work / "results.mjpeg"
        os.mkfifo(self.fifo)
        modules = import_lambda(work / "lambda", work / "artifacts", self.fifo)
        self.lambda_function, self.awscam, self.greengrasssdk, self.mo, self.displays = modules

    def play(self, frames, threshold, network_outputs=None):
        """Run the Lambda on frames (with network_outputs: on those, post-processed in the frames' place): (its
        messages as (topic, payload dict), frames read from the display FIFO, frames the display wrote)."""
        reader = FifoReader(self.fifo)
        reader.start()
        published, displays = len(self.greengrasssdk.published), len(self.displays)
        os.environ.update(AWS_IOT_THING_NAME=THING_NAME, DETECTION_THRESHOLD=repr(threshold), RETRY_SECONDS="0")
        self.awscam.play(frames)
        self.awscam.play_network_outputs(network_outputs)
        try:
            self.lambda_function.infinite_infer_run()
        except self.awscam.EndOfFrames:
            pass
        finally:
            self.awscam.play_network_outputs(None)
        for display in self.displays[displays:]:
            display.join(10)
        reader.join(10)
        messages = [(topic, json.loads(payload)) for topic, payload in self.greengrasssdk.published[published:]]
        return messages, jpeg_frames(reader.data), sum(d.frames_written for d in self.displays[displays:])


def run_problems(messages, frames):
    """What went wrong in a run of the Lambda on frames, apart from what it detected."""
    problems = [f"published an error: {payload['error']}" for _, payload in messages if "error" in payload]
    problems += [f"published to {topic}" for topic, _ in messages if topic != f"$aws/things/{THING_NAME}/infer"]
    results = [payload for _, payload in messages if "detections" in payload]
    if len(results) != len(frames):
        problems.append(f"{len(results)} detection messages for {len(frames)} frames")
    return problems


def as_rows(message, frame_shape, classes):
    """A published message -> rows [cls, score, xmin, ymin, xmax, ymax], the box normalised as MXNet's; a label
    that is none of the classes gets class -1."""
    height, width = frame_shape[:2]
    return np.array(
        [
            [classes.index(d["label"]) if d["label"] in classes else -1, d["score"]]
            + [d["box"][0] / width, d["box"][1] / height, d["box"][2] / width, d["box"][3] / height]
            for d in message["detections"]
        ],
        dtype=np.float64,
    ).reshape(-1, 6)


class DeepLensNetwork:
    """A DeepLens IR (ov.Model) with its DetectionOutput's inputs as outputs, compiled at f32: outputs() gives its
    network's outputs on a resized BGR frame; anchors and variances are its own (PriorBox's)."""

    def __init__(self, model):
        (detection,) = [node for node in model.get_ordered_ops() if node.get_type_name() == "DetectionOutput"]
        model.add_outputs([detection.input_value(index) for index in range(3)])  # box offsets, class probs, anchors
        self.compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        self.ports = self.compiled.outputs[-3:]
        self.anchors = self.variances = None

    def outputs(self, resized_bgr):
        results = self.compiled(resized_bgr.astype(np.float32).transpose(2, 0, 1)[np.newaxis])
        offsets, class_prob, priors = (results[port] for port in self.ports)
        self.anchors, self.variances = priors.reshape(2, -1, 4)
        return class_prob.reshape(len(self.anchors), -1), offsets.reshape(-1, 4)


def network_check(detector, fp16_xml, fp32_xml, frames):
    """The network part of the proof: the DeepLens IR against its FP32 twin rounded to FP16, the twin against MXNet,
    on the frames resized as the Lambda resizes them; the anchors and variances against MXNet's."""
    side, classes = detector.data_shape, detector.info["classes"]
    shipped = DeepLensNetwork(ov.Core().read_model(fp16_xml))
    rounded = DeepLensNetwork(model_optimizer.fp16_rounded(fp32_xml))
    fp32 = DeepLensNetwork(ov.Core().read_model(fp32_xml))
    twin = proof.NetworkComparison("the DeepLens IR's FP32 twin", VARIANCES, classes)
    reference = "the same IR with FP32 weights rounded to FP16"
    deeplens = proof.NetworkComparison("the DeepLens IR", VARIANCES, classes, reference)
    progress = Progress("deeplens_rehearsal (the networks)", len(frames))
    for index, frame in enumerate(frames):
        resized = cv2.resize(frame, (side, side))
        twin.add(detector.network_outputs(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)), fp32.outputs(resized))
        deeplens.add(rounded.outputs(resized), shipped.outputs(resized))
        progress.update(index + 1)
    anchors = proof.anchor_problems("the DeepLens IR", shipped.anchors, shipped.variances, detector.anchors, VARIANCES)
    return {"networks": [twin.result(), deeplens.result()], "anchors": anchors}


def postprocessing_check(run, detector):
    """The post-processing part of the proof: the Lambda on synthetic network outputs against the deploy graph's
    MultiBoxDetection on them, in frames' pixels."""
    settings, classes = detector.settings, detector.info["classes"]
    per_anchor = max(1, settings["nms_topk"] // len(classes)) if settings["nms_topk"] > 0 else None
    synthetic = proof.synthetic_outputs(detector.anchors, VARIANCES, len(classes), settings, max_candidates=per_anchor)
    frames = [
        np.zeros(shape, np.uint8) for shape in itertools.islice(itertools.cycle(SYNTHETIC_FRAME_SHAPES), len(synthetic))
    ]
    messages, _, _ = run.play(frames, settings["model_score_threshold"], synthetic)
    problems = run_problems(messages, frames)
    if problems:
        raise UserError("the DeepLens Lambda failed on synthetic network outputs: " + "; ".join(problems[:5]))
    results = [payload for _, payload in messages]
    found = [as_rows(result, frame.shape, classes) for result, frame in zip(results, frames)]
    expected = [detector.postprocess(prob, offsets) for prob, offsets in synthetic]
    return proof.compare_postprocessing("the Lambda", expected, found, PUBLISHED_TOLERANCE)


def pairing(detector, images, results, classes, min_score):
    """The Lambda's detections on the val frames paired with MXNet's (reported), and the lines that differ."""
    paired, only_mxnet, only_lambda, differences = 0, 0, 0, []
    for index, (rgb, result) in enumerate(zip(images, results)):
        lambda_rows = as_rows(result, rgb.shape, classes)
        count, missing, extra, _ = match(detector.detect([rgb])[0], lambda_rows, min_score, detector.data_shape)
        paired, only_mxnet, only_lambda = paired + count, only_mxnet + len(missing), only_lambda + len(extra)
        differences += [f"image {index}: only MXNet {row.round(4).tolist()}" for row in missing]
        differences += [f"image {index}: only the Lambda {row.round(4).tolist()}" for row in extra]
    share = agreement(paired, only_mxnet, only_lambda)
    return {"paired": paired, "only_mxnet": only_mxnet, "only_lambda": only_lambda, "agreement": share}, differences


def rehearse(args):
    detector = Detector(args.deploy)
    classes = detector.info["classes"]
    model_info = json.loads(Path(args.model_info).read_text())
    images = [rgb for rgb, _ in read_records(args.val_rec)]
    frames = [cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) for rgb in images]
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        run = LambdaRun(args.zip, Path(args.model_info).parent / "model", work)
        messages, shown, written = run.play(frames, args.min_score - SCORE_MARGIN)
        problems = run_problems(messages, frames)
        if not shown or len(shown) != written or any(f is None or f.shape != DISPLAY_SHAPE for f in shown):
            problems.append(
                f"the display FIFO gave {len(shown)} 858x480 JPEG frames of the {written} the display wrote"
            )
        if problems:
            raise UserError(
                "the DeepLens Lambda rehearsal failed: " + "; ".join(problems[:5]) + "\n" + "\n".join(run.mo.log)
            )
        checked = {"postprocessing": postprocessing_check(run, detector)}
        name, side = model_info["model_name"], model_info["input_width"]
        error, fp32_xml = run.mo.convert(name, side, model_info["input_height"], str(work / "fp32"), False)
        if error:
            raise UserError(
                "the stand-in mo could not convert the DeepLens model with FP32 weights:\n" + run.mo.log[-1]
            )
        checked.update(network_check(detector, Path(run.mo.ARTIFACTS) / f"{name}.xml", fp32_xml, frames))
    results = [payload for _, payload in messages]
    paired, differences = pairing(detector, images, results, classes, args.min_score)
    Path(args.differences).write_text("".join(f"{line}\n" for line in differences))
    summary = {
        "images": len(images),
        "messages": len(messages),
        "topic": f"$aws/things/{THING_NAME}/infer",
        "proof": checked,
        "min_score": args.min_score,
        "lambda_threshold": args.min_score - SCORE_MARGIN,
        **paired,
        "display_frames": len(shown),
    }
    Path(args.out).write_text(json.dumps(summary, indent=1))
    for network in checked["networks"]:
        log(f"deeplens_rehearsal: {proof.network_summary(network)}")
    log(f"deeplens_rehearsal: {proof.postprocessing_summary(checked['postprocessing'])}")
    log(
        f"deeplens_rehearsal: reported: the Lambda on {len(images)} val images: {paired['paired']} detections as "
        f"MXNet's, {paired['only_mxnet']} only MXNet's, {paired['only_lambda']} only the Lambda's (agreement "
        f"{paired['agreement']:.1%}); {len(shown)} frames reached the display FIFO"
    )
    problems = [p for network in checked["networks"] for p in network["problems"]]
    problems += checked["anchors"] + checked["postprocessing"]["problems"]
    if problems:
        raise UserError(f"the DeepLens Lambda does not publish what the MXNet model detects: {'; '.join(problems)}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.deeplens_rehearsal", description=__doc__.split("\n\n")[0])
    parser.add_argument("--deploy", required=True, help="deploy.json: the MXNet deploy model to compare with")
    parser.add_argument("--model-info", required=True, help="deeplens_model.json, beside the model/ folder")
    parser.add_argument("--zip", required=True, help="the Lambda zip of deeplens_package")
    parser.add_argument("--val-rec", required=True)
    parser.add_argument("--min-score", type=float, required=True, help="the parity threshold (pairing, reported)")
    parser.add_argument("--out", required=True, help="rehearsal.json to write")
    parser.add_argument("--differences", required=True, help="file listing the detections that differ")
    rehearse(parser.parse_args(argv))


if __name__ == "__main__":
    run_main(main)
