"""Tests of workflow.metrics: the shared PASCAL VOC devkit reference cases, then one hand-made case per rule."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workflow.metrics import evaluate_detections, per_class_table

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared/reference/voc_metric_cases.json"
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
    if not REFERENCE.exists():
        pytest.skip(f"reference file missing: {REFERENCE}")
    return json.loads(REFERENCE.read_text())["cases"]


@pytest.mark.parametrize("use_difficult", [False, True])
def test_reference_cases_equal_devkit(use_difficult):
    suffix = "_use_difficult" if use_difficult else ""
    for index, case in enumerate(reference_cases()):
        result = evaluate_detections(
            [image["gt"] for image in case["images"]], [image["det"] for image in case["images"]],
            case["num_classes"], iou_threshold=case["iou_threshold"], use_difficult=use_difficult)
        for kind, ap_field, map_value in [("voc07_11point", "ap_voc07", result.map_voc07),
                                          ("area", "ap_area", result.map_area)]:
            expected = case["expected_devkit"][kind + suffix]
            got = {f"c{c.class_id}": getattr(c, ap_field) for c in result.per_class}
            got["mAP"] = map_value
            assert got == pytest.approx(expected, abs=1e-9, rel=0), f"case {index} {kind}{suffix}"


# ---------------------------------------------------------------- hand-made cases, one per rule

def test_difficult_match_is_ignored_unless_use_difficult():
    # scores: 0.95 hits nothing, 0.9 hits the difficult box, 0.8 hits the normal box
    images = [([gt(0, UNIT), gt(0, ELSEWHERE, difficult=1)],
               [det(0, 0.95, [9, 9, 10, 10]), det(0, 0.9, ELSEWHERE), det(0, 0.8, UNIT)])]

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
    images = [([gt(0, UNIT)], [det(0, 0.9, UNIT), det(0, 0.8, ELSEWHERE)]),
              ([gt(0, UNIT)], [det(0, 0.7, UNIT)])]
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
    assert list(table.columns) == ["class_id", "name", "ap_voc07", "ap_area", "npos", "tp", "fp",
                                   "precision", "recall"]
    assert rows[0] == {"class_id": 0, "name": "cat", "ap_voc07": 1.0, "ap_area": 1.0, "npos": 1,
                       "tp": 1, "fp": 1, "precision": 0.5, "recall": 1.0}
    assert table.loc[1, "ap_area"] == 0 and "name" not in per_class_table(evaluate(images, 2))[0]


def test_padding_rows_and_empty_images_are_accepted():
    images = [(np.array([gt(0, UNIT), [-1, -1, -1, -1, -1, -1]]), np.array([det(0, 0.9, UNIT), [-1] * 6])),
              (np.zeros((0, 6)), [])]
    result = evaluate(images)
    assert (result.per_class[0].tp, result.per_class[0].fp, result.map_area) == (1, 0, 1.0)
