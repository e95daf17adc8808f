"""verify_ir's proof holds on every correct IR, ties and thresholds whatever they do, and fails on every real defect,
naming what differs. A seeded, untrained tiny SSD (its classes nearly tie) stands in for a trained one."""

import json
import re
import shutil

import cv2
import numpy as np
import pytest
from conftest import NUM_CLASSES, SIDE, save_deploy, seeded_weights, synthetic_images, tie_anchors, write_rec

from workflow import optimize, verify_ir
from workflow.lib import networks
from workflow.lib.cli import UserError
from workflow.lib.parity import agreement, match

MIN_SCORE = 0.05
PAIRING_SIDE = 192  # the pairing tests' input size


def counts(paired, only_mxnet, only_ir, degenerate):
    return paired, len(only_mxnet), len(only_ir)


def rows(*values):
    return np.array(values, dtype=np.float32).reshape(-1, 6)


def test_match_pairs_same_label_and_overlapping_boxes():
    mxnet = rows([0, 0.9, 0.1, 0.1, 0.5, 0.5], [1, 0.8, 0.6, 0.6, 0.9, 0.9], [1, 0.1, 0, 0, 0.2, 0.2])
    ir = rows([0, 0.9, 0.1, 0.1, 0.5, 0.502], [1, 0.8, 0.6, 0.6, 0.9, 0.9])
    assert counts(*match(mxnet, ir, 0.5, PAIRING_SIDE)) == (2, 0, 0)


def test_match_counts_other_labels_moved_boxes_and_extras():
    mxnet = rows([0, 0.9, 0.1, 0.1, 0.5, 0.5], [1, 0.8, 0.6, 0.6, 0.9, 0.9])
    ir = rows([1, 0.9, 0.1, 0.1, 0.5, 0.5], [1, 0.8, 0.5, 0.5, 0.9, 0.9], [0, 0.7, 0, 0, 0.1, 0.1])
    assert counts(*match(mxnet, ir, 0.5, PAIRING_SIDE)) == (0, 2, 3)


def test_scores_rounded_across_the_threshold_are_not_differences():
    mxnet = rows([0, 0.501, 0.1, 0.1, 0.5, 0.5])
    ir = rows([0, 0.4995, 0.1, 0.1, 0.5, 0.5])
    assert counts(*match(mxnet, ir, 0.5, PAIRING_SIDE)) == (1, 0, 0)


def test_boxes_under_one_input_pixel_are_set_aside_and_counted():
    """Clipped to the image border, a box has no usable IoU; at bf16 its corners move by ~0.007 (issue 12)."""
    mxnet = rows(
        [1, 0.7, 1.0, 0.0, 1.0, 0.85], [0, 0.6, 0.2, 0.2, 0.2 + 0.9 / PAIRING_SIDE, 0.4], [0, 0.9, 0.1, 0.1, 0.5, 0.5]
    )
    ir = rows([1, 0.7, 1.0, 0.0, 1.0, 0.857], [0, 0.9, 0.1, 0.1, 0.5, 0.5])
    paired, only_mxnet, only_ir, degenerate = match(mxnet, ir, 0.5, PAIRING_SIDE)
    assert (paired, len(only_mxnet), len(only_ir), degenerate) == (1, 0, 0, (2, 1))


def test_thin_boxes_pair_by_their_corners():
    """Two pixels wide, a box shifted by 0.6 of a pixel has IoU 0.54, but its corners are within the tolerance."""
    thin = [3, 0.6, 0.3, 0.2, 0.3 + 2 / PAIRING_SIDE, 0.3]
    shifted = [3, 0.6, 0.3 + 0.6 / PAIRING_SIDE, 0.2, 0.3 + 2.6 / PAIRING_SIDE, 0.3]
    far = [3, 0.6, 0.3 + 2 / PAIRING_SIDE, 0.2, 0.3 + 4 / PAIRING_SIDE, 0.3]
    assert counts(*match(rows(thin), rows(shifted), 0.5, PAIRING_SIDE)) == (1, 0, 0)
    paired, only_mxnet, only_ir, _ = match(rows(thin), rows(far), 0.5, PAIRING_SIDE)
    assert paired == 0
    np.testing.assert_array_equal(only_mxnet, rows(thin))
    np.testing.assert_array_equal(only_ir, rows(far))


def test_agreement_with_nothing_to_compare_is_one():
    assert agreement(0, 0, 0) == 1.0
    assert agreement(3, 1, 0) == 0.75


@pytest.fixture(scope="module")
def weights():
    return seeded_weights(networks.build_deploy_symbol("tiny", NUM_CLASSES, SIDE))


@pytest.fixture(scope="module")
def val_rec(tmp_path_factory):
    """Five synthetic images with a box each as the val records (the mAP is low and beside the point)."""
    truth = np.array([[0, 0.1, 0.1, 0.6, 0.6, 0]], dtype=np.float32)
    return write_rec(tmp_path_factory.mktemp("val") / "val.rec", [(image, truth) for image in synthetic_images(5)])


@pytest.fixture(scope="module")
def deploy_json(weights, tmp_path_factory):
    return save_deploy(tmp_path_factory.mktemp("deploy"), *weights)


def convert(deploy_json, folder, *options):
    """The FP16 IR the optimize stage makes (BGR, mean inside), in folder: its .xml. options replace --deploy's
    symbol, params, data shape or mean (--symbol ... --mean-rgb ...) to make a defective one."""
    source = ["--deploy", str(deploy_json)] if not options else list(options)
    optimize.main(
        [*source, "--precision", "FP16", "--color", "BGR", "--mean-in-ir", "--out-dir", str(folder)]
        + ["--model-name", "model", "--log", str(folder / "mo.log")]
    )
    return folder / "model.xml"


@pytest.fixture(scope="module")
def shipped(deploy_json, tmp_path_factory):
    return convert(deploy_json, tmp_path_factory.mktemp("ir"))


def verify(deploy_json, xml, val_rec, folder):
    """verify_ir as the rule runs it (no ONNX or LiteRT models to time): verify.json's content."""
    verify_ir.main(
        ["--deploy", str(deploy_json), "--ir", str(xml), "--val-rec", str(val_rec), "--min-score", str(MIN_SCORE)]
        + ["--iou-threshold", "0.5", "--out", str(folder / "verify.json")]
        + ["--differences", str(folder / "differences.txt"), "--litert"]
    )
    return json.loads((folder / "verify.json").read_text())


def test_a_correct_ir_of_an_untrained_model_passes_and_says_what_it_compared(deploy_json, shipped, val_rec, tmp_path):
    check = verify(deploy_json, shipped, val_rec, tmp_path)
    fp32, fp16 = check["proof"]["networks"]
    assert (fp32["model"], fp32["reference"]) == ("the FP32 IR", "MXNet") and fp32["images"] == 5
    assert fp16["reference"] == "the FP32 IR with its weights rounded to FP16"
    assert fp32["max_class_prob_difference"] < 1e-5 and fp16["max_class_prob_difference"] <= 1e-6
    assert fp32["tolerance"] == fp16["tolerance"] == 1e-4 and fp32["problems"] == fp16["problems"] == []
    postprocessing = check["proof"]["postprocessing"]
    assert postprocessing["cases"] == 4 and postprocessing["mxnet_detections"] > 50 and postprocessing["problems"] == []
    assert check["proof"]["anchors"] == check["proof"]["settings"] == []
    assert 0 < check["matched"] and check["inference_precision"]["ran"] == "f32"  # reported


def test_two_anchors_tied_within_fp16_resolution_flip_the_detections_but_not_the_proof(weights, val_rec, tmp_path):
    """FP16 rounds the two anchors' scores to the same value: the FP16 IR keeps the other box of every pair, which
    the pairing of detections (reported) counts as differences, and the proof, which compares the network, not."""
    deploy_json = save_deploy(tmp_path / "deploy", tie_anchors(weights[0]), weights[1])
    check = verify(deploy_json, convert(deploy_json, tmp_path / "ir"), val_rec, tmp_path)
    assert check["agreement"] < 0.97 and check["only_mxnet"] > 20  # what the proof before this one would fail on
    assert all(not network["problems"] for network in check["proof"]["networks"])


@pytest.fixture(scope="module")
def twin(deploy_json, tmp_path_factory):
    """verify_ir's FP32 twin of the deploy model, converted once for the tests whose IR holds the same network."""
    contract = {"mean_in_ir": True, "color_order": "BGR"}
    return verify_ir.twin_ir(deploy_json, contract, "FP32", tmp_path_factory.mktemp("twin"))


@pytest.mark.parametrize("threshold", [0.3, 0.5])
def test_many_scores_at_the_detection_threshold_change_nothing(
    weights, shipped, twin, val_rec, tmp_path, monkeypatch, threshold
):
    """The untrained model's scores crowd 0.2-0.7: with the deploy graph's threshold among them, many boxes sit at
    it, and the proof's synthetic network outputs keep theirs away from it. (The IR holds no threshold: the shipped
    one with the threshold in its contract is this deploy model's.)"""
    monkeypatch.setattr(verify_ir, "twin_ir", lambda *arguments: twin)
    deploy_json = save_deploy(tmp_path / "deploy", *weights, threshold=threshold)
    shutil.copytree(shipped.parent, tmp_path / "ir")
    edit_contract(tmp_path / "ir", model_score_threshold=threshold)
    check = verify(deploy_json, tmp_path / "ir" / "model.xml", val_rec, tmp_path)
    assert check["proof"]["postprocessing"]["problems"] == [] and check["proof"]["settings"] == []


def edit_contract(folder, **changes):
    path = folder / "model.contract.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def edit_xml(folder, old, new):
    path = folder / "model.xml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def scale_a_convolution(folder, factor=1.02):
    """One convolution kernel (the first FP16 constant of rank 4 with more than 100 values) scaled in model.bin."""
    text = (folder / "model.xml").read_text()
    for shape, offset, size in re.findall(r'element_type="f16" shape="([^"]+)" offset="(\d+)" size="(\d+)"', text):
        dims = [int(d) for d in shape.split(",")]
        if len(dims) == 4 and np.prod(dims) > 100:
            data = bytearray((folder / "model.bin").read_bytes())
            start, end = int(offset), int(offset) + int(size)
            kernel = np.frombuffer(bytes(data[start:end]), np.float16) * np.float16(factor)
            data[start:end] = kernel.astype(np.float16).tobytes()
            (folder / "model.bin").write_bytes(bytes(data))
            return
    raise AssertionError("no convolution kernel in the IR")


PARITY_OF_FP16 = (
    r"the FP16 IR's (class probabilities|box offsets \(times the variances\)) differ from the FP32 IR with its "
    r"weights rounded to FP16's"
)
DEFECTS = {
    "colours swapped": (lambda f, d: edit_contract(f, color_order="RGB"), PARITY_OF_FP16),
    "the mean subtracted twice": (lambda f, d: edit_contract(f, mean_in_ir=False), PARITY_OF_FP16),
    "one convolution's weights scaled by 1.02": (lambda f, d: scale_a_convolution(f), PARITY_OF_FP16),
    "a wrong variance": (
        lambda f, d: edit_xml(f, 'variance="0.1, 0.1, 0.2, 0.2"', 'variance="0.1, 0.1, 0.3, 0.3"'),
        r"the IR decodes with variances \[\[0.1, 0.1, 0.3, 0.3\]\], MXNet with \[0.1, 0.1, 0.2, 0.2\]",
    ),
    "nms_threshold changed": (
        lambda f, d: edit_contract(f, nms_threshold=0.5),
        r"the IR's contract's nms_threshold is 0.5, the deploy model's 0.45; .*MXNet's MultiBoxDetection keeps \d+ "
        r"detections and infer.py's post-processing \d+",
    ),
    "force_nms flipped": (
        lambda f, d: edit_contract(f, force_nms=False),
        r"the IR's contract's force_nms is False, the deploy model's True; .*infer.py's post-processing",
    ),
    "classes swapped": (
        lambda f, d: edit_contract(f, labels=["b", "a", "c"]),
        r"the IR's contract's labels is \['b', 'a', 'c'\], the deploy model's \['a', 'b', 'c'\]",
    ),
}


@pytest.mark.parametrize("defect", DEFECTS)
def test_a_defective_ir_fails_the_proof_naming_what_differs(
    deploy_json, shipped, twin, val_rec, tmp_path, monkeypatch, defect
):
    monkeypatch.setattr(verify_ir, "twin_ir", lambda *arguments: twin)
    folder = tmp_path / "ir"
    shutil.copytree(shipped.parent, folder)
    make, message = DEFECTS[defect]
    make(folder, deploy_json)
    with pytest.raises(UserError, match=r"^the IR does not compute what the MXNet model computes: .*" + message):
        verify(deploy_json, folder / "model.xml", val_rec, tmp_path)


def conversion_from(deploy_json, folder, data_shape=SIDE, mean=networks.MEAN_RGB):
    """The IR converted from the deploy model's files with this data shape and mean (a defective conversion)."""
    info = json.loads(deploy_json.read_text())
    files = ["--symbol", str(deploy_json.parent / info["symbol"]), "--params", str(deploy_json.parent / info["params"])]
    shape = ["--data-shape", str(data_shape), "--mean-rgb", *map(str, mean)]
    xml = convert(deploy_json, folder, *files, *shape)
    edit_contract(folder, labels=info["classes"])
    return xml


@pytest.mark.parametrize(
    "defect, data_shape, mean, message",
    [
        ("a wrong mean (BGR's order)", SIDE, networks.MEAN_RGB[::-1], PARITY_OF_FP16),
        ("anchors of another data_shape", 96, networks.MEAN_RGB, r"the IR has \d+ anchors, MXNet \d+"),
    ],
)
def test_a_defective_conversion_fails_the_proof(
    deploy_json, twin, val_rec, tmp_path, monkeypatch, defect, data_shape, mean, message
):
    monkeypatch.setattr(verify_ir, "twin_ir", lambda *arguments: twin)
    xml = conversion_from(deploy_json, tmp_path / "ir", data_shape, mean)
    with pytest.raises(UserError, match=message):
        verify(deploy_json, xml, val_rec, tmp_path)


def test_the_mxnet_reference_names_anchors_and_classes(deploy_json):
    """What the messages name: anchors and classes of the deploy model, MXNet's own."""
    detector = verify_ir.Detector(deploy_json)
    rgb = cv2.cvtColor(synthetic_images(1)[0], cv2.COLOR_BGR2RGB)
    class_prob, offsets = detector.network_outputs(rgb)
    assert class_prob.shape == (len(detector.anchors), NUM_CLASSES + 1) and offsets.shape == detector.anchors.shape
    assert detector.contract_settings()["labels"] == ["a", "b", "c"]
