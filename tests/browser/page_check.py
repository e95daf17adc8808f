"""The export_web page in headless Chromium against onnxruntime in Python, on a run's val images.

    .venv/bin/python tests/browser/page_check.py --run results/sample [--repeat 5] [--out page_check.json]

1. reference.py (in the mxnet environment): the tensor onnx_infer.py makes of each val image (cv2 resize, RGB
   float32), onnxruntime's detections and MXNet's network outputs on it, and the proof's synthetic network outputs
   with the detections MXNet's MultiBoxDetection keeps on them;
2. run_page.mjs (node, playwright-core, Debian's chromium): the page on that same tensor (timed, wasm backend) and
   on the image file through its own file input; and the page's onnxruntime-web on model.onnx's network (its
   network's outputs on each tensor) and its post-processing alone (on the synthetic network outputs);
3. the proof (workflow/lib/proof.py, as export_onnx proves model.onnx under onnxruntime): in the page, model.onnx's
   network outputs within the proof's tolerance of MXNet's, and its post-processing keeping MXNet's detections.
   Reported beside it: whether the page's detections on the same tensor equal Python's (every row, class, score
   and box within --tolerance: near-tied boxes may come out either way), and through the file input, where the
   browser decodes and resizes the image itself (canvas drawImage, not cv2's INTER_LINEAR), how many of its
   detections at the contract's score threshold pair with Python's at IoU 0.5 (same class), at least
   --min-file-pairing of them.
Prints the JSON result (per image: ms, counts, pairing; the proof; the summary) and exits 1 when a check fails.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
from workflow.lib import proof  # noqa: E402


def iou(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def equal_rows(python, page, tolerance):
    """The rows of the page that differ from Python's beyond tolerance (in order; rows of equal score may swap)."""
    unused = list(page)
    missing = []
    for row in python:
        match = next(
            (
                other
                for other in unused
                if other[0] == row[0] and all(abs(x - y) <= tolerance for x, y in zip(row[1:], other[1:]))
            ),
            None,
        )
        if match is None:
            missing.append(row)
        else:
            unused.remove(match)
    return missing, unused


def pair(python, page, threshold=0.5):
    """How many detections pair greedily (best score first, same class, IoU >= threshold)."""
    unused = list(page)
    paired = 0
    for row in sorted(python, key=lambda r: -r[1]):
        best = max((other for other in unused if other[0] == row[0]), key=lambda o: iou(row[2:], o[2:]), default=None)
        if best is not None and iou(row[2:], best[2:]) >= threshold:
            unused.remove(best)
            paired += 1
    return paired


def page_proof(expected, found, cases):
    """The page's network outputs against MXNet's on every case's tensor, and its post-processing against MXNet's
    MultiBoxDetection on the synthetic network outputs (workflow/lib/proof.py)."""
    anchors = np.asarray(expected["anchors"], np.float32)
    classes = expected["classes"]
    comparison = proof.NetworkComparison("model.onnx in the page", expected["variances"], classes)
    for case, (class_prob, offsets) in zip(expected["cases"], found["networks"]):
        stem = case["tensor"][: -len(".bin")]
        mxnet = [np.fromfile(cases / f"{stem}.{part}.bin", np.float32) for part in ("class_prob", "box_offsets")]
        mxnet = (mxnet[0].reshape(len(anchors), -1), mxnet[1].reshape(-1, 4))
        page = (
            np.asarray(class_prob, np.float32).reshape(-1, len(anchors)).T,
            np.asarray(offsets, np.float32).reshape(-1, 4),
        )
        comparison.add(mxnet, page)
    mxnet_rows = [case["mxnet"] for case in expected["synthetic"]]
    return {
        "network": comparison.result(),
        "postprocessing": proof.compare_postprocessing("the page's model.onnx", mxnet_rows, found["detections"]),
    }


def run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        sys.exit(f"ERROR: {' '.join(map(str, command))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="the run's results folder (export_web/, pack/val.lst)")
    parser.add_argument("--root", default=".", help="the folder val.lst's image paths are relative to (the workdir)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each tensor after the first")
    parser.add_argument("--limit", type=int, help="only the first N val images")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--min-file-pairing", type=float, default=0.8)
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--screenshot", help="a PNG of the page after the last image")
    parser.add_argument("--out", help="also write the JSON result here")
    args = parser.parse_args(argv)
    results = Path(args.run)
    web = results / "export_web"
    with tempfile.TemporaryDirectory() as cases:
        reference = [sys.executable, "-m", "workflow.orchestrator.envs", "exec", "mxnet", "--", "python"]
        reference += [str(HERE / "reference.py"), "--web", str(web), "--lst", str(results / "pack" / "val.lst")]
        reference += ["--deploy", str(results / "deploy" / "deploy.json")]
        reference += ["--root", str(args.root), "--out", cases]
        reference += ["--limit", str(args.limit)] if args.limit else []
        run(reference, cwd=REPO)
        expected = json.loads((Path(cases) / "cases.json").read_text())
        page = ["node", str(HERE / "run_page.mjs"), "--web", str(web), "--cases", cases]
        page += ["--repeat", str(args.repeat), "--chromium", args.chromium]
        page += ["--screenshot", args.screenshot] if args.screenshot else []
        lines = [json.loads(line) for line in run(page, cwd=HERE).stdout.splitlines() if line.startswith("{")]
        checked = page_proof(expected, lines[-2]["proof"], Path(cases))
    lines = lines[:-2] + lines[-1:]
    threshold = expected["contract"].get("score_threshold", 0.5)
    summary = lines[-1]["summary"]
    images, failures, file_python, file_page, file_paired = [], [], 0, 0, 0
    for case, got in zip(expected["cases"], lines[:-1]):
        assert case["image"] == got["image"], (case["image"], got["image"])
        missing, extra = equal_rows(case["detections"], got["tensor"]["detections"], args.tolerance)
        if missing or extra:
            failures.append({"image": case["image"], "only_python": missing[:5], "only_page": extra[:5]})
        python_shown = [row for row in case["detections"] if row[1] >= threshold]
        page_shown = [row for row in got["file"]["detections"] if row[1] >= threshold]
        paired = pair(python_shown, page_shown)
        file_python, file_page, file_paired = (
            file_python + len(python_shown),
            file_page + len(page_shown),
            (file_paired + paired),
        )
        images.append(
            {
                "image": case["image"],
                "ms": statistics.median(got["tensor"]["ms"][1:] or got["tensor"]["ms"]),
                "first_ms": got["tensor"]["ms"][0],
                "python_ms": case["python_ms"],
                "detections": len(case["detections"]),
                "tensor_equal": not (missing or extra),
                "file": {"python": len(python_shown), "page": len(page_shown), "paired": paired},
            }
        )
    file_pairing = file_paired / max(file_python, file_page, 1)
    result = {
        "summary": {
            **summary,
            "ms_median_per_image": statistics.median(i["ms"] for i in images) if images else None,
            "tolerance": args.tolerance,
            "tensor_equal_images": sum(i["tensor_equal"] for i in images),
            "file_threshold": threshold,
            "file_detections": {"python": file_python, "page": file_page, "paired_iou_0.5": file_paired},
            "file_pairing": file_pairing,
            "min_file_pairing": args.min_file_pairing,
        },
        "images": images,
        "tensor_failures": failures,
        "proof": checked,
    }
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    problems = []
    if len(lines) - 1 != len(expected["cases"]):
        problems.append(f"the page answered {len(lines) - 1} of {len(expected['cases'])} images")
    problems += checked["network"]["problems"] + checked["postprocessing"]["problems"]
    if file_pairing < args.min_file_pairing:
        problems.append(f"through the file input only {file_pairing:.1%} of the detections paired")
    if summary["problems"]:
        problems.append(f"the page: {summary['problems']}")
    if problems:
        sys.exit("ERROR: " + "; ".join(problems))
    print(
        f"the page: {proof.network_summary(checked['network'])}; "
        f"{proof.postprocessing_summary(checked['postprocessing'])}; reported: its detections equal onnxruntime's on "
        f"{result['summary']['tensor_equal_images']} of {len(images)} images (tensor); "
        f"file input paired {file_pairing:.1%}; "
        f"{result['summary']['ms_median_per_image']:.1f} ms per image (wasm, {summary['threads']} thread)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
