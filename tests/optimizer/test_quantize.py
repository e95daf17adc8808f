"""Quantize stage: NNCF's INT8 IR of the tiny SSD, validated by our val mAP, post-processing kept in float.

Needs the optimizer environment (Model Optimizer and NNCF):
    .venv/bin/python -m workflow.orchestrator.envs exec optimizer -- python -m pytest tests/optimizer/test_quantize.py
The ground truth of the synthetic images is the FP32 IR's own confident detections, so the FP32 IR scores a high
mAP and INT8 rounding can only lose some of it.
"""

import json

import mxnet as mx
import nncf
import numpy as np
import openvino as ov
import pytest
from conftest import NUM_CLASSES, SIDE, seeded_weights, synthetic_images, write_rec

from workflow import quantize
from workflow.device import infer
from workflow.lib import networks
from workflow.lib.cli import UserError

DETECTION_THRESHOLD = 0.01


@pytest.fixture(scope="module")
def deploy_json(tmp_path_factory):
    """A tiny deploy checkpoint with force_nms and its deploy.json, as the deploy stage writes them."""
    folder = tmp_path_factory.mktemp("deploy")
    symbol = networks.build_deploy_symbol("tiny", NUM_CLASSES, SIDE, force_nms=True, nms_threshold=0.45)
    mx.model.save_checkpoint(str(folder / "deploy"), 3, symbol, *seeded_weights(symbol))
    info = {
        "symbol": "deploy-symbol.json",
        "params": "deploy-0003.params",
        "data_shape": SIDE,
        "classes": ["a", "b", "c"],
        "threshold": DETECTION_THRESHOLD,
        "input": {"mean_rgb": list(networks.MEAN_RGB)},
    }
    (folder / "deploy.json").write_text(json.dumps(info))
    return folder / "deploy.json"


@pytest.fixture(scope="module")
def fp32(deploy_json, tmp_path_factory):
    """(FP32 IR model, contract, xml path) converted as the quantize stage converts it."""
    work = tmp_path_factory.mktemp("fp32")
    args = quantize.parse_args(
        ["--deploy", str(deploy_json), "--train-rec", "-", "--val-rec", "-", "--max-map-drop", "0.01"]
        + ["--iou-threshold", "0.5", "--color", "BGR", "--mean-in-ir", "--out-dir", str(work)]
        + ["--model-name", "m", "--summary", str(work / "s.json"), "--log", str(work / "mo.log")]
    )
    xml, contract = quantize.fp32_ir(args, work)
    return ov.Core().read_model(xml), contract, xml


@pytest.fixture(scope="module")
def records(fp32):
    """(BGR image, ground truth) pairs: 8 synthetic images labelled with the FP32 IR's detections over 0.5."""
    model, contract, _ = fp32
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    items = []
    for image in synthetic_images(count=8, seed=3):
        rows = np.array(infer.detect(compiled, image, contract, 0.5), dtype=np.float32).reshape(-1, 6)
        items.append((image, np.column_stack([rows[:, :1], rows[:, 2:], np.zeros(len(rows))])))
    assert sum(len(truth) for _, truth in items) >= 8
    return items


def test_the_anchors_and_what_only_feeds_the_outputs_stay_float(fp32):
    model, _, _ = fp32
    scope = set(quantize.postprocessing_scope(model))
    ops = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    kinds = {ops[name].get_type_name() for name in scope}
    assert {"PriorBox", "ShapeOf", "Softmax"} <= kinds and "Result" not in kinds
    assert all(ops[name].get_type_name() not in ("Convolution", "Add", "Relu") for name in scope)
    assert sum(op.get_type_name() == "PriorBox" for op in ops.values()) == len(
        [name for name in scope if ops[name].get_type_name() == "PriorBox"]
    )
    results = {result.get_friendly_name() for result in model.get_results()}
    for name in scope:
        consumers = {t.get_node().get_friendly_name() for out in ops[name].outputs() for t in out.get_target_inputs()}
        assert consumers <= scope | results, name


def test_every_model_compiled_while_quantizing_runs_at_the_explicit_precision(fp32):
    """NNCF compiles with the CPU plugin's default (bf16 on CPUs with AVX512_BF16 or AMX): not inside."""
    model, _, _ = fp32
    with quantize.compiled_at("f32"):
        assert infer.precision_ran(ov.compile_model(model, "CPU")) == "f32"
        assert infer.precision_ran(ov.Core().compile_model(model, "CPU", {})) == "f32"
    assert ov.Core.compile_model.__name__ == "compile_model"  # restored


def test_an_int8_ir_within_the_drop_with_its_contract(deploy_json, fp32, records, tmp_path, monkeypatch):
    _, contract, xml = fp32
    monkeypatch.setattr(quantize, "fp32_ir", lambda args, work: (xml, contract))  # converted once, by the fixture
    train, val = write_rec(tmp_path / "train.rec", records), write_rec(tmp_path / "val.rec", records[:4])
    out = tmp_path / "int8"
    quantize.main(
        ["--deploy", str(deploy_json), "--train-rec", str(train), "--val-rec", str(val), "--max-map-drop", "0.2"]
        + ["--iou-threshold", "0.5", "--color", "BGR", "--mean-in-ir", "--out-dir", str(out), "--model-name", "q"]
        + ["--summary", str(out / "quantize.json"), "--log", str(tmp_path / "mo.log")]
    )
    summary = json.loads((out / "quantize.json").read_text())
    assert summary["calibration_images"] == 8 and summary["val_images"] == 4
    assert summary["fp32_ir_map_voc07"] > 0.9 and summary["map_drop"] <= 0.2
    assert summary["int8_convolutions"] >= 1 and summary["inference_precision"] == "f32"
    text = (out / "q.xml").read_text()
    assert 'type="FakeQuantize"' in text and 'type="PriorBox"' in text
    contract = json.loads((out / "q.contract.json").read_text())
    assert contract["precision"] == "INT8" and contract["model"] == "q.xml" and contract["nms_threshold"] == 0.45
    assert "NNCF 2.13.0" in contract["quantization"]
    compiled, contract = infer.load(out / "q.xml")
    assert infer.precision_ran(compiled) == "f32" and infer.detect(compiled, records[0][0], contract, 0.0)


def test_layers_go_back_to_float_until_the_drop_is_within_budget(fp32, deploy_json, records):
    model, contract, _ = fp32
    deploy = json.loads(deploy_json.read_text())
    _, all_int8 = quantize.quantize_model(nncf, model, contract, deploy, records, records, 0.5, 0.5)
    assert all_int8["map_drop"] > 0.03 and all_int8["int8_convolutions"] == all_int8["convolutions"]
    _, restored = quantize.quantize_model(nncf, model, contract, deploy, records, records, 0.03, 0.5)
    assert restored["map_drop"] <= 0.03 and 0 < restored["int8_convolutions"] < restored["convolutions"]


def test_a_drop_even_the_restored_model_misses_fails_saying_what_it_reached(fp32, deploy_json, records):
    model, contract, _ = fp32
    deploy = json.loads(deploy_json.read_text())
    # a negative budget no model can meet: NNCF restores layers to float and still misses it
    _, summary = quantize.quantize_model(nncf, model, contract, deploy, records, records, -0.5, 0.5)
    assert summary["int8_convolutions"] < summary["convolutions"]
    with pytest.raises(UserError, match=r"misses int8_max_map_drop -0.5: INT8 val mAP \d\.\d{4} against the FP32"):
        quantize.check_drop(summary, -0.5)
