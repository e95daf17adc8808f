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
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
WORK = REPO / "results" / "prelabel_sample"


def boxes(xml_path):
    root = ET.parse(xml_path).getroot()
    return [
        (obj.find("name").text, *(float(obj.find(f"bndbox/{key}").text) for key in ("xmin", "ymin", "xmax", "ymax")))
        for obj in root.findall("object")
    ]


def iou(a, b):
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def matches(predicted, truth, threshold=0.5):
    """True positives of one image: each true box matched at most once, by the same class and IoU > threshold."""
    free = list(truth)
    found = 0
    for name, *box in predicted:
        best = max((t for t in free if t[0] == name), key=lambda t: iou(box, t[1:]), default=None)
        if best is not None and iou(box, best[1:]) > threshold:
            free.remove(best)
            found += 1
    return found


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


def cpu_model():
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


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
    started = time.monotonic()
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(REPO),
        "--cores",
        str(args.cores),
        "prelabel",
        "--configfile",
        str(WORK / "config.yaml"),
    ]
    subprocess.run(command, check=True)
    wall = time.monotonic() - started
    results = REPO / "results" / "prelabel_sample"
    true_positives = predicted = expected = 0
    for truth in sorted((WORK / "data" / "truth").glob("*.xml")):
        mine = boxes(results / "prelabel" / "Annotations" / truth.name)
        real = boxes(truth)
        true_positives += matches(mine, real)
        predicted, expected = predicted + len(mine), expected + len(real)
    precision, recall = true_positives / max(predicted, 1), true_positives / max(expected, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    with open(results / "benchmarks" / "prelabel.tsv") as handle:
        seconds = float(next(csv.DictReader(handle, delimiter="\t"))["s"])
    threshold = yaml.safe_load((REPO / "config.yaml").read_text())["prelabel_threshold"]
    print(f"\npre-labels of {args.held_back} held-back sample images (prelabel_threshold {threshold}):")
    print(f"  boxes {predicted} (truth {expected}), precision {precision:.3f}, recall {recall:.3f}, F1 {f1:.3f}")
    print(f"  prelabel stage {seconds:.1f} s: {seconds / args.held_back * 1000:.0f} ms per image (start-up included)")
    print(f"  whole run {wall / 60:.1f} min on {args.cores} cores; CPU {cpu_model()}")
    print(f"  check first: {results / 'prelabel' / 'index.html'}")


if __name__ == "__main__":
    main()
