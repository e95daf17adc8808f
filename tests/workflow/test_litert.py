"""export_litert fails, naming what differs, when the LiteRT models do not compute what MXNet computes; an INT8 model
that misses its budget is left out, or fails the stage when it is required."""

import json
import re
import subprocess
import sys

from conftest import REPO, in_env

SCALE_A_CONVOLUTION = """
import sys, onnx
from onnx import numpy_helper
model = onnx.load(sys.argv[1])
weight = next(node.input[1] for node in model.graph.node if node.op_type == "Conv")
(tensor,) = [t for t in model.graph.initializer if t.name == weight]
tensor.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(tensor) * 1.02).astype("float32"), weight))
onnx.save(model, sys.argv[2])
print("null")
"""


def export_litert(results, network, out_dir, differences, int8, max_map_drop):
    stage = [sys.executable, str(REPO / "workflow" / "orchestrator" / "envs.py"), "exec", "litert", "--", "python"]
    arguments = ["--network", network, "--deploy", results / "deploy" / "deploy.json"]
    arguments += ["--train-rec", results / "pack" / "train.rec", "--val-rec", results / "pack" / "val.rec"]
    arguments += ["--min-score", "0.05", "--iou-threshold", "0.5", "--int8", int8, "--max-map-drop", max_map_drop]
    arguments += ["--out-dir", out_dir, "--differences", differences]
    command = [*stage, "-m", "workflow.export_litert", *map(str, arguments)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True)


def test_models_that_compute_otherwise_fail_the_stage_naming_what_differs(finished_run, tmp_path):
    """Two defects in one conversion: one convolution's weights scaled by 1.02 in network.onnx (the network), and
    nms_threshold changed in its contract (the post-processing)."""
    _, workdir, _ = finished_run
    results = workdir / "results" / "tiny"
    network = tmp_path / "network.onnx"
    in_env("mxnet", SCALE_A_CONVOLUTION, results / "export_onnx" / "network.onnx", network)
    contract = json.loads((results / "export_onnx" / "network.onnx.contract.json").read_text())
    contract["nms_threshold"] = 0.95  # the runner takes it from the contract: it now keeps boxes MXNet suppresses
    (tmp_path / "network.onnx.contract.json").write_text(json.dumps(contract))
    differences = tmp_path / "differences.txt"
    result = export_litert(results, network, tmp_path / "litert", differences, "required", 0.01)
    output = result.stderr + result.stdout
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "ERROR: the LiteRT models do not compute what the MXNet model computes: " in output
    assert re.search(
        r"the LiteRT float32 model's (class probabilities|box offsets \(times the variances\)) differ from MXNet's",
        output,
    )
    assert "litert.contract.json's nms_threshold is 0.95, the deploy model's 0.45" in output
    assert re.search(r"MXNet's MultiBoxDetection keeps \d+ detections and litert_infer.py's post-processing", output)
    assert differences.read_text().startswith("# ")
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
    assert "computes: the INT8 model's mAP" in required.stderr + required.stdout
