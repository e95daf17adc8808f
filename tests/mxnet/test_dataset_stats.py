import numpy as np

from workflow.dataset_stats import best_anchor_iou, box_table, split_summary

RECORDS = [
    {
        "id": "a",
        "width": 200,
        "height": 100,
        "objects": [
            {"class": 0, "box": [0, 0, 100, 50], "difficult": 0},
            {"class": 1, "box": [100, 50, 200, 100], "difficult": 0},
        ],
    },
    {"id": "b", "width": 100, "height": 100, "objects": []},
]


def test_best_anchor_iou_is_exact():
    anchors = np.array([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]])
    boxes = np.array([[0, 0, 0.5, 0.5], [0.5, 0.5, 1.0, 0.75], [0.25, 0, 0.75, 0.5]])
    np.testing.assert_allclose(best_anchor_iou(boxes, anchors), [1.0, 0.5, 1 / 3])


def test_summary_counts_objects_empty_images_and_coverage():
    boxes = box_table(RECORDS, {"train": ["a", "b"]}, ["nike", "adidas"])
    assert boxes[["xmin", "ymin", "xmax", "ymax"]].to_numpy().tolist() == [[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]]
    boxes["best_anchor_iou"] = [0.9, 0.2]
    row = split_summary(boxes, {"train": ["a", "b"]}, ["nike", "adidas"]).iloc[0]
    assert (row.images, row.objects, row.empty_images, row.objects_nike, row.objects_adidas) == (2, 2, 1, 1, 1)
    assert row.anchor_coverage == 0.5 and row.objects_per_image == 1.0
