"""export_litert fails, saying what it reached, when the LiteRT models do not detect what MXNet detects; an INT8 model
that misses its budget is left out, or fails the stage when it is required."""

import json
import shutil
import subprocess
import sys

from conftest import REPO


def export_litert(results, network, out_dir, differences, int8, max_map_drop):
    stage = [sys.executable, str(REPO / "workflow" / "orchestrator" / "envs.py"), "exec", "litert", "--", "python"]
    arguments = ["--network", network, "--deploy", results / "deploy" / "deploy.json"]
    arguments += ["--train-rec", results / "pack" / "train.rec", "--val-rec", results / "pack" / "val.rec"]
    arguments += ["--min-score", "0.05", "--iou-threshold", "0.5", "--int8", int8, "--max-map-drop", max_map_drop]
    arguments += ["--out-dir", out_dir, "--differences", differences]
    command = [*stage, "-m", "workflow.export_litert", *map(str, arguments)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True)


def test_models_that_detect_otherwise_fail_the_stage_and_keep_the_differences(finished_run, tmp_path):
    _, workdir, _ = finished_run
    results = workdir / "results" / "tiny"
    network = tmp_path / "network.onnx"
    shutil.copy(results / "export_onnx" / "network.onnx", network)
    contract = json.loads((results / "export_onnx" / "network.onnx.contract.json").read_text())
    contract["nms_threshold"] = 0.95  # the runner takes it from the contract: it now keeps boxes MXNet suppresses
    (tmp_path / "network.onnx.contract.json").write_text(json.dumps(contract))
    differences = tmp_path / "differences.txt"
    result = export_litert(results, network, tmp_path / "litert", differences, "required", 0.01)
    assert result.returncode != 0
    assert "ERROR: the LiteRT models do not hold: the float32 model paired" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert "float32: val image " in differences.read_text() and ": only LiteRT float32: " in differences.read_text()
    assert not (tmp_path / "litert" / "verify.json").exists()


def test_an_int8_model_over_its_budget_is_left_out_unless_required(finished_run, tmp_path):
    """A budget no model can hold (a drop below -1): when-within-budget ships the float model alone, with a warning
    and the reason in verify.json; required fails the stage saying what the INT8 model reached."""
    _, workdir, _ = finished_run
    results = workdir / "results" / "tiny"
    network = results / "export_onnx" / "network.onnx"
    out = tmp_path / "litert"
    result = export_litert(results, network, out, tmp_path / "differences.txt", "when-within-budget", -1)
    assert result.returncode == 0, result.stderr
    assert "WARNING: export_litert: the INT8 model's mAP" in result.stderr + result.stdout
    check = json.loads((out / "verify.json").read_text())
    assert (
        check["int8_not_shipped"].startswith("the INT8 model's mAP ")
        and "(int8_max_map_drop -1.0)" in check["int8_not_shipped"]
    )
    assert json.loads((out / "litert.contract.json").read_text())["model"] == {"float32": "model_float32.tflite"}
    assert (out / "model_int8.tflite").is_file()  # kept in the stage's folder to look at

    required = export_litert(results, network, tmp_path / "again", tmp_path / "again.txt", "required", -1)
    assert required.returncode != 0 and "Traceback" not in required.stderr
    assert "ERROR: the LiteRT models do not hold: the INT8 model's mAP" in required.stderr + required.stdout
