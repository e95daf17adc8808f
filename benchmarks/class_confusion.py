"""Where a deployed model's mAP goes: NMS across classes (force_nms, as deployed) against NMS per class, and which
anchor layer gives the box that NMS across classes keeps on each true object, of the right class or another.

    .venvs/mxnet-*/bin/python benchmarks/class_confusion.py results/<run> [results/<run> ...]

For each run folder (its deploy/deploy.json and pack/val.rec): VOC07 of the deployed network's outputs
post-processed by the deploy graph's MultiBoxDetection with force_suppress on and off (everything else as deployed),
then, for every true object, the highest-scoring anchor whose decoded box overlaps it at IoU >= 0.5: NMS across classes
keeps that box, so the object is found under its own class only when that anchor's best class is right. A wrong
winner is counted with the layer of its anchor (1 is the finest), and where the right class's best box came from;
the objects with a wrong winner are listed with the number of runs they have one in.
"""

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflow.evaluate import record_names  # noqa: E402
from workflow.lib import networks, proof  # noqa: E402
from workflow.lib.detector import Detector, read_records  # noqa: E402
from workflow.lib.metrics import evaluate_detections, iou_matrix  # noqa: E402


def winners(truth, class_prob, offsets, anchors, layer_ends, variances):
    """(object index, layer of the winning anchor, its class, layer of the right class's best anchor or None) per
    true object that some anchor's box overlaps at IoU >= 0.5."""
    boxes = proof.decode(offsets, anchors, variances)
    best_class, best_score = class_prob[:, 1:].argmax(1), class_prob[:, 1:].max(1)
    overlaps = iou_matrix(truth[:, 1:5], boxes)
    found = []
    for index, (row, overlap) in enumerate(zip(truth, overlaps)):
        candidates = np.flatnonzero(overlap >= 0.5)
        if len(candidates) == 0:
            continue
        winner = candidates[np.argmax(best_score[candidates])]
        right = candidates[best_class[candidates] == int(row[0])]
        right_layer = _layer(right[np.argmax(best_score[right])], layer_ends) if len(right) else None
        found.append((index, _layer(winner, layer_ends), best_class[winner], right_layer))
    return found


def _layer(anchor, layer_ends):
    return int(np.searchsorted(layer_ends, anchor, side="right")) + 1


def diagnose(run):
    detector = Detector(run / "deploy" / "deploy.json")
    settings, anchors = detector.settings, detector.anchors
    info = detector.info
    layer_ends = np.cumsum([len(layer) for layer in networks.anchor_layers(info["network"], info["data_shape"])])
    if layer_ends[-1] != len(anchors):
        sys.exit(
            f"{run}: the deploy graph has {len(anchors)} anchors, {info['network']} in this checkout {layer_ends[-1]}"
        )
    truths, deployed, per_class = [], [], []
    by_layer, right_best_at, misread = collections.Counter(), collections.Counter(), set()
    names = info["classes"]
    images = [Path(path).name for path in record_names(run / "pack" / "val.lst")]
    for image, (rgb, truth) in zip(images, read_records(run / "pack" / "val.rec")):
        class_prob, offsets = detector.network_outputs(rgb)
        truths.append(truth)
        deployed.append(detector.postprocess(class_prob, offsets, force_nms=True))
        per_class.append(detector.postprocess(class_prob, offsets, force_nms=False))
        for index, layer, winner_class, right_layer in winners(
            truth, class_prob, offsets, anchors, layer_ends, settings["variances"]
        ):
            right = winner_class == int(truth[index, 0])
            by_layer[layer, right] += 1
            if not right:
                right_best_at[right_layer] += 1
                misread.add(f"{image} object {index + 1}: {names[int(truth[index, 0])]} read as {names[winner_class]}")
    classes = len(info["classes"])
    return {
        "images": len(truths),
        "force_nms": evaluate_detections(truths, deployed, classes).map_voc07,
        "per_class": evaluate_detections(truths, per_class, classes).map_voc07,
        "by_layer": by_layer,
        "right_best_at": right_best_at,
        "misread": misread,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="results/<run> folders")
    args = parser.parse_args()
    print(
        "| run | images | VOC07 force_nms | VOC07 NMS per class | winners right / wrong, by anchor layer | "
        "wrong winners: the right class's best box at layer |"
    )
    print("|---|---|---|---|---|---|")
    misread = collections.Counter()
    for run in args.runs:
        result = diagnose(run)
        misread.update(result["misread"])
        counts = result["by_layer"]
        layers = sorted({layer for layer, _ in counts})
        by_layer = ", ".join(f"{layer}: {counts[layer, True]} / {counts[layer, False]}" for layer in layers)
        where = ", ".join(f"{layer or 'none'}: {n}" for layer, n in sorted(result["right_best_at"].items(), key=str))
        print(
            f"| {run.name} | {result['images']} | {result['force_nms']:.3f} | {result['per_class']:.3f} | "
            f"{by_layer} | {where or '-'} |"
        )
    print(f"\nObjects whose winner is of another class, in how many of the {len(args.runs)} runs:")
    for what, runs in sorted(misread.items(), key=lambda item: (-item[1], item[0])):
        print(f"  {runs}  {what}")


if __name__ == "__main__":
    main()
