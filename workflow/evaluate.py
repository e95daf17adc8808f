"""evaluate: the deploy model on the whole val set, by the PASCAL VOC devkit definition.

Writes metrics.json (VOC07 11-point mAP, area mAP, COCO-style mAP@0.5:0.95, per-class AP, each with its
bootstrap interval, the F1-optimal score thresholds, the settings used), per_class.csv, pr_curves.png,
f1_curves.png, a confusion matrix with background (confusion.csv, confusion.png), every val image ranked by its
errors (worst_images.csv) and the worst ones drawn (worst/*.jpg, listed in worst_images.json). A pure function
of (model, val records and their .lst, settings).

Intervals: --bootstrap-resamples draws of the val images with replacement (seeded, numpy PCG64), each scored
like the whole set; the interval covers --confidence of the resampled values, bias-corrected (metrics.
percentile_interval: resampled APs run high). They say how much the figure depends on which images happen to be
in val, not how training noise moves it.

Deployed epoch against the last: when the deployed epoch is not the last trained (deploy_epoch: best or a
number), the last epoch's checkpoint is turned into the same deploy graph and scored on the same images; the
paired bootstrap (both models on the same resamples) gives the interval of the mAP difference. An interval that
holds 0 means the val set cannot tell the two epochs apart.

Score threshold: the one that maximises F1 at --iou-threshold over the deployed model's val detections (matched
as in the AP; the highest threshold on ties), over all classes pooled and per class, with its precision and
recall. The artifacts stage gives the pooled one to the device code as its default.

The confusion matrix and the errors take the detections scoring at least --confusion-threshold, matched to
the boxes of any class as metrics.match_image says. Rows are the true class, or background for a detection
matched to nothing (a false alarm); columns the predicted class, or background for a box no detection matched
(a missed object). A box found with the wrong label is a class confusion.
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

from workflow.lib.cli import Progress, UserError, run_main, log, with_interval  # noqa: E402
from workflow.lib.checkpoints import choose_epoch  # noqa: E402
from workflow.lib.drawing import render, truth_rows  # noqa: E402
from workflow.lib.detector import Detector, read_records  # noqa: E402
from workflow.lib.metrics import (
    AP_KEYS,
    MAP_KEYS,
    BACKGROUND,
    MatchedImages,
    above,
    bootstrap_intervals,
    confusion_matrix,
    f1_thresholds,  # noqa: E402
    match_image,
    paired_difference,
    per_class_table,
)

BATCH = 8


def record_names(lst_path):
    """The image path of each record, from the .lst that pack writes with the .rec."""
    return [line.rstrip("\n").split("\t")[-1] for line in Path(lst_path).read_text().splitlines() if line.strip()]


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


def image_errors(pairs):
    """Counts of one image: a detection with the wrong label is both a false positive and a missed object."""
    objects = sum(true != BACKGROUND for true, _ in pairs)
    detections = sum(predicted != BACKGROUND for _, predicted in pairs)
    correct = sum(true == predicted != BACKGROUND for true, predicted in pairs)
    wrong_class = sum(BACKGROUND not in (true, predicted) and true != predicted for true, predicted in pairs)
    false_positives, missed = detections - correct, objects - correct
    return {
        "objects": objects,
        "detections": detections,
        "correct": correct,
        "wrong_class": wrong_class,
        "false_positives": false_positives,
        "missed": missed,
        "errors": false_positives + missed,
    }


def rank_images(pairs_per_image, names):
    """Every image with its counts, the most errors first (ties: more false positives first, then record order)."""
    rows = [
        {"record": index, "image": name, **image_errors(pairs)}
        for index, (name, pairs) in enumerate(zip(names, pairs_per_image))
    ]
    rows.sort(key=lambda row: (-row["errors"], -row["false_positives"], row["record"]))
    return [{"rank": rank, **row} for rank, row in enumerate(rows, 1)]


def draw_worst(rec_path, ranked, ground_truth, shown, classes, count, out_dir, threshold):
    """Draw the `count` worst images that have an error (detections beside the ground truth); return their index."""
    chosen = {row["record"]: row for row in ranked[:count] if row["errors"]}
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = []
    for index, (rgb, _) in enumerate(read_records(rec_path)):
        if index not in chosen:
            continue
        row = chosen[index]
        name = f"{row['rank']:02d}_{Path(row['image']).stem}.jpg"
        notes = (
            f"score >= {threshold:g}: {row['false_positives']} false of {row['detections']}",
            f"ground truth: {row['missed']} missed of {row['objects']}",
        )
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


def class_table(result, classes, matrix, class_intervals, class_f1):
    """per_class_table plus COCO AP, each AP's interval (<ap>_low, <ap>_high), precision/recall of the detections
    at the confusion threshold, and the F1-optimal threshold with its F1, precision and recall."""
    table = []
    for row, cls, intervals, f1 in zip(per_class_table(result, classes), result.per_class, class_intervals, class_f1):
        c = cls.class_id
        aps = {"ap_voc07": row.pop("ap_voc07"), "ap_area": row.pop("ap_area"), "ap_coco": cls.ap_coco}
        bounds = {f"{key}_{side}": value for key in AP_KEYS for side, value in zip(("low", "high"), intervals[key])}
        row = {
            "class_id": c,
            "name": row.pop("name"),
            **aps,
            **bounds,
            **row,
            "precision_at_threshold": _ratio(matrix[c, c], matrix[:, c].sum()),
            "recall_at_threshold": _ratio(matrix[c, c], matrix[c, :].sum()),
            "f1_threshold": f1["threshold"],
            "f1": f1["f1"],
            "f1_precision": f1["precision"],
            "f1_recall": f1["recall"],
        }
        table.append({k: clean(v) for k, v in row.items()})
    return table


def plot_f1_curves(curves, best, classes, path):
    figure, axis = plt.subplots(figsize=(5, 4), dpi=100)
    lines = [("all classes", curves["overall"], best["overall"], 2.0)]
    lines += [(classes[c], curve, best["per_class"][c], 1.0) for c, curve in enumerate(curves["per_class"])]
    for name, (thresholds, f1), chosen, width in lines:
        if not len(thresholds):
            continue
        (line,) = axis.plot(
            thresholds, f1, linewidth=width, label=f"{name} (best {chosen['f1']:.2f} at {chosen['threshold']:.2f})"
        )
        axis.plot([chosen["threshold"]], [chosen["f1"]], "o", color=line.get_color())
    axis.set(xlabel="score threshold", ylabel="F1", xlim=(0, 1), ylim=(0, 1.01), title="F1 on val by score threshold")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def last_epoch_detector(info, segment_dirs):
    """A detector of the last trained epoch, deployed as `info` says; None when that is the deployed epoch."""
    epoch, folder, _ = choose_epoch(segment_dirs, "last")
    if epoch == info["epoch"]:
        return None
    return Detector.from_checkpoint(info, folder, epoch, batch_size=BATCH)


def compare_with_last(deployed, detector, rec_path, images, settings):
    """The deployed model's mAP against the last epoch's on the same val images, with the paired bootstrap."""
    ground_truth, detections = detect_records(detector, rec_path, images)
    last = MatchedImages(
        ground_truth, detections, len(detector.info["classes"]), settings.iou_threshold, settings.use_difficult
    )
    compared = paired_difference(
        deployed, last, settings.bootstrap_resamples, settings.bootstrap_seed, settings.confidence
    )
    distinguishable = compared["low"] is not None and (compared["low"] > 0 or compared["high"] < 0)
    return {
        "last_epoch": detector.info["epoch"],
        "last_map_voc07": clean(last.result().map_voc07),
        **compared,
        "confidence": settings.confidence,
        "distinguishable": distinguishable,
    }


def _ratio(numerator, denominator):
    return float(numerator / denominator) if denominator else float("nan")


def clean(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def evaluate(detector, rec_path, lst_path, out, settings, last_detector=None):
    """Every output of the stage in the folder `out`; returns the metrics written to metrics.json.

    last_detector: the last trained epoch's model when another one is deployed (compared on the same images).
    """
    classes = detector.info["classes"]
    names = record_names(lst_path)
    ground_truth, detections = detect_records(detector, rec_path, len(names))
    if len(names) != len(ground_truth):
        raise UserError(f"{rec_path}: {len(ground_truth)} records but {len(names)} lines in {lst_path}")
    matched = MatchedImages(ground_truth, detections, len(classes), settings.iou_threshold, settings.use_difficult)
    result = matched.result()
    map_intervals, class_intervals = bootstrap_intervals(
        matched, settings.bootstrap_resamples, settings.bootstrap_seed, settings.confidence
    )
    best_f1, f1_curves = f1_thresholds(matched)
    shown = [above(rows, settings.confusion_threshold) for rows in detections]
    pairs = [match_image(g, d, settings.iou_threshold, settings.use_difficult) for g, d in zip(ground_truth, shown)]
    matrix = confusion_matrix(pairs, len(classes))
    labels = classes + ["background"]
    table = class_table(result, classes, matrix, class_intervals, best_f1["per_class"])
    ranked = rank_images(pairs, names)

    pd.DataFrame(table).to_csv(out / "per_class.csv", index=False)
    plot_pr_curves(result, classes, out / "pr_curves.png")
    plot_f1_curves(f1_curves, best_f1, classes, out / "f1_curves.png")
    pd.DataFrame(matrix, index=pd.Index(labels, name="true"), columns=labels).to_csv(out / "confusion.csv")
    plot_confusion(matrix, labels, settings.confusion_threshold, out / "confusion.png")
    pd.DataFrame(ranked).to_csv(out / "worst_images.csv", index=False)
    drawn = draw_worst(
        rec_path,
        ranked,
        ground_truth,
        shown,
        classes,
        settings.worst_images,
        out / "worst",
        settings.confusion_threshold,
    )
    (out / "worst_images.json").write_text(
        json.dumps({"threshold": settings.confusion_threshold, "images": drawn}, indent=1)
    )

    model = {
        key: detector.info[key]
        for key in ("network", "data_shape", "force_nms", "nms_threshold", "nms_topk", "threshold")
    }
    metrics = {
        "images": len(ground_truth),
        "iou_threshold": settings.iou_threshold,
        "use_difficult": settings.use_difficult,
        "confusion_threshold": settings.confusion_threshold,
        "epoch": detector.info["epoch"],
        "model": model,
        **{key: clean(getattr(result, key)) for key in MAP_KEYS},
        "intervals": {key: list(map_intervals[key]) for key in MAP_KEYS},
        "bootstrap": {
            "resamples": settings.bootstrap_resamples,
            "seed": settings.bootstrap_seed,
            "confidence": settings.confidence,
            "method": "bias-corrected percentile, val images drawn with replacement",
        },
        "score_threshold": {
            "iou_threshold": settings.iou_threshold,
            "overall": best_f1["overall"],
            "per_class": dict(zip(classes, best_f1["per_class"])),
        },
        "last_epoch": None,
        "per_class": table,
    }
    if last_detector:
        metrics["last_epoch"] = compare_with_last(matched, last_detector, rec_path, len(names), settings)
        metrics["last_epoch"]["summary"] = last_epoch_note(metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    chosen = best_f1["overall"]
    log(
        f"evaluate: {len(ground_truth)} val images, "
        f"mAP VOC07 {with_interval(result.map_voc07, map_intervals['map_voc07'])}, "
        f"area {with_interval(result.map_area, map_intervals['map_area'])}, "
        f"COCO {with_interval(result.coco_map, map_intervals['coco_map'])} "
        f"({settings.confidence:.0%} bootstrap intervals); "
        f"F1-optimal score threshold {'none' if chosen['threshold'] is None else format(chosen['threshold'], '.3f')} "
        f"(F1 {chosen['f1']:.3f}); "
        f"at confusion_threshold {settings.confusion_threshold}: {matrix[-1, :-1].sum()} false alarms, "
        f"{matrix[:-1, -1].sum()} missed objects, "
        f"{matrix[:-1, :-1].sum() - np.trace(matrix[:-1, :-1])} class confusions"
    )
    if metrics["last_epoch"]:
        log(f"evaluate: {metrics['last_epoch']['summary']}")
    return metrics


def last_epoch_note(metrics):
    """One sentence: does the deployed epoch beat the last one on these val images?"""
    c = metrics["last_epoch"]
    figures = (
        f"deployed epoch {metrics['epoch']} mAP VOC07 {metrics['map_voc07']:.3f} vs last epoch {c['last_epoch']} "
        f"{c['last_map_voc07']:.3f}: difference {c['difference']:+.3f}"
    )
    if c["low"] is None:
        return f"{figures} (no bootstrap resamples: no interval)"
    verdict = (
        "the val set tells them apart"
        if c["distinguishable"]
        else "the val set cannot tell them apart (the interval holds 0)"
    )
    return (
        f"{figures}, {c['confidence']:.0%} paired bootstrap interval {c['low']:+.3f} to {c['high']:+.3f}, higher in "
        f"{c['share_a_higher']:.0%} of {c['resamples']} resamples of the {metrics['images']} images; {verdict}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--deploy", required=True, help="deploy.json of the model")
    parser.add_argument("--val-rec", required=True, help="packed val records")
    parser.add_argument("--val-lst", required=True, help="their .lst (names the images)")
    parser.add_argument("--iou-threshold", type=float, required=True)
    parser.add_argument(
        "--use-difficult",
        action=argparse.BooleanOptionalAction,
        required=True,
        help="count difficult boxes as positives",
    )
    parser.add_argument(
        "--confusion-threshold",
        type=float,
        required=True,
        help="score a detection needs to count in the confusion matrix and the image errors",
    )
    parser.add_argument(
        "--worst-images", type=int, required=True, help="how many of the images with most errors to draw"
    )
    parser.add_argument(
        "--bootstrap-resamples", type=int, required=True, help="resamples of the val images per interval"
    )
    parser.add_argument("--bootstrap-seed", type=int, default=0)
    parser.add_argument("--confidence", type=float, default=0.95, help="coverage of the bootstrap intervals")
    parser.add_argument("--train-dirs", help="comma-separated training segment folders: compare with the last epoch")
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    detector = Detector(args.deploy, batch_size=BATCH)
    last = last_epoch_detector(detector.info, args.train_dirs.split(",")) if args.train_dirs else None
    evaluate(detector, args.val_rec, args.val_lst, out, args, last)


if __name__ == "__main__":
    run_main(main)
