"""model.onnx detects what MultiBoxDetection detects, NMS across classes and per class; the stage proves it."""

import json
import re
import shutil
import subprocess
import sys

import cv2
import mxnet as mx
import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
import pytest
from conftest import REPO, SAMPLE
from test_evaluate import make_tiny_deploy, make_val_rec

from workflow import export_onnx
from workflow.device import infer, litert_infer, onnx_infer
from workflow.lib import onnx_graph
from workflow.lib.cli import UserError
from workflow.lib.detector import Detector, preprocess
from workflow.lib.networks import VARIANCES, build_deploy_symbol

SIDE = 64
CLASSES = ["a", "b", "c"]


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def image_input(rgb, size):
    """What model.onnx takes: the RGB image resized as MXNet's deploy model resizes it, float32, NCHW."""
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32).transpose(2, 0, 1)[None]


def multibox_detection(cls_preds, loc_preds, anchors, info):
    """MXNet's MultiBoxDetection on the same inputs: its kept rows, best score first."""
    rows = mx.nd.contrib.MultiBoxDetection(
        mx.nd.SoftmaxActivation(mx.nd.array(cls_preds), mode="channel"),
        mx.nd.array(loc_preds),
        mx.nd.array(anchors[None]),
        force_suppress=info["force_nms"],
        nms_threshold=info["nms_threshold"],
        nms_topk=info["nms_topk"],
        threshold=info["threshold"],
        variances=VARIANCES,
        clip=True,
    ).asnumpy()[0]
    return rows[rows[:, 0] >= 0]


@pytest.mark.parametrize("force_nms, nms_topk", [(True, 400), (False, 400), (True, 60), (False, 60)])
def test_the_onnx_detection_equals_multibox_detection_on_the_same_predictions(tmp_path, force_nms, nms_topk):
    feature = mx.nd.zeros((1, 1, 10, 10))
    anchors = mx.nd.contrib.MultiBoxPrior(feature, sizes=(0.2, 0.35), ratios=(1, 2, 0.5)).asnumpy()[0]  # 400
    info = {"classes": CLASSES, "force_nms": force_nms, "nms_threshold": 0.45, "nms_topk": nms_topk, "threshold": 0.3}
    model = onnx_graph.detection_model(anchors, info)
    onnx.save(model, str(tmp_path / "detection.onnx"))
    runtime = session(tmp_path / "detection.onnx")
    rng = np.random.RandomState(0)
    for _ in range(5):
        cls_preds = rng.normal(0, 2, (1, len(CLASSES) + 1, len(anchors))).astype(np.float32)
        loc_preds = rng.normal(0, 1, (1, len(anchors) * 4)).astype(np.float32)
        expected = multibox_detection(cls_preds, loc_preds, anchors, info)
        found = runtime.run(None, {"cls_preds": cls_preds, "loc_preds": loc_preds})[0]
        assert 20 < len(expected) <= nms_topk  # overlapping boxes of several classes, some under the threshold
        np.testing.assert_allclose(found, expected, atol=1e-5)


@pytest.mark.parametrize("force_nms, nms_topk", [(True, 400), (False, 400), (False, 60)])
def test_the_runners_post_processing_equals_multibox_detection(force_nms, nms_topk):
    """infer.multibox_detection (numpy, beside the IR and, through litert_infer.py, the .tflite models) on what the
    network gives out."""
    anchors = mx.nd.contrib.MultiBoxPrior(mx.nd.zeros((1, 1, 10, 10)), sizes=(0.2, 0.35), ratios=(1, 2, 0.5))
    anchors = anchors.asnumpy()[0]
    info = {"classes": CLASSES, "force_nms": force_nms, "nms_threshold": 0.45, "nms_topk": nms_topk, "threshold": 0.3}
    contract = {**info, "model_score_threshold": 0.3, "anchors": anchors.tolist(), "variances": list(VARIANCES)}
    rng = np.random.RandomState(2)
    for _ in range(5):
        cls_preds = rng.normal(0, 2, (1, len(CLASSES) + 1, len(anchors))).astype(np.float32)
        loc_preds = rng.normal(0, 1, (1, len(anchors) * 4)).astype(np.float32)
        expected = multibox_detection(cls_preds, loc_preds, anchors, info)
        class_prob = mx.nd.softmax(mx.nd.array(cls_preds), axis=1).asnumpy()[0].T
        found = infer.multibox_detection(class_prob, loc_preds.reshape(-1, 4), anchors, VARIANCES, contract)
        assert 20 < len(expected) <= nms_topk
        np.testing.assert_allclose(found, expected, atol=1e-5)


def test_the_whole_model_takes_the_resized_image_and_detects_what_the_deploy_model_detects(tmp_path):
    info = {"data_shape": SIDE, "classes": CLASSES, "force_nms": True, "nms_threshold": 0.45, "nms_topk": 400}
    symbol = build_deploy_symbol("tiny", len(CLASSES), SIDE, threshold=0.01, **{k: info[k] for k in list(info)[2:]})
    info["threshold"] = 0.01
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=(1, 3, SIDE, SIDE))
    rng = np.random.RandomState(1)
    args = {n: mx.nd.array(rng.normal(0, 0.1, s)) for n, s in zip(symbol.list_arguments(), arg_shapes) if n != "data"}
    aux = {
        n: mx.nd.ones(s) if n.endswith("var") else mx.nd.zeros(s)
        for n, s in zip(symbol.list_auxiliary_states(), aux_shapes)
    }
    model = onnx_graph.build(symbol, args, aux, info)
    assert [(i.name, [d.dim_value for d in i.type.tensor_type.shape.dim]) for i in model.graph.input] == [
        ("image", [1, 3, SIDE, SIDE])
    ]
    assert [o.name for o in model.graph.output] == ["detections"] and model.opset_import[0].version == 13
    onnx.save(model, str(tmp_path / "model.onnx"))
    runtime = session(tmp_path / "model.onnx")
    body = mx.sym.Group(list(onnx_graph.deploy_parts(symbol)[:2]))
    network = Detector.from_graph(info, body, args, aux)  # MXNet's class predictions and offsets of the image
    rgb = rng.randint(0, 256, (90, 120, 3)).astype(np.uint8)
    network.module.forward(mx.io.DataBatch([mx.nd.array(preprocess(rgb, SIDE)[None])]), is_train=False)
    cls_preds, loc_preds = (output.asnumpy() for output in network.module.get_outputs())
    anchors = onnx_graph.anchor_boxes(onnx_graph.deploy_parts(symbol)[2], SIDE)
    expected = multibox_detection(cls_preds, loc_preds, anchors, info)
    found = runtime.run(None, {"image": image_input(rgb, SIDE)})[0]
    assert len(expected) > 20
    np.testing.assert_allclose(found[:, 1:], expected[:, 1:], atol=1e-4)  # the network's float sums differ a little
    # network.onnx: the same network without MultiBoxDetection, for LiteRT; its runner's post-processing gives the same
    network_model, network_anchors = onnx_graph.build_network(symbol, args, aux, info)
    assert not [node for node in network_model.graph.node if node.op_type == "Flatten"]  # Reshapes, for onnx2tf
    onnx.save(network_model, str(tmp_path / "network.onnx"))
    heads = len(network_model.graph.output) // 2
    names = [name for names in onnx_graph.network_outputs(heads) for name in names]
    assert [output.name for output in network_model.graph.output] == names and heads > 1  # a head's own outputs
    outputs = session(tmp_path / "network.onnx").run(names, {"image": image_input(rgb, SIDE)})
    class_prob, offsets = (np.concatenate(part, axis=1) for part in (outputs[:heads], outputs[heads:]))
    assert class_prob.shape == (1, len(anchors), len(CLASSES) + 1) and offsets.shape == (1, len(anchors), 4)
    contract = {**info, "model_score_threshold": 0.01, "anchors": network_anchors, "variances": VARIANCES}
    np.testing.assert_allclose(litert_infer.detections(class_prob[0], offsets[0], contract, 0.0), found, atol=1e-4)


@pytest.fixture
def deploy_and_val(voc, tmp_path):
    rec, _ = make_val_rec(voc(4), tmp_path / "val")
    return make_tiny_deploy(tmp_path / "deploy"), rec


def run(deploy, rec, out, differences):
    export_onnx.main(
        ["--deploy", str(deploy), "--val-rec", str(rec), "--min-score", "0.05", "--iou-threshold", "0.5"]
        + ["--out-dir", str(out), "--differences", str(differences)]
    )


def test_the_stage_writes_the_model_its_contract_and_its_proof(deploy_and_val, tmp_path):
    deploy, rec = deploy_and_val
    run(deploy, rec, tmp_path / "onnx", tmp_path / "differences.txt")
    onnx.checker.check_model(str(tmp_path / "onnx" / "model.onnx"), full_check=True)
    contract = json.loads((tmp_path / "onnx" / "model.onnx.contract.json").read_text())
    assert contract["input_shape"] == [1, 3, 64, 64] and contract["color_order"] == "RGB" and contract["mean_in_model"]
    assert contract["opset"] == 13 and contract["nms_in_model"] and contract["labels"] == ["swoosh", "stripes"]
    check = json.loads((tmp_path / "onnx" / "verify.json").read_text())
    network, postprocessing = check["proof"]["network"], check["proof"]["postprocessing"]
    assert network["images"] == 4 and network["problems"] == [] and network["max_class_prob_difference"] < 1e-5
    assert postprocessing["cases"] == 4 and postprocessing["mxnet_detections"] > 50 and postprocessing["problems"] == []
    assert check["proof"]["settings"] == [] and check["map_difference"] == 0.0
    assert check["images"] == 4 and check["latency"]["onnxruntime_ms"] > 0  # pairing, mAP and latency: reported
    assert (tmp_path / "differences.txt").read_text().startswith("# ")


def test_a_model_that_detects_otherwise_fails_the_stage_and_keeps_the_differences(deploy_and_val, tmp_path):
    deploy, rec = deploy_and_val
    info = json.loads(deploy.read_text())
    info["nms_threshold"] = 0.95  # the ONNX graph takes it from deploy.json: it now keeps boxes MXNet suppresses
    deploy.write_text(json.dumps(info))
    with pytest.raises(UserError) as failure:
        run(deploy, rec, tmp_path / "onnx", tmp_path / "differences.txt")
    message = str(failure.value)
    assert message.startswith("model.onnx does not compute what the MXNet model computes: ")
    assert "model.onnx's contract's nms_threshold is 0.95, the deploy model's 0.45" in message
    assert "MXNet's MultiBoxDetection keeps" in message and "model.onnx's post-processing" in message
    assert (tmp_path / "differences.txt").read_text().startswith("# ")
    assert not (tmp_path / "onnx" / "verify.json").exists()


def test_the_onnx_runner_detects_on_images_and_on_a_video_as_the_stage_proved(deploy_and_val, tmp_path):
    """onnx_infer.py beside model.onnx, its contract, labels.txt and infer.py, as in the artifact folder."""
    deploy, rec = deploy_and_val
    run(deploy, rec, tmp_path / "onnx", tmp_path / "differences.txt")
    folder = tmp_path / "artifacts"
    folder.mkdir()
    for source in ("model.onnx", "model.onnx.contract.json"):
        shutil.copy(tmp_path / "onnx" / source, folder / source)
    for name in ("onnx_infer.py", "infer.py"):
        shutil.copy(REPO / "workflow" / "device" / name, folder / name)
    (folder / "labels.txt").write_text("swoosh\nstripes\n")
    image = sorted((SAMPLE / "JPEGImages").iterdir())[0]
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (160, 120))
    for _ in range(3):
        writer.write(cv2.resize(cv2.imread(str(image)), (160, 120)))
    writer.release()
    command = [sys.executable, "onnx_infer.py", "--threshold", "0.05"]
    on_image = subprocess.run([*command, str(image), "--out-dir", "drawn"], cwd=folder, capture_output=True, text=True)
    on_video = subprocess.run([*command, "--video", str(video)], cwd=folder, capture_output=True, text=True)
    assert on_image.returncode == 0 and on_video.returncode == 0, on_image.stderr + on_video.stderr
    line = json.loads(on_image.stdout)
    size = json.loads((folder / "model.onnx.contract.json").read_text())["input_shape"][2]
    rgb = cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB)
    expected = session(folder / "model.onnx").run(None, {"image": image_input(rgb, size)})[0]
    assert [d["score"] for d in line["detections"]] == [round(float(s), 4) for s in expected[expected[:, 1] >= 0.05, 1]]
    assert (folder / "drawn" / image.name).exists()
    assert [json.loads(frame)["image"] for frame in on_video.stdout.splitlines()] == [
        f"frame_{k:06d}.jpg" for k in (1, 2, 3)
    ]


def proof_of(deploy, rec, folder):
    """export_onnx's proof of the model.onnx (and contract) in folder, as the stage checks it: its problems."""
    result = export_onnx.prove(Detector(deploy), folder / "model.onnx", rec, 0.05, 0.5)
    return export_onnx.problems(result)


def edit_initializer(folder, name, change):
    model = onnx.load(str(folder / "model.onnx"))
    (tensor,) = [t for t in model.graph.initializer if t.name == name]
    tensor.CopyFrom(numpy_helper.from_array(change(numpy_helper.to_array(tensor)).astype(np.float32), name))
    onnx.save(model, str(folder / "model.onnx"))


def scale_a_convolution(folder):
    model = onnx.load(str(folder / "model.onnx"))
    weight = next(node.input[1] for node in model.graph.node if node.op_type == "Conv")
    onnx.save(model, str(folder / "model.onnx"))
    edit_initializer(folder, weight, lambda kernel: kernel * 1.02)


def edit_contract(folder, **changes):
    path = folder / "model.onnx.contract.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def rebuild_without_force_nms(folder, deploy):
    info = json.loads(deploy.read_text())
    symbol = mx.sym.load(str(deploy.parent / info["symbol"]))
    args, aux = mx.model.load_params(str(deploy.parent / info["symbol"][: -len("-symbol.json")]), info["epoch"])
    onnx.save(onnx_graph.build(symbol, args, aux, {**info, "force_nms": False}), str(folder / "model.onnx"))


def anchors_of_another_size(folder, deploy):
    info = json.loads(deploy.read_text())
    anchors = onnx_graph.anchor_boxes(onnx_graph.deploy_parts(mx.sym.load(str(deploy.parent / info["symbol"])))[2], 96)
    size, center = anchors[:, 2:] - anchors[:, :2], (anchors[:, :2] + anchors[:, 2:]) / 2
    for name, value in (("anchor_center", center), ("half_anchor", size / 2), ("xy_factor", size * 0.1)):
        edit_initializer(folder, name, lambda _, value=value: value[None])


NETWORK = r"model.onnx's (class probabilities|box offsets \(times the variances\)) differ from MXNet's by up to"
POST_PROCESSING = r"MXNet's MultiBoxDetection keeps \d+ detections and model.onnx's post-processing \d+"
ONNX_DEFECTS = {
    "a wrong mean": (lambda f, d: edit_initializer(f, "mean_rgb", lambda mean: mean[:, ::-1]), NETWORK),
    "the mean subtracted twice": (lambda f, d: edit_initializer(f, "mean_rgb", lambda mean: 2 * mean), NETWORK),
    "one convolution's weights scaled by 1.02": (lambda f, d: scale_a_convolution(f), NETWORK),
    "a wrong variance": (lambda f, d: edit_initializer(f, "wh_variance", lambda v: v * 1.5), POST_PROCESSING),
    "anchors of another data_shape": (
        anchors_of_another_size,
        r"onnxruntime cannot run model.onnx: .*Node \(half_size\) Op \(Mul\) \[ShapeInferenceError\] Incompatible",
    ),
    "nms_threshold changed": (lambda f, d: edit_initializer(f, "iou_threshold", lambda t: t + 0.05), POST_PROCESSING),
    "force_nms flipped": (rebuild_without_force_nms, POST_PROCESSING),
    "classes swapped": (
        lambda f, d: edit_contract(f, labels=["stripes", "swoosh"]),
        r"model.onnx's contract's labels is \['stripes', 'swoosh'\], the deploy model's \['swoosh', 'stripes'\]",
    ),
}


@pytest.mark.parametrize("defect", ONNX_DEFECTS)
def test_a_defective_model_onnx_fails_the_proof_naming_what_differs(deploy_and_val, tmp_path, defect):
    deploy, rec = deploy_and_val
    run(deploy, rec, tmp_path / "onnx", tmp_path / "differences.txt")
    assert proof_of(deploy, rec, tmp_path / "onnx") == []
    make, message = ONNX_DEFECTS[defect]
    make(tmp_path / "onnx", deploy)
    try:
        problems = proof_of(deploy, rec, tmp_path / "onnx")
    except UserError as error:
        problems = [str(error)]
    assert any(re.search(message, problem) for problem in problems), problems


def test_a_runner_that_feeds_bgr_fails_the_proof(deploy_and_val, tmp_path, monkeypatch):
    """The colours swapped: onnx_infer.py giving the model the BGR frame it got."""
    deploy, rec = deploy_and_val
    run(deploy, rec, tmp_path / "onnx", tmp_path / "differences.txt")
    monkeypatch.setattr(
        onnx_infer,
        "preprocess",
        lambda image_bgr, contract: cv2.resize(image_bgr, (SIDE, SIDE)).astype(np.float32).transpose(2, 0, 1)[None],
    )
    assert any(re.search(NETWORK, problem) for problem in proof_of(deploy, rec, tmp_path / "onnx"))
