"""The real workflow on a dozen sample images with the tiny network, from the VOC folder to the IR."""

import hashlib
import json
import subprocess
import sys
import zipfile

from conftest import REPO, SAMPLE, in_env

from workflow.deeplens_model import DEEPLENS_LAYERS

IR_PROBE = """
import json, sys, cv2
from workflow.device import infer
compiled, contract = infer.load(sys.argv[1])
image = cv2.imread(sys.argv[2])
outputs = compiled(infer.preprocess(image, contract))
shapes = {key: list(outputs[compiled.output(name)].shape) for key, name in contract["outputs"].items()}
print(json.dumps({"shapes": shapes, "detections": infer.detect(compiled, image, contract, 0.0),
                  "by_default": infer.detect(compiled, image, contract), "contract": contract}))
"""

LAMBDA_PROBE = """
import json, os, sys, types, cv2
frame = cv2.imread(sys.argv[2])
published = []
sys.modules["awscam"] = types.SimpleNamespace(getLastFrame=lambda: (True, frame))
client = types.SimpleNamespace(publish=lambda topic, payload: published.append([topic, json.loads(payload)]))
sys.modules["greengrasssdk"] = types.SimpleNamespace(client=lambda kind: client)
os.environ.update(OPENVINO_DEVICE="CPU", DETECTION_THRESHOLD="0.0")
sys.path.insert(0, sys.argv[1])
import openvino_lambda
openvino_lambda.infinite_infer_run(frames=2)
del os.environ["DETECTION_THRESHOLD"]  # then the contract's score threshold
openvino_lambda.infinite_infer_run(frames=1)
print(json.dumps(published))
"""


def no_problems(checked):
    """True when a proof (verify.json's "proof": its networks, anchors, settings, post-processing) found nothing."""
    parts = [checked.get("network"), *checked.get("networks", []), checked.get("postprocessing")]
    found = [problem for part in parts if part for problem in part["problems"]]
    return not found + checked.get("anchors", []) + checked.get("settings", [])


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_workflow_runs_through_the_ir_and_leaves_valid_artifacts(finished_run):
    snakefile, workdir, config = finished_run
    results = workdir / "results" / "tiny"
    artifacts = results / "artifacts"

    manifest = json.loads((artifacts / "manifest.json").read_text())
    in_folder = [p.relative_to(artifacts).as_posix() for p in artifacts.rglob("*") if p.is_file()]
    assert sorted(manifest["files"]) == sorted(name for name in in_folder if name != "manifest.json")
    for name, entry in manifest["files"].items():
        assert sha256(artifacts / name) == entry["sha256"], name
    assert (artifacts / "labels.txt").read_text().split() == config["classes"]
    assert {"model.xml", "model.bin", "infer.py", "deploy_ssd_tiny_64-symbol.json"} <= set(manifest["files"])
    assert "attr" in (artifacts / manifest["mxnet012"]["symbol"]).read_text()

    ir_check = manifest["ir"]["check"]  # every proof's parts: tests/optimizer, tests/mxnet; here that they ran
    assert ir_check["conversion"]["map_difference"] <= 0.005 and no_problems(ir_check["proof"])
    assert [network["model"] for network in ir_check["proof"]["networks"]] == ["the FP32 IR", "the FP16 IR"]
    assert ir_check["precision"] == "FP16" and ir_check["force_nms"] is True
    assert manifest["ir"]["input_contract"]["inference_precision"] == "f32"
    assert ir_check["inference_precision"] == {"requested": "f32", "ran": "f32"}  # on every CPU
    assert ir_check["fast_precision"]["inference_precision"] == "bf16"
    onnx_check = manifest["onnx"]["check"]
    assert {"model.onnx", "model.onnx.contract.json"} <= set(manifest["files"])
    assert onnx_check["images"] == ir_check["images"] and no_problems(onnx_check["proof"])
    assert onnx_check["map_difference"] <= 0.005 and manifest["onnx"]["contract"]["force_nms"] is True
    litert = manifest["litert"]  # float32 proven against MXNet as model.onnx is; INT8 within int8_max_map_drop
    assert {"model_float32.tflite", "model_int8.tflite", "litert.contract.json", "litert_infer.py"} <= set(
        manifest["files"]
    )
    assert litert["check"]["images"] == ir_check["images"] and no_problems(litert["check"]["proof"])
    assert litert["check"]["float32_network"]["problems"] == [] and litert["check"]["int8_network"]["note"]
    assert abs(litert["check"]["float32_map_voc07"] - litert["check"]["mxnet_map_voc07"]) <= 0.005
    assert litert["check"]["mxnet_map_voc07"] - litert["check"]["int8_map_voc07"] <= litert["check"]["max_map_drop"]
    assert litert["contract"]["input_shape"] == [1, 64, 64, 3] and "anchors" not in litert["contract"]
    web = manifest["web"]  # the browser page with model.onnx and onnxruntime-web's wasm files (make test-browser)
    assert web["folder"] == "web/" and web["execution_provider"] == "wasm"
    web_files = {"index.html", "app.js", "model.onnx", "model.onnx.contract.json", *web["runtime"]["files"]}
    assert {f"web/{name}" for name in web_files} <= set(manifest["files"])
    assert manifest["files"]["web/model.onnx"]["sha256"] == manifest["files"]["model.onnx"]["sha256"]
    timed = {row["model"]: row for row in ir_check["side_by_side"]}  # one run, in turns, beside MXNet and the IR
    assert timed["ONNX"]["map_voc07"] == onnx_check["onnx_map_voc07"] and timed["ONNX"]["ms"] > 0
    for train_log in (results / "logs").glob("train_*.log"):  # our progress lines, not MXNet's chatter
        text = train_log.read_text()
        assert "val mAP" in text and "Subgraph backend" not in text and "ImageDetRecordIOParser" not in text
    assert manifest["mxnet012"]["check"]["mxnet_version"] == "0.12.0" and no_problems(
        manifest["mxnet012"]["check"]["proof"]
    )
    check_the_deeplens_folder(artifacts, manifest, config, results)

    image = sorted((workdir / "voc" / "JPEGImages").iterdir())[0]
    probe = in_env("optimizer", IR_PROBE, artifacts / "model.xml", image)
    anchors = probe["shapes"]["class_prob"][2]
    assert probe["shapes"] == {
        "class_prob": [1, 3, anchors],
        "box_offsets": [1, 4 * anchors],
        "anchors": [1, 2, 4 * anchors],
    }
    assert probe["detections"] and all(len(row) == 6 and row[0] in (0, 1) for row in probe["detections"])
    metrics = json.loads((results / "evaluate" / "metrics.json").read_text())
    chosen = metrics["score_threshold"]["overall"]["threshold"]
    assert probe["contract"]["score_threshold"] == chosen and manifest["thresholds"]["score_threshold"] == chosen
    assert set(probe["contract"]["class_score_thresholds"]) == set(config["classes"])
    assert probe["by_default"] == [row for row in probe["detections"] if row[1] >= chosen]  # infer's default

    command = [
        sys.executable,
        str(REPO / "workflow" / "orchestrator" / "envs.py"),
        "exec",
        "optimizer",
        "--",
        "python",
        str(artifacts / "infer.py"),
        str(image.parent),
        "--threshold",
        "0",
        "--out-dir",
        str(workdir / "drawn"),
    ]
    lines = subprocess.run(command, cwd="/", capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(lines) == 12 and all(json.loads(line)["detections"] for line in lines)
    assert len(list((workdir / "drawn").glob("*.jpg"))) == 12

    published = in_env("optimizer", LAMBDA_PROBE, artifacts, image)
    assert len(published) == 3 and published[0][0] == "$aws/things/deeplens/infer"
    assert {d["label"] for d in published[0][1]["detections"]} <= set(config["classes"]) and published[0][1][
        "detections"
    ]
    assert [d["score"] for d in published[2][1]["detections"]] == [round(row[1], 4) for row in probe["by_default"]]

    assert (
        metrics["images"] == len((results / "split" / "val.txt").read_text().split()) and 0 <= metrics["map_voc07"] <= 1
    )
    demo = json.loads((results / "demo" / "demo.json").read_text())
    assert len(demo["images"]) == 2 and all(
        (results / "demo" / d["output"]).stat().st_size > 1000 for d in demo["images"]
    )
    report = (results / "report" / "report.html").read_text()
    assert "<h3>Time and memory per stage</h3>" in report
    for stage in ("check", "pack_train", "train_epoch_15", "train_epoch_30", "verify_ir", "artifacts"):
        assert (results / "benchmarks" / f"{stage}.tsv").is_file() and f"<td>{stage}</td>" in report
    assert "val mAP" in report and report.count("<img") >= 5
    low, high = metrics["intervals"]["map_voc07"]
    assert f"{metrics['map_voc07']:.3f} ({low:.2f}-{high:.2f}, {metrics['images']} images)" in report
    assert f"<b>{chosen:.3f}</b>, the one that maximises F1" in report


def check_the_deeplens_folder(artifacts, manifest, config, results, stem="deploy_ssd_tiny_64"):
    deeplens = manifest["deeplens"]
    assert {name for name in manifest["files"] if name.startswith("deeplens/")} == {
        f"deeplens/model/{stem}-symbol.json",
        f"deeplens/model/{stem}-0000.params",
        "deeplens/lambda_function.py",
        "deeplens/local_display.py",
        "deeplens/model.json",
        "deeplens/labels.txt",
        "deeplens/deeplens-tiny-lambda.zip",
    }
    graph = json.loads((artifacts / "deeplens" / "model" / f"{stem}-symbol.json").read_text())
    layers = {node["op"] for node in graph["nodes"]} - {"null"}
    assert layers <= DEEPLENS_LAYERS and "_copy" not in layers and "attr" in graph["nodes"][-1]
    assert no_problems(deeplens["model"]["proof"])
    with zipfile.ZipFile(artifacts / "deeplens" / "deeplens-tiny-lambda.zip") as archive:
        names = set(archive.namelist())
        assert archive.read("lambda_function.py") == (artifacts / "deeplens" / "lambda_function.py").read_bytes()
    assert {"lambda_function.py", "local_display.py", "model.json", "labels.txt", "greengrasssdk/__init__.py"} <= names
    settings = json.loads((artifacts / "deeplens" / "model.json").read_text())
    assert (
        settings["model_name"] == stem
        and settings["input_width"] == config["data_shape"]
        and settings["force_nms"] is True
    )
    assert deeplens["package"]["mxnet012_check"]["mxnet_version"] == "0.12.0"
    rehearsal = deeplens["rehearsal"]
    val_images = len((results / "split" / "val.txt").read_text().split())
    assert rehearsal["images"] == rehearsal["messages"] == val_images and rehearsal["display_frames"] >= 1
    assert no_problems(rehearsal["proof"]) and rehearsal["min_score"] == config["parity_threshold"]


def test_dataset_folder_is_only_read(finished_run):
    _, workdir, _ = finished_run
    originals = {p.name: sha256(p) for p in SAMPLE.rglob("*") if p.is_file()}
    files = [p for p in (workdir / "voc").rglob("*") if p.is_file()]
    assert len(files) == 24 and all(sha256(p) == originals[p.name] for p in files)


def runner_lines(artifacts, env, runner, images, *options):
    """The JSON lines a runner of the artifact folder prints, run there as a user would, in a stage environment."""
    envs = str(REPO / "workflow" / "orchestrator" / "envs.py")
    command = [sys.executable, envs, "exec", env, "--", "python", runner, *map(str, images), *options]
    result = subprocess.run(command, cwd=artifacts, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_the_litert_runner_detects_in_the_artifact_folder_as_the_onnx_runner_does(finished_run, tmp_path):
    """litert_infer.py: with the float32 model, model.onnx's detections; with the INT8 one, boxes of the classes."""
    _, workdir, config = finished_run
    artifacts = workdir / "results" / "tiny" / "artifacts"
    images = sorted((workdir / "voc" / "JPEGImages").iterdir())[:3]
    onnx_lines = runner_lines(artifacts, "mxnet", "onnx_infer.py", images, "--threshold", "0.05")
    float_lines = runner_lines(
        artifacts, "litert", "litert_infer.py", images, "--model", "model_float32.tflite", "--threshold", "0.05"
    )
    assert [line["image"] for line in float_lines] == [str(image) for image in images]
    for onnx_line, float_line in zip(onnx_lines, float_lines):
        assert [d["label"] for d in float_line["detections"]] == [d["label"] for d in onnx_line["detections"]]
        for found, expected in zip(float_line["detections"], onnx_line["detections"]):
            assert abs(found["score"] - expected["score"]) <= 2e-3
            assert max(abs(a - b) for a, b in zip(found["box"], expected["box"])) <= 2e-3
    assert sum(len(line["detections"]) for line in onnx_lines) >= 3
    int8_lines = runner_lines(artifacts, "litert", "litert_infer.py", images, "--out-dir", tmp_path / "drawn")
    assert len(int8_lines) == 3 and len(list((tmp_path / "drawn").glob("*.jpg"))) == 3  # model_int8.tflite by default
    assert {d["label"] for line in int8_lines for d in line["detections"]} <= set(config["classes"])
