"""artifacts: everything a device needs, in one folder that refers to nothing outside it.

IR .xml/.bin and its input contract, the MXNet deploy symbol/params, labels.txt, infer.py (OpenVINO
runtime + numpy + OpenCV only), the deeplens/ folder for an AWS DeepLens (its model, inference Lambda and zip,
from rules/deeplens.smk), model.onnx with onnx_infer.py, the LiteRT models with litert_infer.py (litert: true),
web/ (the browser page of workflow.export_web) and manifest.json: every file with sha256 and size, the classes,
thresholds, metrics, the DeepLens checks, and the hashes of config, data, code and environment locks that made it.

The shipped model.contract.json is optimize's plus score_threshold (and class_score_thresholds): the score that
maximised F1 on val in evaluate's metrics.json, infer.py's and the Lambda's default. It is added here rather than
by optimize so that a change of evaluation does not run the Model Optimizer again.
"""

import argparse
import hashlib
import json
import shutil
from pathlib import Path

from workflow.lib.cli import log, run_main
from workflow.lib.contracts import shipped_contract
from workflow.lib.hashing import files_sha256, sha256_file

REPO = Path(__file__).resolve().parent.parent
DEVICE_CODE = {
    REPO / "workflow" / "device" / name: name
    for name in ("infer.py", "onnx_infer.py", "litert_infer.py", "openvino_lambda.py")
}
DEEPLENS_FOLDER = "deeplens"  # what an AWS DeepLens project takes, ready to upload
LITERT_CONTRACT = "litert.contract.json"
WEB_FOLDER = "web"  # the browser page (workflow.export_web): serve it, open index.html
CODE_GLOBS = ("Snakefile", "rules/*.smk", "workflow/**/*.py", "workflow/schemas/*")


def provenance(config_json, annotations):
    code = sorted(p for pattern in CODE_GLOBS for p in REPO.glob(pattern) if p.is_file())
    locks = {p.stem: sha256_file(p) for p in sorted((REPO / "envs").glob("*.txt"))}
    return {
        "config_sha256": hashlib.sha256(config_json.encode()).hexdigest(),
        "annotations_sha256": sha256_file(annotations),
        "code_sha256": files_sha256(code, REPO),
        "env_locks_sha256": locks,
    }


def folder_readme(manifest):
    contract = manifest["ir"]["input_contract"]
    check = manifest["ir"]["check"]
    return f"""# Artifacts: the detector for every device

Detector of {", ".join(manifest["classes"])} (class ids in that order, see labels.txt).
Val mAP (VOC07, IoU {manifest["metrics"]["iou_threshold"]}): MXNet {check["mxnet_map_voc07"]:.4f}, \
this IR {check["ir_map_voc07"]:.4f}.

| file | what |
|---|---|
| {contract["model"]}, model.bin | OpenVINO IR ({contract["precision"]}), input {contract["input_shape"]} \
{contract["layout"]} {contract["color_order"]}, mean \
{"inside the IR" if contract["mean_in_ir"] else "subtracted by the caller"} |
| model.contract.json | the IR's input and output contract, with the inference precision infer.py uses: \
{contract["inference_precision"]}, the one verify_ir proved it at: {network_figure(check["proof"]["networks"][0])} |
{int8_row(manifest)}| infer.py | `python infer.py` needs only openvino, numpy and OpenCV; `load()` then \
`detect(compiled, frame_bgr, contract)` |
| openvino_lambda.py | a Greengrass inference Lambda for Intel devices with the current OpenVINO runtime (not a \
DeepLens): camera frames in, detections published to IoT (greengrasssdk) |
| {DEEPLENS_FOLDER}/ | for an AWS DeepLens: model/ (the DeepLens model, raw BGR frames in, MXNet 0.12 form, for \
the console's model import), {manifest["deeplens"]["package"]["zip"]} (the inference Lambda for the Lambda \
console) and its files; rehearsed on {manifest["deeplens"]["rehearsal"]["images"]} val images: \
{network_figure(manifest["deeplens"]["rehearsal"]["proof"]["networks"][0])}, the Lambda's post-processing MXNet's |
| {manifest["onnx"]["model"]}, model.onnx.contract.json | the same detector as ONNX (opset \
{manifest["onnx"]["contract"]["opset"]}, NMS inside: resized RGB image in, rows of class, score and box out) for \
ONNX Runtime, TensorRT and the other runtimes that take ONNX; under onnxruntime \
{network_figure(manifest["onnx"]["check"]["proof"]["network"])}, val mAP \
{manifest["onnx"]["check"]["onnx_map_voc07"]:.4f} |
{litert_row(manifest)}| {WEB_FOLDER}/ | the same model.onnx in a browser page ({manifest["web"]["runtime"]["package"]} \
{manifest["web"]["runtime"]["version"]}, wasm backend, its files beside the page, nothing from the network): \
`python3 -m http.server` in {WEB_FOLDER}/, open http://localhost:8000/, drop an image or start the camera |
| {manifest["mxnet"]["symbol"]}, {manifest["mxnet"]["params"]} | the MXNet deploy model (MXNet 1.x) |
| {manifest["mxnet012"]["symbol"]}, {manifest["mxnet012"]["params"]} | the same model for MXNet 0.12, \
the DeepLens' version |
| manifest.json | every file's sha256 and size, metrics, thresholds, how the model was made |

The IR holds the network; infer.py does what the deploy model's MultiBoxDetection does with its outputs (the \
{contract["nms_topk"]} best boxes, NMS {"across classes (force_nms)" if contract["force_nms"] else "per class"} at \
IoU {contract["nms_threshold"]}), so its detections are the MXNet deploy model's. Every file here was proven against \
MXNet: its network's outputs, and its post-processing on the same inputs (docs/numbers.md in the repository, "The \
proofs").

Score threshold: {threshold_sentence(contract)}

Example:

    import cv2, infer
    compiled, contract = infer.load("model.xml")
    for cls, score, xmin, ymin, xmax, ymax in infer.detect(compiled, cv2.imread("photo.jpg"), contract):
        print(contract["labels"][cls], score, xmin, ymin, xmax, ymax)
"""


def network_figure(network):
    """A proof's network comparison in a few words."""
    return (
        f"its class probabilities within {network['max_class_prob_difference']:.0e} and its box offsets within "
        f"{network['max_box_difference']:.0e} of {network['reference']}'s"
    )


def int8_row(manifest):
    """The folder README's row of the INT8 IR, when there is one."""
    if not manifest["ir_int8"]:
        return ""
    check = manifest["ir"]["check"]["int8"]
    return (
        f"| {manifest['ir_int8']['xml']}, {manifest['ir_int8']['bin']}, model_int8.contract.json | the INT8 IR for "
        f"CPU targets (fast with AVX-512 VNNI or AMX; `infer.py --model {manifest['ir_int8']['xml']}`): val mAP "
        f"{check['ir_map_voc07']:.4f}, allowed at most {check['max_map_drop']} below MXNet's |\n"
    )


def litert_row(manifest):
    """The folder README's row of the LiteRT models, when there are some."""
    if not manifest["litert"]:
        return ""
    litert, check = manifest["litert"], manifest["litert"]["check"]
    int8 = (
        f", full-integer INT8 (uint8 pixels in) val mAP {check['int8_map_voc07']:.4f}"
        if "int8" in litert["models"]
        else f"; no INT8 model: {check['int8_not_shipped']}"
        if "int8_not_shipped" in check
        else ""
    )
    return (
        f"| {', '.join(litert['models'].values())}, {LITERT_CONTRACT} | the network for LiteRT (TensorFlow Lite: a "
        f"Pi's CPU, Android); `python litert_infer.py --model ...` does the box decoding and NMS; float32: "
        f"{network_figure(check['float32_network'])}, val mAP {check['float32_map_voc07']:.4f}{int8} |\n"
    )


def copy_litert(check_path, out, metrics):
    """The two .tflite models and their contract (with the val score threshold) beside the other models: the
    manifest's entry, whose contract leaves the anchors out (they are in the shipped file)."""
    folder = Path(check_path).parent
    check = json.loads(Path(check_path).read_text())
    contract = shipped_contract(json.loads((folder / LITERT_CONTRACT).read_text()), metrics)
    for name in contract["model"].values():
        shutil.copy2(folder / name, out / name)
    (out / LITERT_CONTRACT).write_text(json.dumps(contract) + "\n")
    summary = {key: value for key, value in contract.items() if key != "anchors"}
    return {"models": contract["model"], "contract": summary, "check": check}


def threshold_sentence(contract):
    if "score_threshold" not in contract:
        return "none was chosen (no val detections); infer.py and the Lambda use 0.5 unless given one."
    return (
        f"infer.py and the Lambda keep detections scoring at least {contract['score_threshold']:.3f} unless given "
        f"a threshold (`--threshold`, DETECTION_THRESHOLD, or detect()'s argument): "
        f"{contract['score_threshold_source']}."
    )


def copy_deeplens_folder(args, target):
    """model/ of the DeepLens model and the Lambda's files with its zip, in a fresh folder (not Snakemake's
    .snakemake_timestamp of a directory output)."""
    shutil.rmtree(target, ignore_errors=True)
    hidden = shutil.ignore_patterns(".*")
    shutil.copytree(Path(args.deeplens_model).parent / "model", target / "model", ignore=hidden)
    shutil.copytree(Path(args.deeplens_upload), target, ignore=hidden, dirs_exist_ok=True)


def copy_web_folder(source, target):
    """export_web's folder (the page, model.onnx, onnxruntime-web's wasm files) without hidden files; returns its
    web.json, for the manifest."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".*"))
    return {"folder": f"{WEB_FOLDER}/", **json.loads((target / "web.json").read_text())}


def copy_int8_ir(xml, out, metrics):
    """The INT8 IR for CPU targets beside the shipped one, its contract with the same score threshold."""
    xml = Path(xml)
    for source in (xml, xml.with_suffix(".bin")):
        shutil.copy2(source, out / source.name)
    contract = shipped_contract(json.loads(xml.with_suffix(".contract.json").read_text()), metrics)
    (out / xml.with_suffix(".contract.json").name).write_text(json.dumps(contract, indent=2) + "\n")
    return contract


def collect(args):
    deploy = json.loads(Path(args.deploy).read_text())
    deploy_dir = Path(args.deploy).parent
    ir_xml = Path(args.ir)
    out = Path(args.out_dir)
    shutil.rmtree(out, ignore_errors=True)  # the files of an earlier run (another deployed epoch) are not this one's
    out.mkdir(parents=True)
    mxnet012 = json.loads(Path(args.mxnet012).read_text())
    mxnet012_dir = Path(args.mxnet012).parent
    copies = [
        ir_xml,
        ir_xml.with_suffix(".bin"),
        deploy_dir / deploy["symbol"],
        deploy_dir / deploy["params"],
        Path(args.deploy),
        mxnet012_dir / mxnet012["symbol"],
        mxnet012_dir / mxnet012["params"],
    ]
    onnx_model = Path(args.onnx)
    copies.append(onnx_model)
    for source in copies:
        shutil.copy2(source, out / source.name)
    metrics = json.loads(Path(args.metrics).read_text())
    onnx_contract = shipped_contract(json.loads(onnx_model.with_suffix(".onnx.contract.json").read_text()), metrics)
    (out / "model.onnx.contract.json").write_text(json.dumps(onnx_contract, indent=2) + "\n")
    contract = shipped_contract(json.loads(Path(args.contract).read_text()), metrics)
    (out / Path(args.contract).name).write_text(json.dumps(contract, indent=2) + "\n")
    for source, name in DEVICE_CODE.items():
        shutil.copy2(source, out / name)
    (out / "labels.txt").write_text("".join(f"{name}\n" for name in deploy["classes"]))
    copy_deeplens_folder(args, out / DEEPLENS_FOLDER)
    int8_contract = copy_int8_ir(args.int8_ir, out, metrics) if args.int8_ir else None
    web = copy_web_folder(Path(args.web).parent, out / WEB_FOLDER)
    litert = copy_litert(args.litert, out, metrics) if args.litert else None
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    manifest = {
        "files": {p.relative_to(out).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in files},
        "classes": deploy["classes"],
        "ir": {
            "xml": ir_xml.name,
            "bin": ir_xml.with_suffix(".bin").name,
            "input_contract": contract,
            "check": json.loads(Path(args.ir_check).read_text()),
        },
        "ir_int8": None
        if int8_contract is None
        else {
            "xml": int8_contract["model"],
            "bin": Path(int8_contract["model"]).with_suffix(".bin").name,
            "input_contract": int8_contract,
            "for": "CPU targets (INT8 layers run fast with AVX-512 VNNI or AMX); the DeepLens GPU runs the IR above",
        },
        "onnx": {
            "model": onnx_model.name,
            "contract": onnx_contract,
            "check": json.loads(Path(args.onnx_check).read_text()),
        },
        "litert": litert,
        "web": web,
        "mxnet": {
            "symbol": deploy["symbol"],
            "params": deploy["params"],
            "epoch": deploy["epoch"],
            "epoch_reason": deploy["epoch_reason"],
            "input": deploy["input"],
        },
        "mxnet012": {
            "symbol": mxnet012["symbol"],
            "params": mxnet012["params"],
            "check": json.loads(Path(args.mxnet012_check).read_text()),
        },
        "thresholds": {
            **{k: deploy[k] for k in ("force_nms", "nms_threshold", "nms_topk", "threshold")},
            "score_threshold": contract.get("score_threshold"),
        },
        "metrics": {k: metrics[k] for k in ("images", "iou_threshold", "map_voc07", "map_area", "coco_map")},
        "deeplens": {
            "model": json.loads(Path(args.deeplens_model).read_text()),
            "package": json.loads(Path(args.deeplens_package).read_text()),
            "rehearsal": json.loads(Path(args.deeplens_rehearsal).read_text()),
        },
        "provenance": provenance(args.config, args.annotations),
    }
    (out / "README.md").write_text(folder_readme(manifest))
    manifest["files"]["README.md"] = {
        "sha256": sha256_file(out / "README.md"),
        "bytes": (out / "README.md").stat().st_size,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    log(f"artifacts: {len(files)} files in {out}, val mAP (VOC07) {metrics['map_voc07']}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.artifacts", description=__doc__.split("\n\n")[0])
    for name in (
        "--deploy",
        "--ir",
        "--contract",
        "--metrics",
        "--mxnet012",
        "--mxnet012-check",
        "--ir-check",
        "--deeplens-model",
        "--deeplens-upload",
        "--deeplens-package",
        "--deeplens-rehearsal",
        "--onnx",
        "--onnx-check",
        "--web",
        "--annotations",
        "--config",
        "--out-dir",
    ):
        parser.add_argument(name, required=True)
    parser.add_argument("--litert", help="verify.json of export_litert: its models are shipped beside the others")
    parser.add_argument("--int8-ir", help="the INT8 IR for CPU targets (workflow.quantize), shipped beside the IR")
    collect(parser.parse_args(argv))


if __name__ == "__main__":
    run_main(main)
