"""evaluate: the deploy model on the whole val set, by the PASCAL VOC devkit definition.

Writes metrics.json (VOC07 11-point mAP, area mAP, COCO-style mAP@0.5:0.95, per-class AP), per_class.csv
and pr_curves.png. A pure function of (model, val records, settings).
"""
import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from workflow.cli import Progress, run_main, log  # noqa: E402
from workflow.detector import Detector, read_records  # noqa: E402
from workflow.metrics import evaluate_detections, per_class_table  # noqa: E402

BATCH = 8


def detect_records(detector, rec_path):
    """Run the detector over every record; return (ground truth per image, detections per image)."""
    records = list(read_records(rec_path))
    progress = Progress("evaluate", len(records))
    ground_truth, detections = [], []
    for start in range(0, len(records), BATCH):
        chunk = records[start:start + BATCH]
        detections += detector.detect([image for image, _ in chunk])
        ground_truth += [gt for _, gt in chunk]
        progress.update(start + len(chunk))
    return ground_truth, detections


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


def clean(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--deploy", required=True, help="deploy.json of the model")
    parser.add_argument("--val-rec", required=True)
    parser.add_argument("--iou-threshold", type=float, default=0.5)
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    detector = Detector(args.deploy, batch_size=BATCH)
    classes = detector.info["classes"]
    ground_truth, detections = detect_records(detector, args.val_rec)
    result = evaluate_detections(ground_truth, detections, len(classes), iou_threshold=args.iou_threshold)
    table = per_class_table(result, classes)
    out = Path(args.out_dir)
    pd.DataFrame(table).to_csv(out / "per_class.csv", index=False)
    plot_pr_curves(result, classes, out / "pr_curves.png")
    metrics = {"images": len(ground_truth), "iou_threshold": args.iou_threshold, "epoch": detector.info["epoch"],
               "map_voc07": clean(result.map_voc07), "map_area": clean(result.map_area), "coco_map": clean(result.coco_map),
               "per_class": [{k: clean(v) for k, v in row.items()} for row in table]}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    log(f"evaluate: {len(ground_truth)} val images, mAP VOC07 {result.map_voc07:.4f}, area {result.map_area:.4f}, "
        f"COCO {result.coco_map:.4f}")


if __name__ == "__main__":
    run_main(main)
