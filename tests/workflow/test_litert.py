"""export_litert fails, saying what it reached, when the LiteRT models do not detect what MXNet detects."""

import json
import shutil
import subprocess
import sys

from conftest import REPO


def test_models_that_detect_otherwise_fail_the_stage_and_keep_the_differences(finished_run, tmp_path):
    _, workdir, _ = finished_run
    results = workdir / "results" / "tiny"
    network = tmp_path / "network.onnx"
    shutil.copy(results / "export_onnx" / "network.onnx", network)
    contract = json.loads((results / "export_onnx" / "network.onnx.contract.json").read_text())
    contract["nms_threshold"] = 0.95  # the runner takes it from the contract: it now keeps boxes MXNet suppresses
    (tmp_path / "network.onnx.contract.json").write_text(json.dumps(contract))
    differences = tmp_path / "differences.txt"
    stage = [sys.executable, str(REPO / "workflow" / "orchestrator" / "envs.py"), "exec", "litert", "--", "python"]
    arguments = ["--network", network, "--deploy", results / "deploy" / "deploy.json"]
    arguments += ["--train-rec", results / "pack" / "train.rec", "--val-rec", results / "pack" / "val.rec"]
    arguments += ["--min-score", "0.05", "--iou-threshold", "0.5", "--int8", "--max-map-drop", "0.01"]
    arguments += ["--out-dir", tmp_path / "litert", "--differences", differences]
    command = [*stage, "-m", "workflow.export_litert", *map(str, arguments)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0
    assert "ERROR: the LiteRT models do not hold: the float32 model paired" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert "float32: val image " in differences.read_text() and ": only LiteRT float32: " in differences.read_text()
    assert not (tmp_path / "litert" / "verify.json").exists()
