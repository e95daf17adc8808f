"""Pre-labelling on the bundled sample: 30 images held back from training, pre-labelled by the model trained on
the rest and scored against their real annotations; then the loop's next run, continued from that model or
from scratch.

    .venv/bin/python benchmarks/prelabel_sample.py [--held-back 30] [--cores 2] [--no-retrain]

Splits data/sample by name into results/prelabel_sample/data/: labelled/ (all but the last --held-back images),
held_back/ (those, with their XML: the truth) and unlabelled/ (the held-back images without XML).

First run (prelabel_sample, default config, trained and validated on labelled/): `snakemake prelabel` on
unlabelled/. Then the held-back images are packed (prelabel_sample-held-back: `snakemake pack` with them as
val_dataset) and the evaluate stage scores the first run's model on them at the threshold the pre-labels used.
Prints precision, recall and F1 at IoU 0.5 of the pre-labels against the truth beside evaluate's, the time per
image and the CPU model.

Next run, as the loop of docs/stages.md, on the whole sample (labelled/ plus the held-back images with their true XML,
standing for the corrected pre-labels): from scratch (the `sample` run of config.yaml) and continued from the
first run's last checkpoint (sample-continued: 30 epochs at learning rate 0.01). The split puts each image in val
by a hash of its name, so their val images are the first run's val images plus held-back ones: none of them was
trained on by either model. Prints the training time and the val mAP with its interval of each.
"""

import argparse
import csv
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import yaml
from common import REPO, cpu_line, run_workflow

sys.path.insert(0, str(REPO))
from workflow.lib.metrics import confusion_matrix, match_image  # noqa: E402

SAMPLE = REPO / "data" / "sample"
WORK = REPO / "results" / "prelabel_sample"
COORDINATES = ("xmin", "ymin", "xmax", "ymax")


def truth_rows(xml_path, classes):
    """Rows [class id, xmin, ymin, xmax, ymax, difficult] of a VOC XML, in its pixels."""
    root = ET.parse(xml_path).getroot()
    return [
        [
            classes.index(obj.find("name").text),
            *(float(obj.find(f"bndbox/{key}").text) for key in COORDINATES),
            int(obj.findtext("difficult", "0")),
        ]
        for obj in root.findall("object")
    ]


def prelabel_rows(xml_path, classes):
    """The pre-labels as detections [class id, score, xmin, ymin, xmax, ymax]: each kept box scores 1."""
    return [[row[0], 1.0, *row[1:5]] for row in truth_rows(xml_path, classes)]


def scores(matrix, classes):
    """Precision and recall per class and pooled from a confusion matrix with background (evaluate's)."""
    n = len(classes)
    table = {name: (matrix[c, c], matrix[:, c].sum(), matrix[c, :].sum()) for c, name in enumerate(classes)}
    table["all classes"] = (np.trace(matrix[:n, :n]), matrix[:, :n].sum(), matrix[:n, :].sum())
    return {
        name: (correct / max(found, 1), correct / max(objects, 1)) for name, (correct, found, objects) in table.items()
    }


def prelabel_scores(classes, iou_threshold):
    """The pre-labels against the truth, matched as evaluate's confusion matrix matches."""
    truths = sorted((WORK / "data" / "held_back" / "Annotations").glob("*.xml"))
    pairs = [
        match_image(
            truth_rows(truth, classes),
            prelabel_rows(WORK / "prelabel" / "Annotations" / truth.name, classes),
            iou_threshold,
        )
        for truth in truths
    ]
    return scores(confusion_matrix(pairs, len(classes)), classes)


def evaluate_scores(classes, iou_threshold, threshold, cores):
    """What evaluate reports for the first run's model on the held-back images at `threshold`."""
    packed = REPO / "results" / "prelabel_sample-held-back"
    data = WORK / "data"
    config = write_config(
        "prelabel_sample-held-back", dataset=str(data / "labelled"), val_dataset=str(data / "held_back")
    )
    run_workflow("pack", config, cores)
    command = [sys.executable, str(REPO / "workflow" / "orchestrator" / "envs.py"), "exec", "mxnet", "--", "python"]
    evaluate = ["-m", "workflow.evaluate", "--deploy", str(WORK / "deploy" / "deploy.json")]
    evaluate += ["--val-rec", str(packed / "pack" / "val.rec"), "--val-lst", str(packed / "pack" / "val.lst")]
    evaluate += ["--iou-threshold", str(iou_threshold), "--no-use-difficult", "--confusion-threshold", str(threshold)]
    evaluate += ["--worst-images", "0", "--bootstrap-resamples", "0", "--out-dir", str(packed / "evaluate")]
    subprocess.run(command + evaluate, check=True, cwd=REPO)
    with open(packed / "evaluate" / "confusion.csv") as handle:
        rows = list(csv.reader(handle))[1:]
    return scores(np.array([[int(v) for v in row[1:]] for row in rows]), classes)


def prepare(held_back):
    shutil.rmtree(WORK / "data", ignore_errors=True)
    stems = sorted(p.stem for p in (SAMPLE / "Annotations").glob("*.xml"))
    for part in ("labelled/Annotations", "labelled/JPEGImages", "held_back/Annotations", "held_back/JPEGImages"):
        (WORK / "data" / part).mkdir(parents=True)
    (WORK / "data" / "unlabelled").mkdir()
    for index, stem in enumerate(stems):
        image, xml = SAMPLE / "JPEGImages" / f"{stem}.jpg", SAMPLE / "Annotations" / f"{stem}.xml"
        part = "labelled" if index < len(stems) - held_back else "held_back"
        shutil.copy2(image, WORK / "data" / part / "JPEGImages")
        shutil.copy2(xml, WORK / "data" / part / "Annotations")
        if part == "held_back":
            shutil.copy2(image, WORK / "data" / "unlabelled")


def stage_seconds(tsv):
    """Wall seconds of a stage from its Snakemake benchmark file."""
    return float(next(csv.DictReader(tsv.read_text().splitlines(), delimiter="\t"))["s"])


def write_config(name, **settings):
    path = WORK / "data" / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"run": name, **settings}))
    return path


def first_run(cores):
    """Train on labelled/ and pre-label unlabelled/: the seconds it took."""
    data = WORK / "data"
    config = write_config("prelabel_sample", dataset=str(data / "labelled"), unlabelled=str(data / "unlabelled"))
    return run_workflow("prelabel", config, cores)


def next_runs(cores):
    """The whole sample from scratch and continued: {run: (training seconds, mAP, interval, val images)}."""
    last_stop = yaml.safe_load((REPO / "config.yaml").read_text())["epochs"][-1]
    continued = {
        "pretrained": str(WORK / "train" / f"epoch_{last_stop}" / "ssd"),
        "epochs": [30],
        "lr_steps": [20],
        "learning_rate": 0.01,
        "warmup_epochs": 0,
    }
    figures = {}
    for name, settings in (("sample", {}), ("sample-continued", continued)):
        run_workflow("evaluate", write_config(name, **settings), cores)
        results = REPO / "results" / name
        seconds = sum(stage_seconds(tsv) for tsv in (results / "benchmarks").glob("train_*.tsv"))
        metrics = json.loads((results / "evaluate" / "metrics.json").read_text())
        figures[name] = (seconds, metrics["map_voc07"], metrics["intervals"]["map_voc07"], metrics["images"])
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--held-back", type=int, default=30)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--retrain", action=argparse.BooleanOptionalAction, default=True, help="the next runs too")
    args = parser.parse_args()
    prepare(args.held_back)
    wall = first_run(args.cores)
    defaults = yaml.safe_load((REPO / "config.yaml").read_text())
    classes = defaults["classes"]
    threshold = json.loads((WORK / "prelabel" / "manifest.json").read_text())["threshold"]
    ours, theirs = (
        prelabel_scores(classes, defaults["iou_threshold"]),
        evaluate_scores(classes, defaults["iou_threshold"], threshold, args.cores),
    )
    seconds = stage_seconds(WORK / "benchmarks" / "prelabel.tsv")
    setting = defaults["prelabel_threshold"]
    print(
        f"\n{args.held_back} held-back sample images, IoU {defaults['iou_threshold']}, score >= {threshold:.3f} "
        f"(prelabel_threshold {setting}):"
    )
    print(f"  {'':12} {'pre-labels P':>12} {'R':>6} {'F1':>6}   {'evaluate P':>10} {'R':>6}")
    for name, (precision, recall) in ours.items():
        f1 = 2 * precision * recall / max(precision + recall, 1e-12)
        print(f"  {name:12} {precision:12.3f} {recall:6.3f} {f1:6.3f}   {theirs[name][0]:10.3f} {theirs[name][1]:6.3f}")
    print(f"  pre-labels and evaluate agree: {'yes' if ours == theirs else 'NO'}")
    print(f"  prelabel stage {seconds:.1f} s: {seconds / args.held_back * 1000:.0f} ms per image (start-up included)")
    print(f"  first run {wall / 60:.1f} min on {args.cores} cores; CPU {cpu_line()}")
    print(f"  check first: {WORK / 'prelabel' / 'index.html'}")
    if args.retrain:
        print("\nNext run on the whole sample (the held-back images with their true XML), val mAP:")
        for name, (train_seconds, value, (low, high), images) in next_runs(args.cores).items():
            interval = f"({low:.2f}-{high:.2f}, {images} images)"
            print(f"  {name:18} training {train_seconds:5.0f} s, val mAP {value:.3f} {interval}")


if __name__ == "__main__":
    main()
