"""The INT8 IR for CPU targets (int8_ir), turned on in a copy of the finished tiny run: quantized, proven against
MXNet, timed beside MXNet and the FP32 and FP16 IRs, and shipped beside the FP16 IR."""

import json
import shutil

import pytest

from conftest import in_env, planned, snakemake, write_config

QUANTIZATION_AND_AFTER = {"quantize": 1, "verify_ir": 1, "artifacts": 1, "report": 1}

INT8_PROBE = """
import json, sys, cv2
from workflow.device import infer
compiled, contract = infer.load(sys.argv[1])
rows = infer.detect(compiled, cv2.imread(sys.argv[2]), contract, 0.0)
print(json.dumps({"ran": infer.precision_ran(compiled), "detections": len(rows), "precision": contract["precision"]}))
"""


@pytest.fixture(scope="module")
def int8_run(finished_run, tmp_path_factory):
    """(snakefile, work folder, config, what the dry run planned) of the finished run with int8_ir turned on."""
    snakefile, finished, _ = finished_run
    workdir = tmp_path_factory.mktemp("int8") / "work"
    shutil.copytree(finished, workdir, symlinks=True)
    config = write_config(workdir, int8_ir=True)
    plan = planned(snakefile, workdir)
    snakemake(workdir, "deeplens_artifacts", "--cores", "2", snakefile=snakefile)
    return snakefile, workdir, config, plan


def test_turning_int8_on_runs_only_quantization_and_what_follows(int8_run):
    assert int8_run[3] == QUANTIZATION_AND_AFTER


def test_the_int8_ir_is_proven_timed_beside_the_others_and_shipped(int8_run):
    _, workdir, _, _ = int8_run
    results = workdir / "results" / "tiny"
    check = json.loads((results / "verify_ir" / "verify.json").read_text())
    int8 = check["int8"]
    assert int8["map_drop"] <= int8["max_map_drop"] == 0.01  # config.yaml's int8_max_map_drop
    assert int8["precision"] == "INT8" and int8["inference_precision"]["ran"] == "f32"
    assert 0 <= int8["agreement"] <= 1 and "NNCF 2.13.0" in int8["quantization"]
    rows = check["side_by_side"]
    assert [(row["model"], row["weights"]) for row in rows] == [
        ("MXNet", "FP32"),
        ("IR", "FP32"),
        ("IR", "FP16"),
        ("IR", "INT8"),
        ("ONNX", "FP32"),  # model.onnx under onnxruntime, timed in the same turns
        ("LiteRT", "FP32"),  # the LiteRT models with litert_infer.py's post-processing, too
        ("LiteRT", "INT8"),
    ]
    assert all(row["ms"] > 0 and 0 <= row["map_voc07"] <= 1 for row in rows)
    assert rows[2]["map_voc07"] == check["ir_map_voc07"] and rows[3]["map_voc07"] == int8["ir_map_voc07"]
    litert = json.loads((results / "export_litert" / "verify.json").read_text())
    assert rows[5]["map_voc07"] == litert["float32_map_voc07"] and rows[6]["map_voc07"] == litert["int8_map_voc07"]
    assert check["cpu"]["model_name"] and {"avx512_vnni", "amx_int8", "avx512_bf16"} <= set(check["cpu"]["isa"])
    summary = json.loads((results / "quantize" / "quantize.json").read_text())
    assert summary["calibration_images"] == len((results / "split" / "train.txt").read_text().split())

    artifacts = results / "artifacts"
    manifest = json.loads((artifacts / "manifest.json").read_text())
    assert {"model_int8.xml", "model_int8.bin", "model_int8.contract.json", "model.xml"} <= set(manifest["files"])
    shipped = manifest["ir_int8"]["input_contract"]
    assert shipped["precision"] == "INT8" and shipped["score_threshold"] == manifest["thresholds"]["score_threshold"]
    image = sorted((workdir / "voc" / "JPEGImages").iterdir())[0]
    probe = in_env("optimizer", INT8_PROBE, artifacts / "model_int8.xml", image)
    assert probe == {"ran": "f32", "detections": probe["detections"], "precision": "INT8"} and probe["detections"]

    report = (results / "report" / "report.html").read_text()
    assert "<td>IR INT8</td>" in report and "<td>quantize</td>" in report and "INT8 IR for CPU targets" in report


def test_changing_only_the_int8_budget_reruns_only_the_int8_models_and_what_follows(int8_run, tmp_path):
    snakefile, workdir, _, _ = int8_run
    copy = tmp_path / "work"
    shutil.copytree(workdir, copy, symlinks=True)
    write_config(copy, int8_ir=True, int8_max_map_drop=0.02)
    # the INT8 IR's quantization, and export_litert, whose INT8 model is held to the same budget
    assert planned(snakefile, copy) == {**QUANTIZATION_AND_AFTER, "export_litert": 1}
