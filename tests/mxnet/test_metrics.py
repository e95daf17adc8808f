"""Tests of workflow.lib.metrics: the shared PASCAL VOC devkit reference cases, then one hand-made case per rule."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workflow.lib.metrics import (
    MatchedImages,
    best_f1,
    bootstrap_intervals,
    evaluate_detections,
    f1_thresholds,
    paired_difference,
    per_class_table,
    percentile_interval,
    resample_draws,
    resampled_values,
)

REFERENCE = Path(__file__).parent / "data" / "voc_metric" / "voc_metric_cases.json"  # PROVENANCE.md beside it
UNIT = [0.0, 0.0, 1.0, 1.0]  # a box; a detection on it has IoU 1 with a gt on it
ELSEWHERE = [5.0, 5.0, 6.0, 6.0]  # a box overlapping nothing


def gt(cls, box, difficult=0):
    return [cls, *box, difficult]


def det(cls, score, box):
    return [cls, score, *box]


def evaluate(images, num_classes=1, **kwargs):
    """images: list of (gt rows, det rows)."""
    return evaluate_detections([g for g, _ in images], [d for _, d in images], num_classes, **kwargs)


# ---------------------------------------------------------------- reference cases (devkit)


def reference_cases():
    return json.loads(REFERENCE.read_text())["cases"]


@pytest.mark.parametrize("use_difficult", [False, True])
def test_reference_cases_equal_devkit(use_difficult):
    suffix = "_use_difficult" if use_difficult else ""
    for index, case in enumerate(reference_cases()):
        result = evaluate_detections(
            [image["gt"] for image in case["images"]],
            [image["det"] for image in case["images"]],
            case["num_classes"],
            iou_threshold=case["iou_threshold"],
            use_difficult=use_difficult,
        )
        for kind, ap_field, map_value in [
            ("voc07_11point", "ap_voc07", result.map_voc07),
            ("area", "ap_area", result.map_area),
        ]:
            expected = case["expected_devkit"][kind + suffix]
            got = {f"c{c.class_id}": getattr(c, ap_field) for c in result.per_class}
            got["mAP"] = map_value
            assert got == pytest.approx(expected, abs=1e-9, rel=0), f"case {index} {kind}{suffix}"


# ---------------------------------------------------------------- hand-made cases, one per rule


def test_difficult_match_is_ignored_unless_use_difficult():
    # scores: 0.95 hits nothing, 0.9 hits the difficult box, 0.8 hits the normal box
    images = [
        (
            [gt(0, UNIT), gt(0, ELSEWHERE, difficult=1)],
            [det(0, 0.95, [9, 9, 10, 10]), det(0, 0.9, ELSEWHERE), det(0, 0.8, UNIT)],
        )
    ]

    ignored = evaluate(images).per_class[0]  # counted: FP, TP with npos 1
    assert (ignored.npos, ignored.tp, ignored.fp) == (1, 1, 1)
    np.testing.assert_allclose(ignored.precision_curve, [0, 1 / 2])
    np.testing.assert_allclose(ignored.recall_curve, [0, 1])
    assert ignored.ap_area == pytest.approx(1 / 2)
    assert ignored.ap_voc07 == pytest.approx(1 / 2)

    counted = evaluate(images, use_difficult=True).per_class[0]  # FP, TP, TP with npos 2
    assert (counted.npos, counted.tp, counted.fp) == (2, 2, 1)
    np.testing.assert_allclose(counted.precision_curve, [0, 1 / 2, 2 / 3])
    np.testing.assert_allclose(counted.recall_curve, [0, 1 / 2, 1])
    assert counted.ap_area == pytest.approx(2 / 3)  # envelope 2/3 over the whole recall range
    assert counted.ap_voc07 == pytest.approx(2 / 3)


def test_second_detection_of_a_matched_box_is_a_false_positive():
    box_a, box_b = [0, 0, 10, 10], [2, 0, 12, 10]
    # the 0.8 detection overlaps box_a best (IoU 95/105) and box_b enough (85/115), but box_a is taken:
    # the devkit calls it a duplicate, it does not fall back to box_b
    images = [([gt(0, box_a), gt(0, box_b)], [det(0, 0.9, box_a), det(0, 0.8, [0.5, 0, 10.5, 10])])]
    result = evaluate(images).per_class[0]
    assert (result.npos, result.tp, result.fp) == (2, 1, 1)
    assert (result.precision, result.recall) == (1 / 2, 1 / 2)
    assert result.ap_area == pytest.approx(1 / 2)  # precision 1 up to recall 1/2
    assert result.ap_voc07 == pytest.approx(6 / 11)  # levels 0, .1, .., .5 reach precision 1


def test_false_positive_on_image_without_objects_lowers_ap():
    with_object = ([gt(0, UNIT)], [det(0, 0.8, UNIT)])
    without_objects = ([], [det(0, 0.9, UNIT)])
    assert evaluate([with_object]).per_class[0].ap_area == pytest.approx(1.0)
    pooled = evaluate([with_object, without_objects]).per_class[0]  # FP (0.9) then TP (0.8)
    assert (pooled.tp, pooled.fp) == (1, 1)
    assert pooled.ap_area == pytest.approx(1 / 2)
    assert pooled.ap_voc07 == pytest.approx(1 / 2)


def test_class_never_detected_has_ap_zero_and_counts_in_the_mean():
    images = [([gt(0, UNIT), gt(1, ELSEWHERE)], [det(0, 0.9, UNIT)])]
    result = evaluate(images, num_classes=2)
    never = result.per_class[1]
    assert (never.ap_voc07, never.ap_area, never.npos, never.tp, never.fp) == (0, 0, 1, 0, 0)
    assert never.recall == 0 and math.isnan(never.precision)
    assert result.map_area == pytest.approx(1 / 2) and result.map_voc07 == pytest.approx(1 / 2)


def test_class_without_ground_truth_has_ap_zero_if_detected_else_left_out_of_the_mean():
    images = [([gt(0, UNIT)], [det(0, 0.9, UNIT), det(1, 0.5, ELSEWHERE)])]
    result = evaluate(images, num_classes=3)
    only_detected, absent = result.per_class[1], result.per_class[2]
    assert (only_detected.ap_voc07, only_detected.ap_area, only_detected.fp) == (0, 0, 1)
    assert math.isnan(absent.ap_voc07) and math.isnan(absent.ap_area)
    assert result.map_area == pytest.approx(1 / 2)  # (1 + 0) / 2: class 2 left out
    assert result.map_voc07 == pytest.approx(1 / 2)


def test_iou_exactly_at_threshold_is_not_a_match():
    images = [([gt(0, [0, 0, 2, 1])], [det(0, 0.9, [0, 0, 1, 1])])]  # IoU = 1 / 2 exactly
    at_threshold = evaluate(images, iou_threshold=0.5).per_class[0]
    assert (at_threshold.tp, at_threshold.fp, at_threshold.ap_area, at_threshold.ap_voc07) == (0, 1, 0, 0)
    below_threshold = evaluate(images, iou_threshold=0.49).per_class[0]
    assert (below_threshold.tp, below_threshold.fp, below_threshold.ap_area) == (1, 0, 1)


def test_eleven_point_and_area_ap_on_a_simple_pr_curve():
    # npos 2; by score: TP, FP, TP -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    images = [([gt(0, UNIT)], [det(0, 0.9, UNIT), det(0, 0.8, ELSEWHERE)]), ([gt(0, UNIT)], [det(0, 0.7, UNIT)])]
    result = evaluate(images).per_class[0]
    np.testing.assert_allclose(result.precision_curve, [1, 1 / 2, 2 / 3])
    np.testing.assert_allclose(result.recall_curve, [1 / 2, 1 / 2, 1])
    assert result.ap_area == pytest.approx(1 / 2 * 1 + 1 / 2 * 2 / 3)  # envelope 1 then 2/3
    assert result.ap_voc07 == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)  # levels 0..0.5 get 1, 0.6..1 get 2/3


def test_coco_map_averages_area_ap_over_iou_thresholds():
    images = [([gt(0, [0, 0, 10, 10])], [det(0, 0.9, [0, 0, 10, 7.2])])]  # IoU 0.72
    result = evaluate(images)
    assert result.coco_map == pytest.approx(5 / 10)  # a match at 0.50 .. 0.70, not at 0.75 .. 0.95


def test_per_class_table_rows_build_a_dataframe():
    images = [([gt(0, UNIT), gt(1, ELSEWHERE)], [det(0, 0.9, UNIT), det(0, 0.8, ELSEWHERE)])]
    rows = per_class_table(evaluate(images, num_classes=2), class_names=["cat", "dog"])
    table = pd.DataFrame(rows)
    assert list(table.columns) == ["class_id", "name", "ap_voc07", "ap_area", "npos", "tp", "fp", "precision", "recall"]
    assert rows[0] == {
        "class_id": 0,
        "name": "cat",
        "ap_voc07": 1.0,
        "ap_area": 1.0,
        "npos": 1,
        "tp": 1,
        "fp": 1,
        "precision": 0.5,
        "recall": 1.0,
    }
    assert table.loc[1, "ap_area"] == 0 and "name" not in per_class_table(evaluate(images, 2))[0]


def test_padding_rows_and_empty_images_are_accepted():
    images = [
        (np.array([gt(0, UNIT), [-1, -1, -1, -1, -1, -1]]), np.array([det(0, 0.9, UNIT), [-1] * 6])),
        (np.zeros((0, 6)), []),
    ]
    result = evaluate(images)
    assert (result.per_class[0].tp, result.per_class[0].fp, result.map_area) == (1, 0, 1.0)


# ---------------------------------------------------------------- bootstrap over images


def matched(images, num_classes=1, **kwargs):
    return MatchedImages([g for g, _ in images], [d for _, d in images], num_classes, **kwargs)


FOUND = ([gt(0, UNIT)], [det(0, 0.9, UNIT)])  # an image whose one object is found
MISSED = ([gt(0, UNIT)], [])  # an image whose one object is missed


def test_every_resample_of_two_images_by_hand():
    # found+found: AP 1; found+missed either way: recall 1/2 at precision 1, 6 of 11 levels; missed+missed: AP 0
    maps, per_class = resampled_values(matched([FOUND, MISSED]), [[0, 0], [0, 1], [1, 0], [1, 1]])
    assert maps["map_voc07"].tolist() == pytest.approx([1.0, 6 / 11, 6 / 11, 0.0], abs=1e-12)
    assert per_class[0]["ap_voc07"].tolist() == maps["map_voc07"].tolist()
    # the middle half of {0, 6/11, 6/11, 1} with linear interpolation: 0.75 * 6/11 and 6/11 + 0.25 * 5/11
    assert percentile_interval(maps["map_voc07"], 0.5) == pytest.approx((4.5 / 11, 7.25 / 11), abs=1e-12)
    # the estimate 6/11 has a quarter of the values below and a quarter equal (counted half): no bias to correct
    assert percentile_interval(maps["map_voc07"], 0.5, 6 / 11) == pytest.approx((4.5 / 11, 7.25 / 11), abs=1e-12)


def test_bias_corrected_interval_by_hand():
    # values 0..9, estimate 2.5: 30% below, z0 = -0.5244; 50% coverage, z = 0.6745: the bounds are the values at
    # probabilities Phi(2 z0 - z) = 0.0424 and Phi(2 z0 + z) = 0.3541, i.e. 0.3818 and 3.1868 (linear, 9 steps)
    assert percentile_interval(np.arange(10), 0.5, 2.5) == pytest.approx((0.3818, 3.1868), abs=1e-4)
    assert percentile_interval(np.arange(10), 0.5, 4.5) == pytest.approx(percentile_interval(np.arange(10), 0.5))
    assert percentile_interval([np.nan, 0.3, 0.3], 0.9, 0.3) == (0.3, 0.3)
    assert percentile_interval([np.nan], 0.9, 0.3) == (None, None)


def random_images(rng, count, num_classes):
    images = []
    for _ in range(count):
        boxes = rng.uniform(0, 0.6, (rng.integers(0, 4), 2))
        truth = [
            gt(int(rng.integers(num_classes)), [x, y, x + 0.3, y + 0.3], int(rng.random() < 0.2)) for x, y in boxes
        ]
        found = [
            det(int(rng.integers(num_classes)), float(rng.random()), [x, y, x + 0.3, y + 0.3])
            for x, y in rng.uniform(0, 0.6, (rng.integers(0, 6), 2))
        ]
        found += [det(int(t[0]), float(rng.random()), [v + rng.normal(0, 0.03) for v in t[1:5]]) for t in truth]
        images.append((truth, found))
    return images


@pytest.mark.parametrize("use_difficult", [False, True])
def test_a_resample_scores_as_the_resampled_image_list_would(use_difficult):
    images = random_images(np.random.default_rng(3), 9, num_classes=3)
    once = matched(images, 3, use_difficult=use_difficult)
    for draw in resample_draws(len(images), 25, seed=1):
        expected = evaluate(([images[i] for i in draw]), 3, use_difficult=use_difficult)
        got = once.result(draw)
        for key in ("map_voc07", "map_area", "coco_map"):
            assert getattr(got, key) == pytest.approx(getattr(expected, key), abs=1e-12, nan_ok=True)
        for c_got, c_expected in zip(got.per_class, expected.per_class):
            assert (c_got.npos, c_got.tp, c_got.fp) == (c_expected.npos, c_expected.tp, c_expected.fp)


def test_bootstrap_interval_is_that_of_brute_force_resamples_and_reproducible():
    images = random_images(np.random.default_rng(5), 12, num_classes=2)
    once = matched(images, 2)
    brute = [evaluate([images[i] for i in draw], 2).map_area for draw in resample_draws(len(images), 200, seed=7)]
    maps, per_class = bootstrap_intervals(once, resamples=200, seed=7, confidence=0.9)
    assert maps["map_area"] == pytest.approx(percentile_interval(brute, 0.9, evaluate(images, 2).map_area), abs=1e-12)
    assert bootstrap_intervals(once, resamples=200, seed=7, confidence=0.9) == (maps, per_class)
    assert bootstrap_intervals(once, resamples=200, seed=8, confidence=0.9)[0] != maps
    low, high = maps["map_voc07"]
    assert low <= once.result().map_voc07 <= high


def test_paired_difference_scores_both_models_on_the_same_resamples():
    perfect = matched([FOUND, FOUND])
    half = matched([FOUND, MISSED])
    compared = paired_difference(perfect, half, resamples=1000, seed=0, confidence=0.95)
    assert compared["difference"] == pytest.approx(1 - 6 / 11)
    # the resamples where `half` drew its found image twice tie (1 - 1); in a quarter of them on average
    assert 0.7 < compared["share_a_higher"] < 0.8
    assert (compared["low"], compared["high"]) == (0.0, 1.0)
    same = paired_difference(half, half, resamples=50)
    assert (same["difference"], same["low"], same["high"], same["share_a_higher"]) == (0.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same images: 2 vs 1"):
        paired_difference(half, matched([FOUND]))


# ---------------------------------------------------------------- F1-optimal score threshold


def test_f1_threshold_by_hand():
    # by score: 0.9 TP, 0.8 FP, 0.7 TP and 0.7 FP (a tie: one threshold keeps both), 0.5 TP, 0.4 FP; 3 objects
    images = [
        (
            [gt(0, UNIT), gt(0, ELSEWHERE)],
            [det(0, 0.9, UNIT), det(0, 0.8, [9, 9, 10, 10]), det(0, 0.7, ELSEWHERE), det(0, 0.7, [7, 7, 8, 8])],
        ),
        ([gt(0, UNIT), gt(1, UNIT)], [det(0, 0.5, UNIT), det(0, 0.4, ELSEWHERE), det(1, 0.6, UNIT)]),
    ]
    best, curves = f1_thresholds(matched(images, 2))
    thresholds, f1 = curves["per_class"][0]
    # F1 = 2 tp / (tp + fp + npos): 0.9: 2/4, 0.8: 2/5, 0.7: 4/7, 0.5: 6/8, 0.4: 6/9
    assert thresholds.tolist() == [0.9, 0.8, 0.7, 0.5, 0.4]
    assert f1.tolist() == pytest.approx([2 / 4, 2 / 5, 4 / 7, 6 / 8, 6 / 9])
    assert best["per_class"][0] == {
        "threshold": 0.5,
        "f1": pytest.approx(0.75),
        "precision": pytest.approx(0.6),
        "recall": 1.0,
        "tp": 3,
        "fp": 2,
        "npos": 3,
    }
    assert best["per_class"][1]["threshold"] == 0.6
    # pooled: 0.9 T, 0.8 F, 0.7 T+F, 0.6 T, 0.5 T, 0.4 F over 4 objects; best 0.5 with tp 4, fp 2: 8/10
    assert best["overall"] == {
        "threshold": 0.5,
        "f1": pytest.approx(0.8),
        "precision": pytest.approx(4 / 6),
        "recall": 1.0,
        "tp": 4,
        "fp": 2,
        "npos": 4,
    }


def test_f1_ties_take_the_higher_threshold_and_difficult_matches_count_neither_way():
    # 0.9 TP (F1 2/3 with 2 objects), 0.8 on the difficult box (ignored), 0.7 and 0.65 FP, 0.6 TP (F1 4/6 too)
    images = [
        (
            [gt(0, UNIT), gt(0, ELSEWHERE, difficult=1), gt(0, [2, 2, 3, 3])],
            [
                det(0, 0.9, UNIT),
                det(0, 0.8, ELSEWHERE),
                det(0, 0.7, [9, 9, 10, 10]),
                det(0, 0.65, [8, 8, 9, 9]),
                det(0, 0.6, [2, 2, 3, 3]),
            ],
        )
    ]
    best, curves = f1_thresholds(matched(images))
    assert curves["overall"][0].tolist() == [0.9, 0.7, 0.65, 0.6]
    assert curves["overall"][1].tolist() == pytest.approx([2 / 3, 2 / 4, 2 / 5, 4 / 6])
    assert best["overall"]["threshold"] == 0.9
    assert best_f1(np.zeros(0), np.zeros(0, int), 2) == {
        "threshold": None,
        "f1": 0.0,
        "precision": None,
        "recall": 0.0,
        "tp": 0,
        "fp": 0,
        "npos": 2,
    }
