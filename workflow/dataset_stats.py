"""Dataset statistics per split: images, objects per class and per image, box sizes and aspect ratios, and
how well the network's anchors cover the boxes (share of boxes whose best anchor has IoU >= 0.5).

Writes stats.csv (one row per split), boxes.csv (one row per box) and stats.png for the run report.
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from workflow.lib.cli import log, run_main  # noqa: E402
from workflow.lib.metrics import iou_matrix  # noqa: E402
from workflow.lib.networks import anchor_boxes  # noqa: E402

COVERED_IOU = 0.5


def box_table(records, split_ids, classes):
    rows = []
    by_id = {r["id"]: r for r in records}
    for split, ids in split_ids.items():
        for image_id in ids:
            record = by_id[image_id]
            w, h = record["width"], record["height"]
            for obj in record["objects"]:
                xmin, ymin, xmax, ymax = obj["box"]
                rows.append(
                    {
                        "split": split,
                        "image": image_id,
                        "class": classes[obj["class"]],
                        "xmin": xmin / w,
                        "ymin": ymin / h,
                        "xmax": xmax / w,
                        "ymax": ymax / h,
                        "difficult": obj["difficult"],
                    }
                )
    boxes = pd.DataFrame(rows, columns=["split", "image", "class", "xmin", "ymin", "xmax", "ymax", "difficult"])
    boxes["width"] = boxes["xmax"] - boxes["xmin"]
    boxes["height"] = boxes["ymax"] - boxes["ymin"]
    boxes["size"] = np.sqrt(boxes["width"] * boxes["height"])
    boxes["aspect"] = boxes["width"] / boxes["height"]
    return boxes


def best_anchor_iou(boxes, anchors, chunk=512):
    """For each normalised box, the highest IoU with any anchor (boxes as the network sees them after the resize)."""
    best = np.zeros(len(boxes))
    for start in range(0, len(boxes), chunk):
        best[start : start + chunk] = iou_matrix(boxes[start : start + chunk], anchors).max(axis=1)
    return best


def split_summary(boxes, split_ids, classes):
    rows = []
    for split, ids in split_ids.items():
        part = boxes[boxes["split"] == split]
        per_image = part.groupby("image").size().reindex(ids, fill_value=0)
        row = {
            "split": split,
            "images": len(ids),
            "objects": len(part),
            "objects_per_image": per_image.mean(),
            "max_objects_per_image": int(per_image.max()) if len(ids) else 0,
            "empty_images": int((per_image == 0).sum()),
            "median_box_size": part["size"].median(),
            "anchor_coverage": (part["best_anchor_iou"] >= COVERED_IOU).mean(),
        }
        row.update({f"objects_{name}": int((part["class"] == name).sum()) for name in classes})
        rows.append(row)
    return pd.DataFrame(rows)


def plot(boxes, classes, path):
    figure, axes = plt.subplots(1, 4, figsize=(15, 3.2), dpi=100)
    counts = boxes.groupby(["class", "split"]).size().unstack(fill_value=0).reindex(classes, fill_value=0)
    counts.plot.bar(ax=axes[0], title="objects per class", rot=30)
    for split, part in boxes.groupby("split"):
        axes[1].hist(part["size"], bins=20, range=(0, 1), alpha=0.6, label=split)
        axes[2].hist(np.log2(part["aspect"]), bins=20, range=(-3, 3), alpha=0.6, label=split)
    axes[1].set(title="box size (sqrt of area share)")
    axes[2].set(title="box aspect ratio (log2 w/h)")
    axes[3].hist(boxes["best_anchor_iou"], bins=20, range=(0, 1), color="gray")
    axes[3].axvline(COVERED_IOU, color="red")
    axes[3].set(title=f"best anchor IoU ({(boxes['best_anchor_iou'] >= COVERED_IOU).mean():.0%} >= {COVERED_IOU})")
    for axis in axes[1:3]:
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.dataset_stats", description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotations", required=True)
    parser.add_argument("--train", required=True)
    parser.add_argument("--val", required=True)
    parser.add_argument("--classes", required=True, type=json.loads, help="JSON list of class names")
    parser.add_argument("--network", required=True)
    parser.add_argument("--data-shape", type=int, required=True)
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    classes = args.classes
    split_ids = {name: Path(path).read_text().splitlines() for name, path in (("train", args.train), ("val", args.val))}
    boxes = box_table(json.loads(Path(args.annotations).read_text()), split_ids, classes)
    boxes["best_anchor_iou"] = best_anchor_iou(
        boxes[["xmin", "ymin", "xmax", "ymax"]].to_numpy(), anchor_boxes(args.network, args.data_shape)
    )
    summary = split_summary(boxes, split_ids, classes)
    out = Path(args.out_dir)
    boxes.to_csv(out / "boxes.csv", index=False)
    summary.to_csv(out / "stats.csv", index=False)
    plot(boxes, classes, out / "stats.png")
    for row in summary.itertuples():
        log(
            f"dataset: {row.split}: {row.images} images, {row.objects} objects, "
            f"anchor coverage {row.anchor_coverage:.1%}"
        )


if __name__ == "__main__":
    run_main(main)
