"""Detection quality on a CPU within a training budget: the real workflow on the cards dataset.

Runs `snakemake deeplens_artifacts` with the cards train split (296 phone photos, 6 classes) as the dataset and
its test split (67) as val, the chosen network and data shape (efficientnet_lite0 is finetuned from its ImageNet
weights, the others learn from scratch), int8_ir on, and a wall-clock training budget; then prints VOC07, area and
COCO mAP on the test split with their bootstrap intervals, the epochs done and seconds per epoch, the latency per
image of MXNet, the IR (FP16, INT8) and model.onnx (one run, in turns), and the CPU's model name and flags. The
yardstick (issue 8): YOLOv8n from scratch with Ultralytics, same data, same 2 cores, 9 minutes: mAP@0.5 0.39,
mAP@0.5:0.95 0.25, 19 ms per image.

    .venv/bin/python benchmarks/cards_benchmark.py                     # the default: efficientnet_lite0 at 320
    .venv/bin/python benchmarks/cards_benchmark.py --network lite --epochs 400 --lr-steps 40 50 \
        --run cards_lite                                               # lite from scratch, beside it

The original model, a few epochs with a resumed segment (from scratch here: the public VOC weights cannot be fetched):

    .venv/bin/python benchmarks/cards_benchmark.py --network resnet50 --data-shape 512 --batch-size 4 \
        --learning-rate 0.01 --warmup-epochs 1 --epochs 2 3 --budget-minutes 0 --run cards_resnet50_512
"""

import argparse
import csv
import json
import os

import yaml
from common import REPO, cpu_line, pretrained_for, run_workflow, with_interval

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
        "int8_ir": True,
        **({"freeze": args.freeze} if args.freeze is not None else {}),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="efficientnet_lite0")
    parser.add_argument("--data-shape", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--lr-steps", type=int, nargs="*", default=[26])
    parser.add_argument(
        "--epochs",
        type=int,
        nargs="+",
        default=[32],
        help="the training segments' end epochs: the first trains from scratch, each next one resumes to it",
    )
    parser.add_argument("--warmup-epochs", type=int, default=2)
    parser.add_argument("--freeze", help="regex of the parameters kept fixed (default: config.yaml's freeze)")
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
    ir = json.loads((results / "verify_ir" / "verify.json").read_text())
    last_log = results / "train" / f"epoch_{args.epochs[-1]}" / "log.csv"
    with open(last_log, newline="") as handle:
        rows = list(csv.DictReader(handle))
    seconds = [float(row["seconds"]) for row in rows]
    print(
        f"\n{args.network} SSD {args.data_shape} px, batch {args.batch_size}, lr {args.learning_rate}, "
        f"budget {args.budget_minutes} min on {args.cores} cores"
    )
    print(f"  epochs done           {rows[-1]['epoch']} ({sum(seconds) / 60:.1f} min of training and validation)")
    print(f"  seconds per epoch     {sum(seconds) / len(seconds):.1f} (training and validation)")
    images = metrics["images"]
    for key, name in (
        ("map_voc07", "mAP@0.5 (VOC07)"),
        ("map_area", "mAP@0.5 (area) "),
        ("coco_map", "mAP@0.5:0.95   "),
    ):
        yardstick = f"   (YOLOv8n: {YARDSTICK[key]})" if key in YARDSTICK else ""
        print(f"  test {name}  {with_interval(metrics[key], metrics['intervals'][key], images)}{yardstick}")
    for weights in ("FP16", "INT8"):
        ms = ir["latency"].get(f"ir_{weights.lower()}_ms")
        if ms is not None:
            print(f"  IR {weights} per image    {ms:.1f} ms (resize + inference + NMS)")
    print(f"  MXNet per image       {ir['latency']['mxnet_fp32_ms']:.1f} ms   (YOLOv8n: {YARDSTICK['latency_ms']} ms)")
    onnx = json.loads((results / "export_onnx" / "verify.json").read_text())
    print(
        f"  ONNX per image        {ir['latency']['onnx_fp32_ms']:.1f} ms (onnxruntime, NMS inside; "
        f"{onnx['agreement']:.1%} paired with MXNet, mAP {onnx['onnx_map_voc07']:.4f})"
    )
    if "int8" in ir:
        print(f"  INT8 mAP drop         {ir['int8']['map_drop']:.4f} (budget {ir['int8']['max_map_drop']})")
    print(f"  CPU                   {cpu_line(ir['cpu'])}")
    print(f"  whole workflow        {wall / 60:.1f} min")
    print("\n  epoch  cls_loss  loc_loss  samples/s  val mAP")
    for row in rows:
        print(
            f"  {row['epoch']:>5}  {float(row['cls_loss']):8.4f}  {float(row['loc_loss']):8.4f}  "
            f"{float(row['samples_per_s']):9.2f}  {float(row['val_map']):7.4f}"
        )


if __name__ == "__main__":
    main()
