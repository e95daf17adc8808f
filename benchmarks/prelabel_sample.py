"""Pre-labelling on the bundled sample: 30 images held back from training, pre-labelled by the model trained on
the rest, and scored against their real annotations.

    .venv/bin/python benchmarks/prelabel_sample.py [--held-back 30] [--cores 2]

Copies data/sample into results/prelabel_sample/data/ (labelled: all but the last --held-back images by name;
unlabelled: those images, their XML kept apart as the truth), runs `snakemake prelabel` with the default config
on it, and prints precision, recall and F1 at IoU 0.5 of the pre-labels against the truth, the time per image
and the CPU model.
"""

import argparse
import csv
import shutil
import sys
import xml.etree.ElementTree as ET

import numpy as np
import yaml
from common import REPO, cpu_model, run_workflow

sys.path.insert(0, str(REPO))
from workflow.lib.metrics import evaluate_detections  # noqa: E402

SAMPLE = REPO / "data" / "sample"
WORK = REPO / "results" / "prelabel_sample"
COORDINATES = ("xmin", "ymin", "xmax", "ymax")


def boxes(xml_path, classes):
    """Rows [class id, xmin, ymin, xmax, ymax, difficult] of a VOC XML (ours, or the sample's)."""
    root = ET.parse(xml_path).getroot()
    return [
        [
            classes.index(obj.find("name").text),
            *(float(obj.find(f"bndbox/{key}").text) for key in COORDINATES),
            int(obj.findtext("difficult", "0")),
        ]
        for obj in root.findall("object")
    ]


def precision_recall(truths, prelabels, classes):
    """Pooled precision and recall of the pre-labels, matched to the truth as evaluate's metric matches (IoU > 0.5,
    one detection per box); the pre-labels carry no score, so each counts as 1."""
    detections = [
        np.array([[row[0], 1.0, *row[1:5]] for row in rows], dtype=np.float32).reshape(-1, 6) for rows in prelabels
    ]
    result = evaluate_detections(
        [np.array(t, dtype=np.float32).reshape(-1, 6) for t in truths], detections, len(classes)
    )
    tp, fp, npos = (sum(getattr(c, key) for c in result.per_class) for key in ("tp", "fp", "npos"))
    return tp / max(tp + fp, 1), tp / max(npos, 1), tp + fp, npos


def prepare(held_back):
    shutil.rmtree(WORK / "data", ignore_errors=True)
    stems = sorted(p.stem for p in (SAMPLE / "Annotations").glob("*.xml"))
    for part in ("labelled/Annotations", "labelled/JPEGImages", "unlabelled", "truth"):
        (WORK / "data" / part).mkdir(parents=True)
    for index, stem in enumerate(stems):
        image, xml = SAMPLE / "JPEGImages" / f"{stem}.jpg", SAMPLE / "Annotations" / f"{stem}.xml"
        if index < len(stems) - held_back:
            shutil.copy2(image, WORK / "data" / "labelled" / "JPEGImages")
            shutil.copy2(xml, WORK / "data" / "labelled" / "Annotations")
        else:
            shutil.copy2(image, WORK / "data" / "unlabelled")
            shutil.copy2(xml, WORK / "data" / "truth")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--held-back", type=int, default=30)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    prepare(args.held_back)
    config = {
        "run": "prelabel_sample",
        "dataset": str(WORK / "data" / "labelled"),
        "unlabelled": str(WORK / "data" / "unlabelled"),
    }
    (WORK / "config.yaml").write_text(yaml.safe_dump(config))
    wall = run_workflow("prelabel", WORK / "config.yaml", args.cores)
    results = REPO / "results" / "prelabel_sample"
    defaults = yaml.safe_load((REPO / "config.yaml").read_text())
    classes = defaults["classes"]
    truths = sorted((WORK / "data" / "truth").glob("*.xml"))
    prelabels = [boxes(results / "prelabel" / "Annotations" / truth.name, classes) for truth in truths]
    precision, recall, predicted, expected = precision_recall([boxes(t, classes) for t in truths], prelabels, classes)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    with open(results / "benchmarks" / "prelabel.tsv") as handle:
        seconds = float(next(csv.DictReader(handle, delimiter="\t"))["s"])
    print(
        f"\npre-labels of {args.held_back} held-back sample images (prelabel_threshold "
        f"{defaults['prelabel_threshold']}):"
    )
    print(f"  boxes {predicted} (truth {expected}), precision {precision:.3f}, recall {recall:.3f}, F1 {f1:.3f}")
    print(f"  prelabel stage {seconds:.1f} s: {seconds / args.held_back * 1000:.0f} ms per image (start-up included)")
    print(f"  whole run {wall / 60:.1f} min on {args.cores} cores; CPU {cpu_model()}")
    print(f"  check first: {results / 'prelabel' / 'index.html'}")


if __name__ == "__main__":
    main()
