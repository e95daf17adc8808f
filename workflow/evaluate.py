"""evaluate: the deploy model on the whole val set, by the PASCAL VOC devkit definition.

Writes metrics.json (VOC07 11-point mAP, area mAP, COCO-style mAP@0.5:0.95, per-class AP, the settings used),
per_class.csv, pr_curves.png, a confusion matrix with background (confusion.csv, confusion.png), every val
image ranked by its errors (worst_images.csv) and the worst ones drawn (worst/*.jpg, listed in
worst_images.json). A pure function of (model, val records with their .lst, settings).

The confusion matrix and the errors take the detections scoring at least --confusion-threshold. In each image
they are matched in descending score order, each to the not yet matched ground-truth box of any class with the
highest IoU, which must be above --iou-threshold; each box is matched at most once. Rows are the true class,
or background for a detection matched to nothing (a false alarm); columns the predicted class, or background
for a box no detection matched (a missed object). A box found with the wrong label is a class confusion. Unless
--use-difficult, difficult boxes and the detections matched to them are left out, as in the mAP.
"""
import argparse
import itertools
import json
import math
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from workflow.cli import Progress, UserError, run_main, log  # noqa: E402
from workflow.demo import render, truth_rows  # noqa: E402
from workflow.detector import Detector, read_records  # noqa: E402
from workflow.metrics import evaluate_detections, iou_matrix, per_class_table  # noqa: E402

BATCH = 8
BACKGROUND = -1  # the class of a false alarm's (missing) box and of a missed box's (missing) detection


def record_names(rec_path):
    """The image path of each record, from the .lst that pack writes beside the .rec."""
    lst = Path(rec_path).with_suffix(".lst")
    if not lst.exists():
        raise UserError(f"{lst}: missing; evaluate names the val images from the .lst written beside the .rec")
    return [line.rstrip("\n").split("\t")[-1] for line in lst.read_text().splitlines() if line.strip()]


def detect_records(detector, rec_path, total):
    """Run the detector over every record, BATCH at a time; return (ground truth per image, detections per image)."""
    progress = Progress("evaluate", total)
    ground_truth, detections = [], []
    records = read_records(rec_path)
    while chunk := list(itertools.islice(records, BATCH)):
        detections += detector.detect([image for image, _ in chunk])
        ground_truth += [gt for _, gt in chunk]
        progress.update(len(ground_truth))
    return ground_truth, detections


def above(detections, threshold):
    """Each image's detections scoring at least threshold."""
    return [rows[rows[:, 1] >= threshold] for rows in detections]


def match_image(truth, found, iou_threshold, use_difficult=False):
    """(true class, predicted class) pairs of one image, BACKGROUND where a side is missing (module docstring).

    truth: rows [cls, xmin, ymin, xmax, ymax, difficult]; found: rows [cls, score, xmin, ymin, xmax, ymax],
    already cut at the score threshold.
    """
    truth = np.asarray(truth, dtype=float).reshape(-1, 6)
    found = np.asarray(found, dtype=float).reshape(-1, 6)
    found = found[np.argsort(-found[:, 1], kind="stable")]
    left_out = (truth[:, 5] > 0) & (not use_difficult)
    ious = iou_matrix(found[:, 2:6], truth[:, 1:5])
    taken = np.zeros(len(truth), bool)
    pairs = []
    for d, row in enumerate(found):
        candidates = np.where(taken, -1.0, ious[d])
        g = int(np.argmax(candidates)) if len(truth) else -1
        if g >= 0 and candidates[g] > iou_threshold:
            taken[g] = True
            if not left_out[g]:
                pairs.append((int(truth[g, 0]), int(row[0])))
        else:
            pairs.append((BACKGROUND, int(row[0])))
    pairs += [(int(truth[g, 0]), BACKGROUND) for g in np.flatnonzero(~taken & ~left_out)]
    return pairs


def confusion_matrix(pairs_per_image, num_classes):
    """(num_classes + 1) square counts: rows true class, columns predicted class, the last of each background."""
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=int)
    for pairs in pairs_per_image:
        for true, predicted in pairs:
            matrix[true, predicted] += 1  # BACKGROUND = -1 indexes the last row and column
    return matrix


def image_errors(pairs):
    """Counts of one image: a detection with the wrong label is both a false positive and a missed object."""
    objects = sum(true != BACKGROUND for true, _ in pairs)
    detections = sum(predicted != BACKGROUND for _, predicted in pairs)
    correct = sum(true == predicted != BACKGROUND for true, predicted in pairs)
    wrong_class = sum(BACKGROUND not in (true, predicted) and true != predicted for true, predicted in pairs)
    false_positives, missed = detections - correct, objects - correct
    return {"objects": objects, "detections": detections, "correct": correct, "wrong_class": wrong_class,
            "false_positives": false_positives, "missed": missed, "errors": false_positives + missed}


def rank_images(pairs_per_image, names):
    """Every image with its counts, the most errors first (ties: more false positives first, then record order)."""
    rows = [{"record": index, "image": name, **image_errors(pairs)}
            for index, (name, pairs) in enumerate(zip(names, pairs_per_image))]
    rows.sort(key=lambda row: (-row["errors"], -row["false_positives"], row["record"]))
    return [{"rank": rank, **row} for rank, row in enumerate(rows, 1)]


def draw_worst(rec_path, ranked, ground_truth, shown, classes, count, out_dir):
    """Draw the `count` worst images that have an error (detections beside the ground truth); return their index."""
    chosen = {row["record"]: row for row in ranked[:count] if row["errors"]}
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = []
    for index, (rgb, _) in enumerate(read_records(rec_path)):
        if index not in chosen:
            continue
        row = chosen[index]
        name = f"{row['rank']:02d}_{Path(row['image']).stem}.jpg"
        notes = (f"detections: {row['false_positives']} false of {row['detections']}",
                 f"ground truth: {row['missed']} missed of {row['objects']}")
        picture = render(rgb, shown[index], truth_rows(ground_truth[index]), classes, notes)
        cv2.imwrite(str(out_dir / name), picture, [cv2.IMWRITE_JPEG_QUALITY, 90])
        drawn.append({**row, "output": f"{out_dir.name}/{name}"})
    return sorted(drawn, key=lambda row: row["rank"])


def plot_pr_curves(result, classes, path):
    figure, axis = plt.subplots(figsize=(5, 4), dpi=100)
    for cls in result.per_class:
        if len(cls.recall_curve):
            axis.plot(cls.recall_curve, cls.precision_curve, label=f"{classes[cls.class_id]} (AP {cls.ap_area:.3f})")
    axis.set(xlabel="recall", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.01), title="Precision-recall on val")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def plot_confusion(matrix, labels, threshold, path):
    size = 2.2 + 0.6 * len(labels)
    figure, axis = plt.subplots(figsize=(size + 1, size), dpi=100)
    image = axis.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        text = "-" if row == column == len(labels) - 1 else str(count)  # background as background is not counted
        axis.text(column, row, text, ha="center", va="center", color=colour)
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set(xlabel="predicted", ylabel="true", title=f"Confusion on val (score >= {threshold})")
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def class_table(result, classes, matrix):
    """per_class_table plus COCO AP and precision/recall of the detections at the confusion threshold."""
    table = []
    for row, cls in zip(per_class_table(result, classes), result.per_class):
        c = cls.class_id
        row = {"class_id": c, "name": row.pop("name"), "ap_voc07": row.pop("ap_voc07"), "ap_area": row.pop("ap_area"),
               "ap_coco": cls.ap_coco, **row,
               "precision_at_threshold": _ratio(matrix[c, c], matrix[:, c].sum()),
               "recall_at_threshold": _ratio(matrix[c, c], matrix[c, :].sum())}
        table.append({k: clean(v) for k, v in row.items()})
    return table


def _ratio(numerator, denominator):
    return float(numerator / denominator) if denominator else float("nan")


def clean(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def evaluate(detector, rec_path, out, settings):
    """Every output of the stage in the folder `out`; returns the metrics written to metrics.json."""
    classes = detector.info["classes"]
    names = record_names(rec_path)
    ground_truth, detections = detect_records(detector, rec_path, len(names))
    if len(names) != len(ground_truth):
        raise UserError(f"{rec_path}: {len(ground_truth)} records but {len(names)} lines in its .lst")
    result = evaluate_detections(ground_truth, detections, len(classes), iou_threshold=settings.iou_threshold,
                                 use_difficult=settings.use_difficult)
    shown = above(detections, settings.confusion_threshold)
    pairs = [match_image(g, d, settings.iou_threshold, settings.use_difficult) for g, d in zip(ground_truth, shown)]
    matrix = confusion_matrix(pairs, len(classes))
    labels = classes + ["background"]
    table = class_table(result, classes, matrix)
    ranked = rank_images(pairs, names)

    pd.DataFrame(table).to_csv(out / "per_class.csv", index=False)
    plot_pr_curves(result, classes, out / "pr_curves.png")
    pd.DataFrame(matrix, index=pd.Index(labels, name="true"), columns=labels).to_csv(out / "confusion.csv")
    plot_confusion(matrix, labels, settings.confusion_threshold, out / "confusion.png")
    pd.DataFrame(ranked).to_csv(out / "worst_images.csv", index=False)
    drawn = draw_worst(rec_path, ranked, ground_truth, shown, classes, settings.worst_images, out / "worst")
    (out / "worst_images.json").write_text(json.dumps({"threshold": settings.confusion_threshold, "images": drawn}, indent=1))

    model = {key: detector.info[key] for key in ("network", "data_shape", "force_nms", "nms_threshold", "nms_topk", "threshold")}
    metrics = {"images": len(ground_truth), "iou_threshold": settings.iou_threshold, "use_difficult": settings.use_difficult,
               "confusion_threshold": settings.confusion_threshold, "epoch": detector.info["epoch"], "model": model,
               "map_voc07": clean(result.map_voc07), "map_area": clean(result.map_area), "coco_map": clean(result.coco_map),
               "per_class": table}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    log(f"evaluate: {len(ground_truth)} val images, mAP VOC07 {result.map_voc07:.4f}, area {result.map_area:.4f}, "
        f"COCO {result.coco_map:.4f}; at score >= {settings.confusion_threshold}: {matrix[-1, :-1].sum()} false alarms, "
        f"{matrix[:-1, -1].sum()} missed objects, {matrix[:-1, :-1].sum() - np.trace(matrix[:-1, :-1])} class confusions")
    return metrics


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--deploy", required=True, help="deploy.json of the model")
    parser.add_argument("--val-rec", required=True, help="packed val records (with the .lst beside them)")
    parser.add_argument("--iou-threshold", type=float, default=0.5)
    parser.add_argument("--use-difficult", choices=["yes", "no"], default="no", help="count difficult boxes as positives")
    parser.add_argument("--confusion-threshold", type=float, default=0.5,
                        help="score a detection needs to count in the confusion matrix and the image errors")
    parser.add_argument("--worst-images", type=int, default=6, help="how many of the images with most errors to draw")
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    args.use_difficult = args.use_difficult == "yes"
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    evaluate(Detector(args.deploy, batch_size=BATCH), args.val_rec, out, args)


if __name__ == "__main__":
    run_main(main)
