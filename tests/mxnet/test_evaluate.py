import json

import mxnet as mx
import numpy as np
import pytest

from workflow import check, evaluate, pack
from workflow.lib import metrics
from workflow.lib.networks import build_deploy_symbol

CLASSES = ["swoosh", "stripes"]
SHAPE = 64


def make_tiny_deploy(folder, seed=0):
    """A tiny deploy model with seeded random weights, saved as the deploy stage saves one; returns deploy.json."""
    folder.mkdir(parents=True, exist_ok=True)
    symbol = build_deploy_symbol("tiny", len(CLASSES), SHAPE)
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=(1, 3, SHAPE, SHAPE))
    rng = np.random.RandomState(seed)
    args = {
        name: mx.nd.array(rng.normal(0, 0.2, shape))
        for name, shape in zip(symbol.list_arguments(), arg_shapes)
        if name != "data"
    }
    aux = {
        name: mx.nd.ones(shape) if name.endswith("var") else mx.nd.zeros(shape)
        for name, shape in zip(symbol.list_auxiliary_states(), aux_shapes)
    }
    mx.model.save_checkpoint(str(folder / "deploy_ssd_tiny_64"), 3, symbol, args, aux)
    info = {
        "symbol": "deploy_ssd_tiny_64-symbol.json",
        "params": "deploy_ssd_tiny_64-0003.params",
        "epoch": 3,
        "network": "tiny",
        "data_shape": SHAPE,
        "classes": CLASSES,
        "force_nms": True,
        "nms_threshold": 0.45,
        "nms_topk": 400,
        "threshold": 0.01,
    }
    (folder / "deploy.json").write_text(json.dumps(info))
    return folder / "deploy.json"


def make_val_rec(voc_root, prefix):
    records, problems = check.check_dataset(voc_root, check.Settings(CLASSES, {}, 50_000_000, True))
    assert problems == []
    pack.pack(records, prefix, max_side=160, quality=90, max_pixels=50_000_000, processes=1)
    return prefix.with_suffix(".rec"), records


@pytest.fixture
def model_and_records(voc, tmp_path):
    root = voc(4)
    xml = sorted((root / "Annotations").glob("*.xml"))[0]
    xml.write_text(xml.read_text().replace("<difficult>0</difficult>", "<difficult>1</difficult>", 1))
    rec, records = make_val_rec(root, tmp_path / "val")
    return make_tiny_deploy(tmp_path / "deploy"), rec, records


def run(deploy, rec, out, *options, difficult=False):
    settings = {
        "--iou-threshold": "0.5",
        "--confusion-threshold": "0.5",
        "--worst-images": "6",
        "--bootstrap-resamples": "1000",
    }
    settings.update(zip(options[::2], options[1::2]))  # options: flag, value pairs
    evaluate.main(
        [
            "--deploy",
            str(deploy),
            "--val-rec",
            str(rec),
            "--val-lst",
            str(rec.with_suffix(".lst")),
            "--out-dir",
            str(out),
            *[item for pair in settings.items() for item in pair],
            "--use-difficult" if difficult else "--no-use-difficult",
        ]
    )
    return json.loads((out / "metrics.json").read_text())


def test_evaluation_is_a_pure_function_of_model_records_and_settings(model_and_records, tmp_path):
    deploy, rec, records = model_and_records
    options = ["--confusion-threshold", "0.3", "--worst-images", "2"]
    first = run(deploy, rec, tmp_path / "a", *options)
    run(deploy, rec, tmp_path / "b", *options)
    for name in ("metrics.json", "per_class.csv", "confusion.csv", "worst_images.csv", "worst_images.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name

    assert first["images"] == 4 and first["epoch"] == 3 and first["model"]["force_nms"] is True
    assert (first["iou_threshold"], first["use_difficult"], first["confusion_threshold"]) == (0.5, False, 0.3)
    assert all(row["ap_coco"] is not None for row in first["per_class"])
    objects = sum(len(r["objects"]) for r in records)
    assert sum(row["npos"] for row in first["per_class"]) == objects - 1  # the difficult box is ignored

    worst = json.loads((tmp_path / "a" / "worst_images.json").read_text())
    assert worst["threshold"] == 0.3 and 1 <= len(worst["images"]) <= 2
    assert [d["rank"] for d in worst["images"]] == sorted(d["rank"] for d in worst["images"])
    assert all(d["errors"] > 0 and (tmp_path / "a" / d["output"]).stat().st_size > 1000 for d in worst["images"])


def test_settings_reach_the_metric(model_and_records, tmp_path):
    deploy, rec, records = model_and_records
    loose = run(deploy, rec, tmp_path / "loose", "--iou-threshold", "0.1", difficult=True)
    strict = run(deploy, rec, tmp_path / "strict", "--iou-threshold", "0.7")
    assert (loose["iou_threshold"], loose["use_difficult"], strict["iou_threshold"]) == (0.1, True, 0.7)
    objects = sum(len(r["objects"]) for r in records)
    assert sum(row["npos"] for row in loose["per_class"]) == objects
    assert sum(row["tp"] for row in loose["per_class"]) > sum(row["tp"] for row in strict["per_class"])


# Hand-made val set, classes 0 and 1, score threshold 0.5, IoU threshold 0.5.
GROUND_TRUTH = [
    # A: a swoosh and a stripes
    [[0, 0.0, 0.0, 0.4, 0.4, 0], [1, 0.5, 0.5, 0.9, 0.9, 0]],
    # B: a stripes nobody finds, and a difficult swoosh found
    [[1, 0.1, 0.1, 0.3, 0.3, 0], [0, 0.6, 0.6, 0.9, 0.9, 1]],
    # C: background only
    [],
    # D: a swoosh found
    [[0, 0.2, 0.2, 0.6, 0.6, 0]],
]
DETECTIONS = [
    [
        [0, 0.9, 0.0, 0.0, 0.4, 0.4],  # right: swoosh as swoosh
        [0, 0.8, 0.5, 0.5, 0.9, 0.9],  # the stripes labelled swoosh: a class confusion
        [1, 0.7, 0.0, 0.0, 0.4, 0.4],  # the swoosh again as stripes, both boxes taken: a false alarm
        [1, 0.3, 0.5, 0.5, 0.9, 0.9],
    ],  # below the score threshold: not counted
    [
        [0, 0.6, 0.6, 0.6, 0.9, 0.9],  # on the difficult box: left out unless use_difficult
        [1, 0.55, 0.1, 0.1, 0.2, 0.2],
    ],  # IoU 0.25 with the stripes: a false alarm, the stripes is missed
    [[0, 0.6, 0.1, 0.1, 0.5, 0.5]],  # a false alarm
    [[0, 0.5, 0.2, 0.2, 0.58, 0.6]],  # IoU 0.95, score exactly at the threshold: right
]
NAMES = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]


def hand_made_pairs(use_difficult=False):
    shown = [metrics.above(np.array(d, dtype=float).reshape(-1, 6), 0.5) for d in DETECTIONS]
    return [metrics.match_image(g, d, 0.5, use_difficult) for g, d in zip(GROUND_TRUTH, shown)]


def test_confusion_matrix_counts_class_confusions_false_alarms_and_misses():
    #                           predicted: swoosh stripes background      (true: rows)
    assert metrics.confusion_matrix(hand_made_pairs(), 2).tolist() == [
        [2, 0, 0],  # swoosh
        [1, 0, 1],  # stripes
        [1, 2, 0],
    ]  # background
    assert metrics.confusion_matrix(hand_made_pairs(use_difficult=True), 2).tolist() == [
        [3, 0, 0],
        [1, 0, 1],
        [1, 2, 0],
    ]


def test_each_box_is_matched_once_greedily_by_score():
    truth = [[0, 0.0, 0.0, 0.4, 0.4, 0], [0, 0.05, 0.0, 0.45, 0.4, 0]]
    found = [
        [0, 0.6, 0.0, 0.0, 0.4, 0.4],  # lower score, best IoU with the first box
        [0, 0.9, 0.02, 0.0, 0.42, 0.4],
    ]  # higher score: matched first, takes the first box (IoU 0.90 vs 0.86)
    # the lower-scoring detection then takes the second box (IoU 0.78), still above 0.5
    assert metrics.match_image(truth, found, 0.5) == [(0, 0), (0, 0)]
    assert metrics.match_image(truth, found[:1] * 3, 0.5) == [(0, 0), (0, 0), (-1, 0)]


def test_images_are_ranked_by_false_positives_plus_missed_objects():
    ranked = evaluate.rank_images(hand_made_pairs(), NAMES)
    assert [row["image"] for row in ranked] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    a, b, c, d = ranked
    assert {
        k: a[k]
        for k in ("rank", "objects", "detections", "correct", "wrong_class", "false_positives", "missed", "errors")
    } == {
        "rank": 1,
        "objects": 2,
        "detections": 3,
        "correct": 1,
        "wrong_class": 1,
        "false_positives": 2,
        "missed": 1,
        "errors": 3,
    }
    assert (b["false_positives"], b["missed"], b["errors"]) == (1, 1, 2)
    assert (c["false_positives"], c["missed"], c["errors"]) == (1, 0, 1)
    assert (d["errors"], d["rank"]) == (0, 4)
    # ties: more false positives first, then record order
    tied = evaluate.rank_images([[(0, -1)], [(-1, 0)], [(1, -1)]], ["miss", "alarm", "miss2"])
    assert [row["image"] for row in tied] == ["alarm", "miss", "miss2"]


def test_metrics_carry_bootstrap_intervals_and_f1_thresholds(model_and_records, tmp_path):
    deploy, rec, _ = model_and_records
    metrics = run(deploy, rec, tmp_path / "a", "--bootstrap-resamples", "200", "--bootstrap-seed", "4")
    assert metrics["bootstrap"] == {
        "resamples": 200,
        "seed": 4,
        "confidence": 0.95,
        "method": "bias-corrected percentile, val images drawn with replacement",
    }
    for key in ("map_voc07", "map_area", "coco_map"):
        low, high = metrics["intervals"][key]
        assert 0 <= low <= high <= 1
    for row in metrics["per_class"]:
        assert row["ap_area_low"] <= row["ap_area_high"]
    chosen = metrics["score_threshold"]["overall"]
    assert chosen["npos"] == sum(row["npos"] for row in metrics["per_class"])
    assert chosen["f1"] == pytest.approx(2 * chosen["tp"] / (chosen["tp"] + chosen["fp"] + chosen["npos"]))
    assert set(metrics["score_threshold"]["per_class"]) == set(CLASSES)
    assert metrics["last_epoch"] is None  # no training folders given
    assert (tmp_path / "a" / "f1_curves.png").stat().st_size > 1000
    again = run(deploy, rec, tmp_path / "b", "--bootstrap-resamples", "200", "--bootstrap-seed", "4")
    assert again["intervals"] == metrics["intervals"]


def training_segment(folder, epochs_and_seeds, logged):
    """A training segment's folder: ssd-NNNN checkpoints with the tiny deploy graph's weights of each seed, log.csv."""
    folder.mkdir(parents=True)
    for epoch, seed in epochs_and_seeds:
        saved = make_tiny_deploy(folder / f"seed{seed}", seed)
        symbol, args, aux = mx.model.load_checkpoint(str(saved.parent / "deploy_ssd_tiny_64"), 3)
        mx.model.save_checkpoint(str(folder / "ssd"), epoch, symbol, args, aux)
    (folder / "log.csv").write_text("epoch,seconds,val_map\n" + "".join(f"{e},1.0,0.1\n" for e in range(1, logged + 1)))
    return str(folder)


def test_the_deployed_epoch_is_compared_with_the_last_on_the_same_images(model_and_records, tmp_path):
    deploy, rec, _ = model_and_records  # epoch 3, weights of seed 0
    other = run(make_tiny_deploy(tmp_path / "other", seed=1), rec, tmp_path / "other_eval")
    segment = training_segment(tmp_path / "train", [(3, 0), (5, 1)], logged=5)
    metrics = run(deploy, rec, tmp_path / "a", "--train-dirs", segment, "--bootstrap-resamples", "300")
    compared = metrics["last_epoch"]
    assert compared["last_epoch"] == 5 and compared["last_map_voc07"] == other["map_voc07"]
    assert compared["difference"] == pytest.approx(metrics["map_voc07"] - other["map_voc07"])
    assert compared["low"] <= compared["difference"] <= compared["high"]
    assert compared["distinguishable"] == (compared["low"] > 0 or compared["high"] < 0)

    same = training_segment(tmp_path / "same", [(3, 0), (5, 0)], logged=5)  # the last epoch has the same weights
    compared = run(deploy, rec, tmp_path / "b", "--train-dirs", same, "--bootstrap-resamples", "50")["last_epoch"]
    assert (compared["difference"], compared["low"], compared["high"], compared["distinguishable"]) == (0, 0, 0, False)
    last = training_segment(tmp_path / "last", [(3, 0)], logged=3)  # epoch 3 is the last: nothing to compare
    assert run(deploy, rec, tmp_path / "c", "--train-dirs", last)["last_epoch"] is None
