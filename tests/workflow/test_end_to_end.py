"""The real workflow on a dozen sample images with the tiny network, from the VOC folder to the IR."""
import hashlib
import json
import subprocess
import sys

from conftest import REPO, snakemake

IR_PROBE = """
import json, sys, cv2
from workflow import ir_infer
compiled, contract = ir_infer.load(sys.argv[1])
image = cv2.imread(sys.argv[2])
raw = compiled(ir_infer.preprocess(image, contract))[compiled.output(0)]
print(json.dumps({"raw_shape": list(raw.shape), "detections": ir_infer.detect(compiled, image, contract, 0.0)}))
"""


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_ir(xml, image):
    command = [sys.executable, "-m", "workflow.envs", "exec", "optimizer", "--", "python", "-c", IR_PROBE, str(xml), str(image)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.splitlines()[-1])


def test_workflow_runs_through_the_ir_and_leaves_valid_artifacts(tiny_run):
    workdir, config = tiny_run()
    dataset_before = {p: sha256(p) for p in (workdir / "voc").rglob("*") if p.is_file()}
    snakemake(workdir, "deeplens_artifacts", "--cores", "2")
    results = workdir / "results" / "tiny"
    artifacts = results / "deeplens_artifacts"

    manifest = json.loads((artifacts / "manifest.json").read_text())
    assert sorted(manifest["files"]) == sorted(p.name for p in artifacts.iterdir() if p.name != "manifest.json")
    for name, entry in manifest["files"].items():
        assert sha256(artifacts / name) == entry["sha256"], name
    assert (artifacts / "labels.txt").read_text().split() == config["classes"]
    assert {"model.xml", "model.bin", "infer.py", "deploy_ssd_tiny_64-symbol.json"} <= set(manifest["files"])
    assert "attr" in (artifacts / manifest["mxnet012"]["symbol"]).read_text()

    ir_check = manifest["ir"]["check"]
    assert ir_check["map_difference"] <= 0.005 and ir_check["agreement"] >= 0.97
    assert ir_check["precision"] == "FP16" and ir_check["force_nms"] is True
    assert manifest["mxnet012"]["check"]["mxnet_version"] == "0.12.0" and manifest["mxnet012"]["check"]["mismatches"] == []

    image = sorted((workdir / "voc" / "JPEGImages").iterdir())[0]
    probe = run_ir(artifacts / "model.xml", image)
    assert probe["raw_shape"][:3] == [1, 1, 400] and probe["raw_shape"][3] == 7
    assert probe["detections"] and all(len(row) == 6 and row[0] in (0, 1) for row in probe["detections"])

    metrics = json.loads((results / "evaluate" / "metrics.json").read_text())
    assert metrics["images"] == len((results / "split" / "val.txt").read_text().split()) and 0 <= metrics["map_voc07"] <= 1
    demo = json.loads((results / "demo" / "demo.json").read_text())
    assert len(demo["images"]) == 2 and all((results / "demo" / d["output"]).stat().st_size > 1000 for d in demo["images"])
    report = (results / "report.html").read_text()
    assert "val mAP" in report and report.count("<img") >= 4

    assert "Nothing to be done" in snakemake(workdir, "-n", "deeplens_artifacts", "--cores", "2").stdout
    assert dataset_before == {p: sha256(p) for p in (workdir / "voc").rglob("*") if p.is_file()}
