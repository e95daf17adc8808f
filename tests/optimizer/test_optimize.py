"""Optimize stage and IR inference: the IR must give the MXNet deploy model's detections.

Needs the OpenVINO environment (Model Optimizer with the MXNet front end):
    .venv/bin/python -m workflow.orchestrator.envs exec optimizer -- python -m pytest tests/optimizer
A seeded, untrained "tiny" SSD at 64 px stands in for a trained one; its scores spread from about
0.2 to 0.7 over 3 classes, so overlapping boxes of different classes abound.
"""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import openvino as ov
import pytest

from workflow import optimize
from workflow.lib import model_optimizer

from workflow.device import infer

from workflow.lib import networks
from workflow.lib.cli import UserError
from conftest import NMS_THRESHOLD, NUM_CLASSES, SIDE, seeded_weights, synthetic_images

CONVERSION = ["--precision", "FP16", "--color", "BGR", "--mean-in-ir"]  # the device's


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny deploy checkpoint with force_nms: (symbol path, params path)."""
    prefix = tmp_path_factory.mktemp("mxnet") / "deploy"
    symbol = networks.build_deploy_symbol("tiny", NUM_CLASSES, SIDE, force_nms=True, nms_threshold=NMS_THRESHOLD)
    mx.model.save_checkpoint(str(prefix), 3, symbol, *seeded_weights(symbol))
    return Path(f"{prefix}-symbol.json"), Path(f"{prefix}-0003.params")


def optimize_arguments(symbol, params, conversion, out_dir, name, log):
    """optimize's command line for a checkpoint at SIDE with the conversion options `conversion`."""
    arguments = ["--symbol", str(symbol), "--params", str(params), "--data-shape", str(SIDE), *conversion]
    return arguments + ["--out-dir", str(out_dir), "--model-name", name, "--log", str(log)]


@pytest.fixture(scope="module")
def convert(checkpoint, tmp_path_factory):
    """convert(precision, color, mean_in_ir) -> xml path; each variant is converted once."""
    done = {}

    def convert(precision="FP32", color="RGB", mean_in_ir="outside"):
        key = (precision, color, mean_in_ir)
        if key not in done:
            out = tmp_path_factory.mktemp("ir")
            name = "-".join(key)
            mean = "--mean-in-ir" if mean_in_ir == "inside" else "--no-mean-in-ir"
            conversion = ["--precision", precision, "--color", color, mean]
            optimize.main(optimize_arguments(checkpoint[0], checkpoint[1], conversion, out, name, out / f"{name}.log"))
            done[key] = out / f"{name}.xml"
        return done[key]

    return convert


@pytest.fixture(scope="module")
def mxnet_model(checkpoint):
    symbol = mx.sym.load(str(checkpoint[0]))
    params = mx.nd.load(str(checkpoint[1]))
    module = mx.mod.Module(symbol, data_names=["data"], label_names=None)
    module.bind(data_shapes=[("data", (1, 3, SIDE, SIDE))], for_training=False)
    module.set_params(
        {k[4:]: v for k, v in params.items() if k.startswith("arg:")},
        {k[4:]: v for k, v in params.items() if k.startswith("aux:")},
    )
    return module


def mxnet_detect(module, image_bgr):
    """The deploy model's rows [cls, score, xmin, ymin, xmax, ymax], with the training input contract."""
    rgb = cv2.resize(image_bgr, (SIDE, SIDE))[:, :, ::-1].astype(np.float32)
    tensor = (rgb - np.array(networks.MEAN_RGB, dtype=np.float32)).transpose(2, 0, 1)[np.newaxis]
    module.forward(mx.io.DataBatch([mx.nd.array(tensor)]), is_train=False)
    rows = module.get_outputs()[0].asnumpy()[0]
    return rows[rows[:, 0] >= 0]


def box_iou(a, b):
    return float(infer.iou(np.array([a[2:]]), np.array([b[2:]]))[0, 0])


def unmatched(expected, actual, score_tol):
    """Rows of expected without a row of actual of the same class, box IoU >= 0.9 and score within score_tol."""
    free = [list(row) for row in actual]
    missing = []
    for row in expected:
        match = next(
            (
                other
                for other in free
                if int(other[0]) == int(row[0]) and box_iou(row, other) >= 0.9 and abs(other[1] - row[1]) <= score_tol
            ),
            None,
        )
        if match is None:
            missing.append(row)
        else:
            free.remove(match)
    return missing


def assert_same_detections(expected, actual, score_tol):
    assert len(expected) == len(actual)
    assert unmatched(expected, actual, score_tol) == []


def test_ir_files_and_contract(convert):
    xml = convert("FP16", "BGR", "inside")
    assert xml.with_suffix(".bin").stat().st_size > 0
    text = xml.read_text()
    assert 'type="PriorBox"' in text and 'type="DetectionOutput"' not in text  # the network alone
    assert 'element_type="f16"' in text
    contract = json.loads(xml.with_suffix(".contract.json").read_text())
    assert contract["input_shape"] == [1, 3, SIDE, SIDE] and contract["layout"] == "NCHW"
    assert contract["color_order"] == "BGR" and contract["mean_in_ir"] is True
    assert contract["mean_values"] == [104, 117, 123]
    assert contract["force_nms"] is True and contract["nms_threshold"] == pytest.approx(NMS_THRESHOLD)
    assert contract["nms_topk"] == 400 and contract["model_score_threshold"] == pytest.approx(0.01)
    assert set(contract["outputs"]) == {"class_prob", "box_offsets", "anchors"}
    assert contract["inference_precision"] == "f32"
    assert "[ SUCCESS ]" in xml.with_suffix(".log").read_text()
    compiled, contract = infer.load(xml)
    class_prob, offsets, anchors, variances = infer.network_outputs(
        compiled, infer.preprocess(synthetic_images()[0], contract), contract
    )
    assert class_prob.shape == (len(anchors), NUM_CLASSES + 1) and offsets.shape == anchors.shape == variances.shape
    np.testing.assert_allclose(class_prob.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(variances, np.broadcast_to(networks.VARIANCES, variances.shape))


def cpu_computes(precision):
    return precision.upper() in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_ir_computes_in_f32_on_every_cpu_unless_told_otherwise(convert):
    """The CPU plugin's own default is bf16 on CPUs with AVX512_BF16 or AMX: load never leaves it to the CPU."""
    for precision in ("FP32", "FP16"):
        compiled, _ = infer.load(convert(precision, "BGR", "inside"))
        assert infer.precision_ran(compiled) == "f32"


@pytest.mark.skipif(not cpu_computes("bf16"), reason="this CPU has no bf16 (AVX512_BF16 or AMX)")
def test_bf16_on_a_cpu_that_has_it_is_close_but_not_exact(convert, mxnet_model):
    compiled, contract = infer.load(convert("FP32", "RGB", "outside"), precision="bf16")
    assert infer.precision_ran(compiled) == "bf16"
    score_differences = []
    for image in synthetic_images():
        expected = mxnet_detect(mxnet_model, image)
        actual = np.array(infer.detect(compiled, image, contract, 0.0))
        assert len(unmatched(expected, actual, score_tol=0.02)) <= 0.1 * len(expected)
        top = min(len(expected), len(actual), 20)
        score_differences.append(np.abs(np.sort(expected[:, 1])[-top:] - np.sort(actual[:, 1])[-top:]).max())
    assert max(score_differences) > 1e-4  # bf16 has 8 mantissa bits: the f32 test's tolerance would fail here


def test_an_unknown_precision_is_refused(convert):
    with pytest.raises(ValueError, match="'f8' is not one of f32, bf16, f16"):
        infer.load(convert("FP32", "RGB", "outside"), precision="f8")


def test_fp32_ir_gives_mxnet_detections(convert, mxnet_model):
    compiled, contract = infer.load(convert("FP32", "RGB", "outside"))
    for image in synthetic_images():
        expected = mxnet_detect(mxnet_model, image)
        assert len(expected) > 50
        assert_same_detections(expected, infer.detect(compiled, image, contract, 0.0), score_tol=1e-4)


def test_the_fp16_ir_computes_what_the_fp32_ir_with_its_weights_rounded_to_fp16_computes(convert):
    """Exactly what FP16 weights compute: the FP16 IR is the FP32 one with every weight rounded (verify_ir's proof)."""
    fp16, contract = infer.load(convert("FP16", "BGR", "inside"))
    fp32_xml = convert("FP32", "BGR", "inside")
    rounded = ov.Core().compile_model(
        model_optimizer.fp16_rounded(fp32_xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    fp32, _ = infer.load(fp32_xml)
    for image in synthetic_images():
        tensor = infer.preprocess(image, contract)
        fp16_prob = infer.network_outputs(fp16, tensor, contract)[0]
        assert np.abs(fp16_prob - infer.network_outputs(rounded, tensor, contract)[0]).max() <= 1e-6
        assert np.abs(fp16_prob - infer.network_outputs(fp32, tensor, contract)[0]).max() > 1e-5  # FP16 rounding


def test_bgr_input_and_mean_inside_ir_change_nothing(convert):
    """The device variant (BGR frames, mean subtracted by the IR) detects as the RGB / caller-mean one."""
    rgb_outside = infer.load(convert("FP32", "RGB", "outside"))
    bgr_inside = infer.load(convert("FP32", "BGR", "inside"))
    assert not np.allclose(
        infer.preprocess(synthetic_images()[0], rgb_outside[1]), infer.preprocess(synthetic_images()[0], bgr_inside[1])
    )
    for image in synthetic_images():
        expected = infer.detect(rgb_outside[0], image, rgb_outside[1], 0.0)
        assert_same_detections(expected, infer.detect(bgr_inside[0], image, bgr_inside[1], 0.0), score_tol=1e-4)


def test_per_class_nms_in_ir_then_cross_class_nms_is_not_mxnet(checkpoint, convert, mxnet_model, tmp_path):
    """Why the IR leaves MultiBoxDetection out: Model Optimizer's DetectionOutput suppresses per class
    (force_suppress is dropped); a cross-class NMS after that misses boxes whose same-class suppressor was itself
    suppressed by another class."""
    out = tmp_path / "default"
    mo = Path(sys.executable).parent / "mo"
    subprocess.run(
        [
            str(mo),
            "--input_model",
            str(checkpoint[1]),
            "--input_symbol",
            str(checkpoint[0]),
            "--input_shape",
            f"[1,3,{SIDE},{SIDE}]",
            "--output_dir",
            str(out),
            "--model_name",
            "default",
            "--compress_to_fp16=False",
        ],
        check=True,
        capture_output=True,
    )
    per_class = ov.Core().compile_model(out / "default.xml", "CPU")
    _, contract = infer.load(convert("FP32", "RGB", "outside"))
    for image in synthetic_images():
        expected = mxnet_detect(mxnet_model, image)
        rows = per_class(infer.preprocess(image, contract))[per_class.output(0)][0, 0]  # image_id, label, score, box
        raw = rows[rows[:, 0] >= 0, 1:]
        assert len(raw) > len(expected)
        after = infer.nms(raw, NMS_THRESHOLD, across_classes=True)
        assert unmatched(expected, after, score_tol=1e-4), "per-class then cross-class NMS lost no MXNet box"


def test_nms_across_classes_and_per_class():
    rows = np.array(
        [
            [0, 0.9, 0.0, 0.0, 0.5, 0.5],
            [1, 0.8, 0.0, 0.0, 0.5, 0.5],  # same box, other class
            [0, 0.7, 0.05, 0.0, 0.55, 0.5],  # IoU 0.82 with the first
            [1, 0.6, 0.6, 0.6, 1.0, 1.0],
        ]
    )
    assert infer.nms(rows, 0.45, across_classes=True)[:, 1].tolist() == [0.9, 0.6]
    assert infer.nms(rows, 0.45, across_classes=False)[:, 1].tolist() == [0.9, 0.8, 0.6]
    # MXNet suppresses at IoU >= threshold, and a suppressed box suppresses nothing
    chain = np.array([[0, 0.9, 0.0, 0.0, 0.4, 1.0], [0, 0.8, 0.2, 0.0, 0.6, 1.0], [0, 0.7, 0.4, 0.0, 0.8, 1.0]])
    assert infer.nms(chain, 1 / 3, across_classes=False)[:, 1].tolist() == [0.9, 0.7]


def test_broken_symbol_names_the_log(checkpoint, tmp_path):
    graph = json.loads(checkpoint[0].read_text())
    for node in graph["nodes"]:
        if node["op"] == "Convolution":
            node["op"] = "NoSuchOperation"
            break
    broken = tmp_path / "broken-symbol.json"
    broken.write_text(json.dumps(graph))
    log_path = tmp_path / "logs" / "optimize.log"
    with pytest.raises(UserError, match=str(log_path)):
        optimize.main(optimize_arguments(broken, checkpoint[1], CONVERSION, tmp_path / "ir", "broken", log_path))
    assert "NoSuchOperation" in log_path.read_text()


def test_unreadable_or_wrong_symbol_is_a_user_error(checkpoint, tmp_path):
    truncated = tmp_path / "truncated-symbol.json"
    truncated.write_text(checkpoint[0].read_text()[:500])
    training = tmp_path / "train-symbol.json"
    networks.build_training_symbol("tiny", NUM_CLASSES, SIDE).save(str(training))
    for symbol, message in ((truncated, "cannot read the deploy symbol"), (training, "0 MultiBoxDetection")):
        with pytest.raises(UserError, match=message):
            optimize.main(
                optimize_arguments(symbol, checkpoint[1], CONVERSION, tmp_path / "ir", "x", tmp_path / "x.log")
            )


def test_deploy_json_gives_symbol_params_shape_and_mean(tmp_path):
    info = {
        "symbol": "d-symbol.json",
        "params": "d-0003.params",
        "data_shape": 96,
        "classes": ["nike", "adidas"],
        "input": {"layout": "NCHW", "color": "RGB", "mean_rgb": [120.5, 115, 100], "scale": 1.0},
    }
    (tmp_path / "deploy.json").write_text(json.dumps(info))
    args = model_optimizer.parse_args(
        [
            "--deploy",
            str(tmp_path / "deploy.json"),
            *CONVERSION,
            "--out-dir",
            str(tmp_path),
            "--model-name",
            "m",
            "--log",
            str(tmp_path / "m.log"),
        ]
    )
    assert (args.symbol, args.params, args.data_shape) == (tmp_path / "d-symbol.json", tmp_path / "d-0003.params", 96)
    assert args.classes == ["nike", "adidas"]
    command = model_optimizer.mo_command(args, args.symbol, args.params)
    assert command[command.index("--mean_values") + 1] == "[120.5,115,100]"
    assert model_optimizer.contract(args, {}, {})["mean_values"] == [100, 115, 120.5]  # BGR by default
