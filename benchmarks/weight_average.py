"""What the moving average of the weights adds: the deployed model (the average) against SGD's own weights of the
same epoch, on the same val images, as deployed (the deploy graph with the run's NMS settings).

Training keeps SGD's own weights of its newest epoch beside the average (ssd-NNNN.sgd.params), so one finished run
answers the question without training twice: the average does not change what SGD does. For each finished run
(`ema_epochs` above 0, `deploy_epoch: last`) prints both VOC07 mAPs, their difference with its paired bootstrap
interval, then the mean over the runs and the CPU.

    .venv/bin/python -m workflow.orchestrator.envs exec mxnet -- \\
        python benchmarks/weight_average.py results/cards_budget-0 results/cards_budget-1 results/cards_budget-2
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from common import cpu_line

from workflow.evaluate import BATCH, detect_records, record_names
from workflow.lib.detector import Detector
from workflow.lib.metrics import MatchedImages, paired_difference


def sgd_detector(run, info):
    """The deploy graph of the deployed epoch with SGD's own weights instead of their average."""
    found = sorted(run.glob(f"train/epoch_*/ssd-{info['epoch']:04d}.sgd.params"))
    if not found:
        sys.exit(f"{run}: no ssd-{info['epoch']:04d}.sgd.params (trained with ema_epochs 0, or not the last epoch)")
    return Detector.from_checkpoint(info, found[0].parent, info["epoch"], weights="sgd.params", batch_size=BATCH)


def matched(detector, run, settings):
    images = len(record_names(run / "pack" / "val.lst"))
    ground_truth, detections = detect_records(detector, run / "pack" / "val.rec", images)
    classes = len(detector.info["classes"])
    return MatchedImages(ground_truth, detections, classes, settings["iou_threshold"], settings["use_difficult"])


def compare(run):
    """(epoch, average's VOC07, SGD's VOC07, the paired difference) of one finished run."""
    deploy_info = run / "deploy" / "deploy.json"
    info = json.loads(deploy_info.read_text())
    settings = json.loads((run / "evaluate" / "metrics.json").read_text())
    averaged = matched(Detector(deploy_info, batch_size=BATCH), run, settings)
    own = matched(sgd_detector(run, info), run, settings)
    difference = paired_difference(averaged, own)
    return info["epoch"], averaged.result().map_voc07, own.result().map_voc07, difference


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="results/<run> folders of finished runs")
    runs = parser.parse_args().runs
    print("| run | epoch | average (deployed) | SGD's own weights | difference (95% paired interval) |")
    print("|---|---|---|---|---|")
    figures = []
    for run in runs:
        epoch, averaged, own, difference = compare(run)
        figures.append((averaged, own))
        interval = f"{difference['difference']:+.3f} ({difference['low']:+.3f} to {difference['high']:+.3f})"
        print(f"| {run.name} | {epoch} | {averaged:.3f} | {own:.3f} | {interval} |")
    averaged, own = np.array(figures).T
    spread = 1 if len(runs) > 1 else 0  # the sample standard deviation, as the sweep's table gives it
    print(
        f"| mean +- sd of {len(runs)} | | {averaged.mean():.3f} +- {averaged.std(ddof=spread):.3f} | "
        f"{own.mean():.3f} +- {own.std(ddof=spread):.3f} | {np.mean(averaged - own):+.3f} |"
    )
    print(f"CPU: {cpu_line()}")


if __name__ == "__main__":
    main()
