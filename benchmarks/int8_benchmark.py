"""INT8 against FP32 on this CPU: latency ratios and mAP drops of the quantize stage's IR, and where the time goes.

cards (the CPU preset, lite at 256): the real workflow on the cards dataset (train split to train and calibrate,
test split as val) with int8_ir on, as benchmarks/cards_benchmark.py runs it (same options; a finished run with
the same settings is reused) up to verify_ir, then its side by side and the time per image split into resize,
inference and NMS for the FP32 IR (computing in f32) and the INT8 IR.

    .venv/bin/python benchmarks/int8_benchmark.py cards --budget-minutes 9

resnet50 512: the original network with random weights (speed only: its mAP, near 0, says nothing), quantized by
the same stage on the cards records of a cards run, timed the same way.

    .venv/bin/python benchmarks/int8_benchmark.py resnet50 --records results/cards_benchmark/pack

Both print the CPU's model name and ISA flags. Inside the stage environments the script runs its own helpers
(`checkpoint` in the mxnet environment, `time` in the optimizer environment).
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from workflow.lib import cpu  # noqa: E402

CARDS_CLASSES = ["nine", "ten", "jack", "queen", "king", "ace"]
WARMUP, RUNS = 5, 30


def in_env(env, *args):
    """`python ARGS` in a stage environment; its output to the terminal, its last line returned."""
    command = [sys.executable, "-m", "workflow.orchestrator.envs", "exec", env, "--", "python", *args]
    result = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True, check=True)
    print(result.stdout, end="")
    return result.stdout.splitlines()[-1]


# ---------------------------------------------------------------- helpers run inside the stage environments


def make_checkpoint(args):
    """(mxnet env) A deploy checkpoint of `network` with random weights and its deploy.json."""
    import mxnet as mx

    from workflow.lib import networks

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    symbol = networks.build_deploy_symbol(args.network, len(CARDS_CLASSES), args.data_shape)
    module = mx.mod.Module(symbol, data_names=["data"], label_names=None)
    module.bind(data_shapes=[("data", (1, 3, args.data_shape, args.data_shape))], for_training=False)
    mx.random.seed(0)
    module.init_params(mx.init.Xavier(magnitude=2))
    module.save_checkpoint(str(out / "deploy"), 0)
    info = {
        "symbol": "deploy-symbol.json",
        "params": "deploy-0000.params",
        "epoch": 0,
        "data_shape": args.data_shape,
        "network": args.network,
        "classes": CARDS_CLASSES,
        "threshold": 0.01,
        "input": {"mean_rgb": list(networks.MEAN_RGB)},
    }
    (out / "deploy.json").write_text(json.dumps(info))
    print(out / "deploy.json")


def time_split(args):
    """(optimizer env) The FP32 IR (converted here) and the INT8 IR on the val records: mAP, and the median ms per
    image of resize, inference and NMS apart and together, the two models taking turns."""
    import cv2
    import numpy as np

    from workflow.lib import model_optimizer
    from workflow.device import infer
    from workflow.lib.detector import read_records
    from workflow.lib.metrics import evaluate_detections
    from workflow.verify_ir import cpu_description

    deploy = json.loads(Path(args.deploy).read_text())
    int8, int8_contract = infer.load(args.int8_ir)
    work = Path(args.work)
    mean = "--mean-in-ir" if int8_contract["mean_in_ir"] else "--no-mean-in-ir"
    xml = model_optimizer.optimize(
        model_optimizer.parse_args(
            ["--deploy", args.deploy, "--precision", "FP32", "--color", int8_contract["color_order"], mean]
            + ["--out-dir", str(work), "--model-name", "fp32", "--log", str(work / "mo.log")]
        )
    )
    fp32, fp32_contract = infer.load(xml)
    records = [(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), truth) for rgb, truth in read_records(args.val_rec)]
    models = {"FP32 IR (f32)": (fp32, fp32_contract), "INT8 IR": (int8, int8_contract)}
    result = {"images": len(records), "cpu": cpu_description(int8)}
    for name, (compiled, contract) in models.items():
        detections = [
            np.array(infer.detect(compiled, image, contract, deploy["threshold"]), np.float32).reshape(-1, 6)
            for image, _ in records
        ]
        truths = [truth for _, truth in records]
        result[name] = {"map_voc07": evaluate_detections(truths, detections, len(deploy["classes"])).map_voc07}
    image = records[0][0]
    steps = {}
    for name, (compiled, contract) in models.items():
        tensor = infer.preprocess(image, contract)
        outputs = infer.network_outputs(compiled, tensor, contract)
        steps[name] = {
            "resize": lambda c=contract: infer.preprocess(image, c),
            "inference": lambda m=compiled, t=tensor, c=contract: infer.network_outputs(m, t, c),
            "nms": lambda c=contract, o=outputs: infer.multibox_detection(*o, c),
            "total": lambda m=compiled, c=contract: infer.detect(m, image, c, args.min_score),
        }
    calls = [(name, step, function) for name, functions in steps.items() for step, function in functions.items()]
    for _, _, function in calls:
        for _ in range(WARMUP):
            function()
    times = {(name, step): [] for name, step, _ in calls}
    for _ in range(RUNS):
        for name, step, function in calls:
            start = time.perf_counter()
            function()
            times[(name, step)].append((time.perf_counter() - start) * 1000)
    for (name, step), kept in times.items():
        result[name][f"{step}_ms"] = statistics.median(kept)
    print(json.dumps(result))


# ---------------------------------------------------------------- what the orchestrator runs


def print_split(split, mxnet_map=None):
    fp32, int8 = split["FP32 IR (f32)"], split["INT8 IR"]
    print(f"\n  per image, batch 1, median of {RUNS} (ms)   resize  inference    NMS   total   val mAP (VOC07)")
    for name, row in (("FP32 IR (f32)", fp32), ("INT8 IR", int8)):
        print(
            f"  {name:40} {row['resize_ms']:6.2f} {row['inference_ms']:10.2f} {row['nms_ms']:6.2f} "
            f"{row['total_ms']:7.2f}   {row['map_voc07']:.4f}"
        )
    print(
        f"  INT8/FP32 latency ratio: {int8['total_ms'] / fp32['total_ms']:.3f} (speed-up "
        f"{fp32['total_ms'] / int8['total_ms']:.2f}x; inference alone "
        f"{fp32['inference_ms'] / int8['inference_ms']:.2f}x)"
    )
    drop = f"  mAP drop INT8 vs FP32 IR: {fp32['map_voc07'] - int8['map_voc07']:.4f}"
    if mxnet_map is not None:
        drop += f"; vs MXNet: {mxnet_map - int8['map_voc07']:.4f}"
    print(drop + f" ({split['images']} val images)")


def cards(args):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import yaml
    from cards_benchmark import run_config
    from common import run_workflow

    config = {**run_config(args), "int8_ir": True, "int8_max_map_drop": args.max_map_drop}
    config_path = REPO / "results" / f"{args.run}.yaml"
    config_path.parent.mkdir(exist_ok=True)
    config_path.write_text(yaml.safe_dump(config))
    results = REPO / "results" / args.run
    run_workflow(str((results / "verify_ir" / "verify.json").relative_to(REPO)), config_path, args.cores)
    check = json.loads((results / "verify_ir" / "verify.json").read_text())
    print(f"\ncards, {args.network} SSD at {args.data_shape} px, test split as val: verify_ir side by side")
    for row in check["side_by_side"]:
        print(
            f"  {row['model']:5} {row['weights']}  computing in {row['computes_in']:12}  val mAP {row['map_voc07']:.4f}"
            f"  {row['ms']:7.2f} ms"
        )
    rows = {row["weights"]: row for row in check["side_by_side"] if row["model"] == "IR"}
    print(
        f"  INT8/FP32 latency ratio {rows['INT8']['ms'] / rows['FP32']['ms']:.3f} "
        f"(speed-up {rows['FP32']['ms'] / rows['INT8']['ms']:.2f}x); INT8 mAP drop vs MXNet "
        f"{check['int8']['map_drop']:.4f} (allowed {check['int8']['max_map_drop']})"
    )
    work = results / "int8_benchmark"
    work.mkdir(exist_ok=True)
    split = measure_split(
        results / "deploy" / "deploy.json",
        results / "quantize" / "model_int8.xml",
        results / "pack" / "val.rec",
        check["min_score"],
        work,
    )
    print_split(split, check["mxnet_map_voc07"])
    print(f"  CPU: {cpu.one_line(split['cpu'])}")


def measure_split(deploy, int8_xml, val_rec, min_score, work):
    """This script's `time` command in the optimizer environment: the per-image time split, as a dict."""
    arguments = ["time", "--deploy", str(deploy), "--int8-ir", str(int8_xml), "--val-rec", str(val_rec)]
    return json.loads(in_env("optimizer", __file__, *arguments, "--min-score", str(min_score), "--work", str(work)))


def resnet50(args):
    work = REPO / "results" / "int8_benchmark_resnet50"
    deploy = in_env(
        "mxnet", __file__, "checkpoint", "--network", "resnet50", "--data-shape", "512", "--out", str(work / "deploy")
    )
    records = Path(args.records)
    in_env(
        "optimizer",
        "-m",
        "workflow.quantize",
        "--deploy",
        deploy,
        "--train-rec",
        str(records / "train.rec"),
        "--val-rec",
        str(records / "val.rec"),
        "--max-map-drop",
        str(args.max_map_drop),
        "--iou-threshold",
        "0.5",
        "--color",
        "BGR",
        "--mean-in-ir",
        "--out-dir",
        str(work / "quantize"),
        "--model-name",
        "model_int8",
        "--summary",
        str(work / "quantize" / "quantize.json"),
        "--log",
        str(work / "quantize_mo.log"),
    )
    split = measure_split(deploy, work / "quantize" / "model_int8.xml", records / "val.rec", 0.5, work)
    print("\nresnet50 SSD at 512 px, random weights (speed only; the mAPs say nothing)")
    print_split(split)
    print(f"  CPU: {cpu.one_line(split['cpu'])}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    on_cards = commands.add_parser("cards", help="the cards CPU preset through the workflow")
    sys.path.insert(0, str(REPO / "benchmarks"))
    on_cards.add_argument("--network", default="lite")
    on_cards.add_argument("--data-shape", type=int, default=256)
    on_cards.add_argument("--batch-size", type=int, default=8)
    on_cards.add_argument("--learning-rate", type=float, default=0.05)
    on_cards.add_argument("--lr-steps", type=int, nargs="*", default=[])
    on_cards.add_argument("--epochs", type=int, nargs="+", default=[400])
    on_cards.add_argument("--warmup-epochs", type=int, default=2)
    on_cards.add_argument("--budget-minutes", type=float, default=9)
    on_cards.add_argument("--max-map-drop", type=float, default=0.01)
    on_cards.add_argument("--cores", type=int, default=2)
    on_cards.add_argument("--run", default="cards_int8")
    on_resnet = commands.add_parser("resnet50", help="resnet50 at 512 with random weights")
    on_resnet.add_argument("--records", required=True, help="a pack/ folder with train.rec and val.rec")
    on_resnet.add_argument("--max-map-drop", type=float, default=0.01)
    checkpoint = commands.add_parser("checkpoint", help="(mxnet env) a random-weight deploy checkpoint")
    checkpoint.add_argument("--network", required=True)
    checkpoint.add_argument("--data-shape", type=int, required=True)
    checkpoint.add_argument("--out", required=True)
    timing = commands.add_parser("time", help="(optimizer env) FP32 and INT8 IR: mAP and where the time goes")
    for flag in ("--deploy", "--int8-ir", "--val-rec", "--work"):
        timing.add_argument(flag, required=True)
    timing.add_argument("--min-score", type=float, required=True)
    args = parser.parse_args()
    {"cards": cards, "resnet50": resnet50, "checkpoint": make_checkpoint, "time": time_split}[args.command](args)


if __name__ == "__main__":
    main()
