"""Every runtime on one machine, in one run: MXNet, the OpenVINO IR at FP16 and INT8, onnxruntime, LiteRT float32 and
INT8, and the browser page (onnxruntime-web's wasm backend in headless Chromium), on a finished run's val images.

    .venv/bin/python benchmarks/runtimes.py [--run sample] [--out results/runtimes.json]

1. quantize (optimizer environment) makes an INT8 IR of the run's deploy model in a temporary folder, unless the run
   has one (int8_ir: true);
2. verify_ir proves both IRs against MXNet and times MXNet, the IRs, model.onnx and the two LiteRT models in turns
   (its side by side: resize, inference and NMS per image, median);
3. tests/browser/page_check.py runs the page on the same val images (inference on the tensor, median; `make
   test-browser` installs Chromium and the page's test tools).
Prints one markdown table (ms per image, val mAP, share of detections paired with MXNet's in each proof) and the
CPU's model name and flags. The run must have litert: true (the README's table: litert_int8 too).
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, cpu_line

import yaml


def in_env(env, *args):
    command = [sys.executable, "-m", "workflow.orchestrator.envs", "exec", env, "--", "python", *map(str, args)]
    subprocess.run(command, cwd=REPO, check=True)


def int8_ir(results, config, work):
    """The run's INT8 IR, or one quantize makes now in work."""
    if (results / "quantize" / "model_int8.xml").is_file():
        return results / "quantize" / "model_int8.xml"
    contract = json.loads((results / "optimize" / "model.contract.json").read_text())
    mean = "--mean-in-ir" if contract["mean_in_ir"] else "--no-mean-in-ir"
    in_env(
        "optimizer", "-m", "workflow.quantize", "--deploy", results / "deploy" / "deploy.json",
        "--train-rec", results / "pack" / "train.rec", "--val-rec", results / "pack" / "val.rec",
        "--max-map-drop", config["int8_max_map_drop"], "--iou-threshold", config["iou_threshold"],
        "--color", contract["color_order"], mean, "--out-dir", work, "--model-name", "model_int8",
        "--summary", work / "summary.json", "--log", work / "mo.log",
    )  # fmt: skip
    return work / "model_int8.xml"


def side_by_side(results, config, int8_xml, work):
    """verify_ir's result with every model timed in turns."""
    litert = results / "export_litert"
    in_env(
        "optimizer", "-m", "workflow.verify_ir", "--deploy", results / "deploy" / "deploy.json",
        "--ir", results / "optimize" / "model.xml", "--val-rec", results / "pack" / "val.rec",
        "--min-score", config["parity_threshold"], "--iou-threshold", config["iou_threshold"],
        "--out", work / "verify.json", "--differences", work / "differences.txt",
        "--int8-ir", int8_xml, "--int8-max-map-drop", config["int8_max_map_drop"],
        "--onnx", results / "export_onnx" / "model.onnx",
        "--litert", *sorted(litert.glob("model_*.tflite")),
    )  # fmt: skip
    return json.loads((work / "verify.json").read_text())


def browser(results, work):
    out = work / "page.json"
    command = [sys.executable, str(REPO / "tests" / "browser" / "page_check.py"), "--run", str(results)]
    subprocess.run([*command, "--out", str(out)], cwd=REPO, check=True)
    return json.loads(out.read_text())["summary"]


def table(check, results, page):
    onnx = json.loads((results / "export_onnx" / "verify.json").read_text())
    litert = json.loads((results / "export_litert" / "verify.json").read_text())
    paired = {
        ("IR", check["precision"]): check["agreement"],
        ("IR", "INT8"): check["int8"]["agreement"],
        ("ONNX", "FP32"): onnx["agreement"],
        ("LiteRT", "FP32"): litert["float32_paired"]["agreement"],
        ("LiteRT", "INT8"): litert.get("int8_paired", {}).get("agreement"),
    }
    names = {"ONNX": "onnxruntime", "IR": "OpenVINO IR", "LiteRT": "LiteRT"}
    lines = [
        "| runtime | weights | computes in | ms per image | val mAP (VOC07) | paired with MXNet |",
        "|---" * 6 + "|",
    ]
    for row in check["side_by_side"]:
        share = paired.get((row["model"], row["weights"]))
        shown = "reference" if row["model"] == "MXNet" else "mAP only" if share is None else f"{share:.1%}"
        lines.append(
            f"| {names.get(row['model'], row['model'])} | {row['weights']} | {row['computes_in']} | "
            f"{row['ms']:.1f} | {row['map_voc07']:.4f} | {shown} |"
        )
    equal = f"{page['tensor_equal_images']}/{page['images']} images equal to onnxruntime's"
    onnx_map = next(row["map_voc07"] for row in check["side_by_side"] if row["model"] == "ONNX")
    page_map = f"{onnx_map:.4f}" if page["tensor_equal_images"] == page["images"] else "n/a"
    lines.append(
        f"| browser ({page['browser']}, onnxruntime-web {page['ort']}) | FP32 | wasm, "
        f"{page['threads']} thread | {page['ms_median_per_image']:.1f} | {page_map} | {equal} |"
    )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="sample", help="the finished run (results/<run>/, its config in the run)")
    parser.add_argument("--config", default=str(REPO / "config.yaml"), help="the config the run was made with")
    parser.add_argument("--out", help="also write the figures here (JSON)")
    args = parser.parse_args(argv)
    results = REPO / "results" / args.run
    config = yaml.safe_load(Path(args.config).read_text())
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        check = side_by_side(results, config, int8_ir(results, config, work), work)
        page = browser(results, work)
    text = table(check, results, page)
    cpu = f"CPU: {cpu_line()}"
    print(f"\n{text}\n\n{cpu}; MXNet, IRs, ONNX and LiteRT timed in turns (resize, inference, NMS), median")
    if args.out:
        Path(args.out).write_text(json.dumps({"side_by_side": check["side_by_side"], "browser": page, "cpu": cpu}))


if __name__ == "__main__":
    main()
