"""What the browser test compares the page with (the proof of workflow/lib/proof.py, for onnxruntime-web): for each
val image, the tensor onnx_infer.py feeds model.onnx (cv2 resize, RGB float32, NCHW) as raw float32, onnxruntime's
detections on it and MXNet's network outputs (class probabilities, box offsets); and synthetic network outputs with
the detections the deploy graph's MultiBoxDetection keeps on them.

Runs in the mxnet environment (MXNet, onnxruntime, OpenCV):
    .venv/bin/python -m workflow.orchestrator.envs exec mxnet -- python tests/browser/reference.py \\
        --web results/RUN/export_web --deploy results/RUN/deploy/deploy.json --lst results/RUN/pack/val.lst \\
        --root . --out CASES_DIR
writes CASES_DIR/cases.json, the tensors as NNNN.bin, MXNet's network outputs as NNNN.class_prob.bin and
NNNN.box_offsets.bin; network.onnx (model.onnx with its network's outputs as outputs too) and postprocessing.onnx
(model.onnx from there on) with the synthetic inputs as synthetic_N.class_logits.bin and synthetic_N.box_offsets.bin.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import cv2

import numpy as np
import onnx

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "workflow" / "device"), str(REPO)]
import onnx_infer  # noqa: E402  (the device runner, standalone)

from workflow.lib import onnx_graph, proof  # noqa: E402
from workflow.lib.detector import Detector  # noqa: E402
from workflow.lib.networks import VARIANCES  # noqa: E402


def val_images(lst, root):
    """The image paths of an im2rec .lst (the last column), relative to root."""
    lines = [line.split("\t") for line in Path(lst).read_text().splitlines() if line.strip()]
    return [Path(root) / parts[-1] for parts in lines]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--web", required=True, help="the export_web folder (model.onnx and its contract)")
    parser.add_argument("--deploy", required=True, help="deploy.json of the MXNet deploy model")
    parser.add_argument("--lst", required=True, help="the val list (pack/val.lst)")
    parser.add_argument("--root", default=".", help="the folder the list's image paths are relative to")
    parser.add_argument("--out", required=True)
    parser.add_argument("--limit", type=int, help="only the first N images")
    args = parser.parse_args(argv)
    session, contract = onnx_infer.load(Path(args.web) / "model.onnx")
    detector = Detector(args.deploy)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cases = []
    for index, path in enumerate(val_images(args.lst, args.root)[: args.limit]):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if image is None:
            sys.exit(f"ERROR: cannot read {path}")
        tensor = onnx_infer.preprocess(image, contract)
        start = time.perf_counter()
        rows = session.run(None, {contract["input"]: tensor})[0]
        ms = (time.perf_counter() - start) * 1000
        name = f"{index:04d}.bin"
        tensor.tofile(out / name)
        class_prob, offsets = detector.network_outputs(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        class_prob.astype(np.float32).tofile(out / f"{index:04d}.class_prob.bin")
        offsets.astype(np.float32).tofile(out / f"{index:04d}.box_offsets.bin")
        detections = [[int(row[0]), *map(float, row[1:])] for row in rows if row[0] >= 0]
        cases.append(
            {"image": path.name, "path": str(path.resolve()), "tensor": name, "detections": detections, "python_ms": ms}
        )
    reference = {"contract": contract, "cases": cases, **models(Path(args.web) / "model.onnx", out)}
    reference["synthetic"] = synthetic_cases(detector, out)
    reference.update(anchors=detector.anchors.tolist(), variances=list(VARIANCES), classes=detector.info["classes"])
    (out / "cases.json").write_text(json.dumps(reference))
    print(f"{len(cases)} val images, {sum(len(c['detections']) for c in cases)} detections", file=sys.stderr)


def models(model_path, out):
    """network.onnx and postprocessing.onnx in out, made from model.onnx as export_onnx's proof makes them: the names
    of their inputs and outputs."""
    model = onnx.load(str(model_path))
    network, outputs = onnx_graph.with_network_outputs(model)
    onnx.save(network, str(out / "network.onnx"))
    postprocessing, inputs = onnx_graph.postprocessing_model(model)
    onnx.save(postprocessing, str(out / "postprocessing.onnx"))
    return {"network_outputs": list(outputs), "postprocessing_inputs": list(inputs)}


def synthetic_cases(detector, out):
    """The proof's synthetic network outputs as the post-processing's inputs (the class logits, (1, classes + 1,
    anchors), and the offsets, (1, anchors * 4)) in files, with the detections MXNet's MultiBoxDetection keeps."""
    cases = []
    classes = len(detector.info["classes"])
    for index, (prob, offsets) in enumerate(
        proof.synthetic_outputs(detector.anchors, VARIANCES, classes, detector.settings)
    ):
        np.log(prob).T[np.newaxis].astype(np.float32).tofile(out / f"synthetic_{index}.class_logits.bin")
        offsets.reshape(1, -1).astype(np.float32).tofile(out / f"synthetic_{index}.box_offsets.bin")
        expected = detector.postprocess(prob, offsets)
        cases.append(
            {
                "class_logits": f"synthetic_{index}.class_logits.bin",
                "box_offsets": f"synthetic_{index}.box_offsets.bin",
                "mxnet": expected.tolist(),
                "shape": [1, classes + 1, len(detector.anchors)],
            }
        )
    return cases


if __name__ == "__main__":
    main()
