"""What the browser test compares the page with: for each val image, the tensor onnx_infer.py feeds model.onnx
(cv2 resize, RGB float32, NCHW) as raw float32 and onnxruntime's detections on it, in Python.

Runs in the mxnet environment (onnxruntime, OpenCV):
    .venv/bin/python -m workflow.orchestrator.envs exec mxnet -- python tests/browser/reference.py \\
        --web results/RUN/export_web --lst results/RUN/pack/val.lst --root . --out CASES_DIR
writes CASES_DIR/cases.json ([{image, path, tensor, detections}]) and CASES_DIR/NNNN.bin.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "workflow" / "device"))
import onnx_infer  # noqa: E402  (the device runner, standalone)


def val_images(lst, root):
    """The image paths of an im2rec .lst (the last column), relative to root."""
    lines = [line.split("\t") for line in Path(lst).read_text().splitlines() if line.strip()]
    return [Path(root) / parts[-1] for parts in lines]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--web", required=True, help="the export_web folder (model.onnx and its contract)")
    parser.add_argument("--lst", required=True, help="the val list (pack/val.lst)")
    parser.add_argument("--root", default=".", help="the folder the list's image paths are relative to")
    parser.add_argument("--out", required=True)
    parser.add_argument("--limit", type=int, help="only the first N images")
    args = parser.parse_args(argv)
    session, contract = onnx_infer.load(Path(args.web) / "model.onnx")
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
        detections = [[int(row[0]), *map(float, row[1:])] for row in rows if row[0] >= 0]
        cases.append(
            {"image": path.name, "path": str(path.resolve()), "tensor": name, "detections": detections, "python_ms": ms}
        )
    (out / "cases.json").write_text(json.dumps({"contract": contract, "cases": cases}))
    print(f"{len(cases)} val images, {sum(len(c['detections']) for c in cases)} detections", file=sys.stderr)


if __name__ == "__main__":
    main()
