"""Detection quality from scratch on a CPU: the real workflow on the cards dataset within a training budget.

Runs `snakemake deeplens_artifacts` with the cards train split (296 phone photos, 6 classes) as the dataset and
its test split (67) as val, the chosen network and data shape, and a wall-clock training budget; then prints
VOC mAP@0.5 (area and 11-point) and COCO mAP@0.5:0.95 on the test split, the epochs done, and the IR's
latency per image. The yardstick (issue 8): YOLOv8n from scratch with Ultralytics, same data, same 2 cores,
9 minutes: mAP@0.5 0.39, mAP@0.5:0.95 0.25, 19 ms per image.

    .venv/bin/python benchmarks/cards_benchmark.py --network lite --data-shape 256 --budget-minutes 9

The original model, a few epochs with a resume stop (from scratch here: the public VOC weights cannot be fetched):

    .venv/bin/python benchmarks/cards_benchmark.py --network resnet50 --data-shape 512 --batch-size 4 \
        --learning-rate 0.01 --warmup-epochs 1 --epochs 2 3 --budget-minutes 0 --run cards_resnet50_512
"""

import argparse
import csv
import json
import os

import yaml
from common import REPO, cpu_model, pretrained_for, run_workflow

CARDS = REPO.parent / "shared" / "datasets" / "cards"
YARDSTICK = {"map_area": 0.39, "coco_map": 0.25, "latency_ms": 19.0}


def run_config(args):
    return {
        "run": args.run,
        "dataset": str(CARDS / "train"),
        "val_dataset": str(CARDS / "test"),
        "classes": ["nine", "ten", "jack", "queen", "king", "ace"],
        "network": args.network,
        "pretrained": pretrained_for(args.network),
        "data_shape": args.data_shape,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "warmup_epochs": args.warmup_epochs,
        "lr_steps": args.lr_steps,
        "train_budget_minutes": args.budget_minutes,
        "pack_max_side": 2 * args.data_shape,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="lite")
    parser.add_argument("--data-shape", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--lr-steps", type=int, nargs="*", default=[])
    parser.add_argument(
        "--epochs",
        type=int,
        nargs="+",
        default=[400],
        help="the training stops: the first trains from scratch, each next one resumes to it",
    )
    parser.add_argument("--warmup-epochs", type=int, default=2)
    parser.add_argument("--budget-minutes", type=float, default=9)
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--run", default="cards_benchmark")
    args = parser.parse_args()

    config_path = REPO / "results" / f"{args.run}.yaml"
    config_path.parent.mkdir(exist_ok=True)
    config_path.write_text(yaml.safe_dump(run_config(args)))
    wall = run_workflow("deeplens_artifacts", config_path, args.cores)
    print_summary(REPO / "results" / args.run, args, wall)


def print_summary(results, args, wall):
    metrics = json.loads((results / "evaluate" / "metrics.json").read_text())
    ir = json.loads((results / "ir" / "verify.json").read_text())
    stop = results / "train" / f"epoch_{args.epochs[-1]}" / "log.csv"
    with open(stop, newline="") as handle:
        rows = list(csv.DictReader(handle))
    training_minutes = sum(float(row["seconds"]) for row in rows) / 60
    latency = ir["latency"][f"ir_{ir['precision'].lower()}_ms"]
    print(
        f"\n{args.network} SSD {args.data_shape} px, batch {args.batch_size}, lr {args.learning_rate}, "
        f"budget {args.budget_minutes} min on {args.cores} cores"
    )
    print(f"  epochs done           {rows[-1]['epoch']} ({training_minutes:.1f} min of training and validation)")
    print(f"  test mAP@0.5 (area)   {metrics['map_area']:.4f}   (YOLOv8n: {YARDSTICK['map_area']})")
    print(f"  test mAP@0.5 (VOC07)  {metrics['map_voc07']:.4f}")
    print(f"  test mAP@0.5:0.95     {metrics['coco_map']:.4f}   (YOLOv8n: {YARDSTICK['coco_map']})")
    ran = ir["inference_precision"]["ran"]
    print(
        f"  IR latency per image  {latency:.1f} ms ({ir['precision']} computing in {ran}, resize + inference + NMS; "
        f"YOLOv8n: {YARDSTICK['latency_ms']} ms)"
    )
    if ir["fast_precision"]["supported"]:
        fast = ir["fast_precision"]
        print(
            f"  IR at {fast['ran']}            {fast['ir_ms']:.1f} ms, test mAP (VOC07) {fast['ir_map_voc07']:.4f} "
            f"(this CPU's fast path)"
        )
    print(f"  CPU                   {cpu_model()}")
    print(f"  whole workflow        {wall / 60:.1f} min")
    print("\n  epoch  cls_loss  loc_loss  samples/s  val mAP")
    for row in rows:
        print(
            f"  {row['epoch']:>5}  {float(row['cls_loss']):8.4f}  {float(row['loc_loss']):8.4f}  "
            f"{float(row['samples_per_s']):9.2f}  {float(row['val_map']):7.4f}"
        )


if __name__ == "__main__":
    main()
