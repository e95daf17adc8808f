"""The proofs' parts (workflow/lib/proof.py) and the proofs of the LiteRT contract and of MXNet 0.12: each holds on a
correct export and fails, naming what differs, on every real defect."""

import json
import re
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from conftest import REPO
from test_evaluate import make_tiny_deploy, make_val_rec

from workflow import export_litert, export_mxnet012, export_onnx
from workflow.lib import onnx_graph, proof
from workflow.lib.detector import Detector
from workflow.lib.mxnet012 import SUMMARY
from workflow.lib.networks import VARIANCES

SETTINGS = {"model_score_threshold": 0.01, "nms_threshold": 0.45, "nms_topk": 40, "force_nms": True}
# the orchestrator's Python (make builds it) has uv beside it, to build the mxnet012 environment on the Python this
# suite runs on when it is not built yet (make test-pythons); this environment's own Python has no uv
ORCHESTRATOR = next((str(p) for p in [REPO / ".venv" / "bin" / "python"] if p.exists()), sys.executable)


@pytest.fixture(scope="module")
def anchors():
    return mx.nd.contrib.MultiBoxPrior(mx.nd.zeros((1, 1, 8, 8)), sizes=(0.2, 0.35), ratios=(1, 2, 0.5)).asnumpy()[0]


def test_synthetic_outputs_keep_scores_and_overlaps_away_from_ties_and_thresholds(anchors):
    outputs = proof.synthetic_outputs(anchors, VARIANCES, 3, SETTINGS)
    assert len(outputs) == proof.SYNTHETIC_CASES
    counts = []
    for case, (prob, offsets) in enumerate(outputs):
        assert prob.shape == (len(anchors), 4) and offsets.shape == anchors.shape
        np.testing.assert_allclose(prob.sum(axis=1), 1, atol=1e-6)
        best = prob[:, 1:].max(axis=1)
        candidates = np.flatnonzero(best >= SETTINGS["model_score_threshold"] / 2)
        counts.append(len(candidates))
        scores = np.sort(best[candidates])
        assert np.diff(scores).min() >= proof.TIE_GAP * 0.99  # no two candidates tie
        assert np.abs(best - SETTINGS["model_score_threshold"]).min() >= proof.TIE_GAP / 2 * 0.99
        second = np.sort(prob[candidates, 1:], axis=1)[:, -2]
        assert (second < 0.9 * best[candidates] + 1e-7).all()  # each candidate's best class stands apart
        boxes = np.clip(proof.decode(offsets[candidates], anchors[candidates], VARIANCES), 0, 1)
        overlaps = proof.iou_matrix(boxes, boxes)
        np.fill_diagonal(overlaps, 0)
        assert np.abs(overlaps - SETTINGS["nms_threshold"]).min() >= proof.TIE_GAP
        assert (overlaps > SETTINGS["nms_threshold"]).any()  # NMS has something to decide
    assert max(counts[:-1]) < SETTINGS["nms_topk"] < counts[-1]  # the last case exercises the top-k


def test_a_network_comparison_names_the_largest_difference_and_where(anchors):
    reference = proof.synthetic_outputs(anchors, VARIANCES, 2, SETTINGS, cases=2)
    comparison = proof.NetworkComparison("the export", VARIANCES, ["cat", "dog"])
    moved = reference[1][0].copy()
    moved[17, 2] += 3e-4
    comparison.add(reference[0], (reference[0][0] + 5e-5, reference[0][1]))  # within the tolerance
    comparison.add(reference[1], (moved, reference[1][1]))
    result = comparison.result()
    assert result["max_class_prob_difference"] == pytest.approx(3e-4, rel=1e-3)
    assert result["max_class_prob_at"] == "val image 1, anchor 17, class dog" and result["max_box_difference"] == 0
    assert result["problems"] == [
        "the export's class probabilities differ from MXNet's by up to 0.0003 (val image 1, anchor 17, class dog; "
        "tolerance 0.0001)"
    ]
    other = proof.NetworkComparison("the export", VARIANCES, ["cat", "dog"])
    other.add(reference[0], (reference[0][0][:-4], reference[0][1][:-4]))
    assert other.result()["problems"] == [
        f"the export gives {len(anchors) - 4} anchors x 2 classes and {len(anchors) - 4} box offsets, MXNet "
        f"{len(anchors)} anchors x 2 classes and {len(anchors)} box offsets"
    ]


def test_a_post_processing_comparison_names_the_first_detection_that_differs():
    mxnet = [np.array([[0, 0.9, 0.1, 0.1, 0.4, 0.4], [1, 0.5, 0.5, 0.5, 0.9, 0.9]], np.float32)]
    close = mxnet[0].copy()
    close[:, 1:] += 1e-6
    assert proof.compare_postprocessing("it", mxnet, [close])["problems"] == []
    problems = proof.compare_postprocessing("it", mxnet, [mxnet[0][:1]])["problems"]
    assert problems == [
        "on synthetic network outputs 0, MXNet's MultiBoxDetection keeps 2 detections and it's post-processing 1; "
        "detection 1 (best first): MXNet [1, 0.5000, 0.5000, 0.5000, 0.9000, 0.9000], it none (1 of 1 cases differ)"
    ]


@pytest.fixture
def litert_contract(tmp_path):
    """The tiny deploy model, and litert.contract.json as export_onnx and export_litert write it for it."""
    deploy = make_tiny_deploy(tmp_path / "deploy")
    detector = Detector(deploy)
    info = json.loads(deploy.read_text())
    symbol = mx.sym.load(str(deploy.parent / info["symbol"]))
    args, aux = mx.model.load_params(str(deploy.parent / info["symbol"][: -len("-symbol.json")]), info["epoch"])
    network, network_anchors = onnx_graph.build_network(symbol, args, aux, info)
    heads = len(network.graph.output) // 2
    contract = export_litert.litert_contract(export_onnx.network_contract(info, network_anchors, heads), {})
    return detector, {**contract, "anchors": np.asarray(contract["anchors"], np.float32)}


def test_the_deploy_graphs_post_processing_runs_as_deployed_or_with_nms_per_class(litert_contract):
    detector, _ = litert_contract
    settings = detector.settings
    assert settings["force_nms"] is True
    prob, offsets = proof.synthetic_outputs(detector.anchors, VARIANCES, 2, settings, cases=1)[0]
    for force_nms in (True, False):
        expected = mx.nd.contrib.MultiBoxDetection(
            mx.nd.array(prob.T[np.newaxis]),
            mx.nd.array(offsets.reshape(1, -1)),
            mx.nd.array(detector.anchors[np.newaxis]),
            force_suppress=force_nms,
            nms_threshold=settings["nms_threshold"],
            nms_topk=settings["nms_topk"],
            threshold=settings["model_score_threshold"],
            variances=VARIANCES,
        )[0].asnumpy()
        np.testing.assert_array_equal(
            detector.postprocess(prob, offsets, force_nms=force_nms), expected[expected[:, 0] >= 0]
        )
    deployed, per_class = detector.postprocess(prob, offsets), detector.postprocess(prob, offsets, force_nms=False)
    np.testing.assert_array_equal(deployed, detector.postprocess(prob, offsets, force_nms=True))
    assert len(per_class) > len(deployed)


def problems(checked):
    return checked["anchors"] + checked["settings"] + (checked["postprocessing"] or {"problems": []})["problems"]


LITERT_DEFECTS = {
    "a wrong variance": ({"variances": [0.1, 0.1, 0.3, 0.3]}, r"litert.contract.json decodes with variances"),
    "nms_threshold changed": ({"nms_threshold": 0.5}, r"litert.contract.json's nms_threshold is 0.5"),
    "force_nms flipped": ({"force_nms": False}, r"litert.contract.json's force_nms is False, the deploy model's True"),
    "classes swapped": ({"labels": ["stripes", "swoosh"]}, r"litert.contract.json's labels is \['stripes', 'swoosh'\]"),
}


@pytest.mark.parametrize("defect", LITERT_DEFECTS)
def test_a_defective_litert_contract_fails_the_proof(litert_contract, defect):
    detector, contract = litert_contract
    assert problems(export_litert.contract_proof(detector, contract)) == []
    changes, message = LITERT_DEFECTS[defect]
    found = problems(export_litert.contract_proof(detector, {**contract, **changes}))
    assert any(re.search(message, problem) for problem in found), found
    if defect != "classes swapped":  # the post-processing with the defect keeps other detections
        assert any("litert_infer.py's post-processing" in problem for problem in found), found


def test_a_litert_contract_with_anchors_of_another_data_shape_fails_the_proof(litert_contract):
    detector, contract = litert_contract
    other = onnx_graph.anchor_boxes(onnx_graph.deploy_parts(detector.module.symbol)[2], 96)
    found = problems(export_litert.contract_proof(detector, {**contract, "anchors": other}))
    expected = f"litert.contract.json has {len(other)} anchors, MXNet {len(detector.anchors)} (anchors of another input"
    assert found == [f"{expected} size?)"]


@pytest.fixture
def mxnet012_export(voc, tmp_path):
    """export_mxnet012's folder for the tiny deploy model and 4 val images."""
    rec, _ = make_val_rec(voc(4), tmp_path / "val")
    export_mxnet012.export(make_tiny_deploy(tmp_path / "deploy"), rec, 4, tmp_path / "mxnet012")
    return tmp_path / "mxnet012"


def verify_mxnet012(folder):
    """verify_mxnet012 in its environment (MXNet 0.12): (exit status, its output, verify.json or None)."""
    command = [ORCHESTRATOR, "-m", "workflow.orchestrator.envs", "exec", "mxnet012", "--", "python", "-m"]
    command += ["workflow.verify_mxnet012", "--dir", str(folder), "--out", str(folder / "verify.json")]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    check = json.loads((folder / "verify.json").read_text()) if (folder / "verify.json").exists() else None
    return result.returncode, result.stderr + result.stdout, check


def edit_symbol(folder, change):
    path = folder / json.loads((folder / SUMMARY).read_text())["symbol"]
    graph = json.loads(path.read_text())
    change(next(node for node in graph["nodes"] if node["op"] == "_contrib_MultiBoxDetection")["attr"])
    path.write_text(json.dumps(graph))


def scale_a_convolution(folder):
    path = folder / json.loads((folder / SUMMARY).read_text())["params"]
    params = mx.nd.load(str(path))
    name = sorted(key for key in params if key.endswith("conv_weight"))[1]
    params[name] = params[name] * 1.02
    mx.nd.save(str(path), params)


MXNET012_DEFECTS = {
    "one convolution's weights scaled by 1.02": (
        scale_a_convolution,
        r"MXNet 0.12.0's (class probabilities|box offsets \(times the variances\)) differ from MXNet 1.9.1's by up to",
    ),
    "nms_threshold changed": (
        lambda folder: edit_symbol(folder, lambda attrs: attrs.update(nms_threshold="0.5")),
        r"MXNet's MultiBoxDetection keeps \d+ detections and MXNet 0.12.0's post-processing \d+",
    ),
    "force_nms flipped": (
        lambda folder: edit_symbol(folder, lambda attrs: attrs.update(force_suppress="False")),
        r"MXNet's MultiBoxDetection keeps \d+ detections and MXNet 0.12.0's post-processing \d+",
    ),
    "a wrong variance": (
        lambda folder: edit_symbol(folder, lambda attrs: attrs.update(variances="(0.1, 0.1, 0.3, 0.3)")),
        r"MXNet's MultiBoxDetection keeps \d+ detections and MXNet 0.12.0's post-processing \d+",
    ),
}


def test_mxnet012_computes_what_mxnet_191_computes(mxnet012_export):
    status, output, check = verify_mxnet012(mxnet012_export)
    assert status == 0, output
    assert check["mxnet_version"] == "0.12.0" and check["proof"]["network"]["problems"] == []
    assert check["proof"]["postprocessing"]["problems"] == [] and check["proof"]["postprocessing"]["cases"] == 4


@pytest.mark.parametrize("defect", MXNET012_DEFECTS)
def test_a_defective_mxnet012_model_fails_the_proof(mxnet012_export, defect):
    make, message = MXNET012_DEFECTS[defect]
    make(mxnet012_export)
    status, output, _ = verify_mxnet012(mxnet012_export)
    assert status == 1 and "Traceback" not in output, output
    assert re.search("ERROR: MXNet 0.12.0 does not compute what MXNet 1.9.1 computes: .*" + message, output), output
