"""deploy: the inference graph of the chosen checkpoint, with NMS built in.

The graph has no loss or target layers; it ends in SoftmaxActivation(mode='channel') (the DeepLens'
MXNet 0.12 knows no lowercase softmax) and MultiBoxDetection(force_suppress=force_nms, ...). Written as
deploy_ssd_<network>_<shape>-symbol.json + -NNNN.params, with deploy.json describing both.
"""

import argparse
import csv
import json
from pathlib import Path

import mxnet as mx

from workflow.lib.cli import UserError, log, run_main
from workflow.lib.networks import MEAN_RGB, build_deploy_symbol
from workflow.lib.stopping import best_epoch, val_map

CHECKPOINT_PREFIX = "ssd"


def read_log(stop_dir):
    with open(Path(stop_dir) / "log.csv") as handle:
        return list(csv.DictReader(handle))


def choose_epoch(stop_dirs, choice):
    """Return (epoch, folder holding its checkpoint, reason) for 'last', 'best' or an epoch number."""
    rows = read_log(stop_dirs[-1])
    if choice == "last":
        epoch, reason = int(rows[-1]["epoch"]), "last epoch trained (deploy_epoch: last)"
    elif choice == "best":
        best = best_epoch(rows)
        if best is None:
            raise UserError(f"deploy_epoch: best needs val mAP in {Path(stop_dirs[-1]) / 'log.csv'}, which has none")
        best_map, epoch = best
        evaluated = sum(val_map(row) is not None for row in rows)
        reason = f"highest val mAP {best_map:.4f} over {evaluated} evaluated epochs (deploy_epoch: best)"
    else:
        epoch, reason = int(choice), f"chosen in the config (deploy_epoch: {choice})"
    for folder in stop_dirs:
        if (Path(folder) / f"{CHECKPOINT_PREFIX}-{epoch:04d}.params").exists():
            return epoch, Path(folder), reason
    raise UserError(f"no checkpoint of epoch {epoch} in {', '.join(map(str, stop_dirs))}")


def val_map_at(stop_dir, epoch):
    return next((val_map(row) for row in read_log(stop_dir) if int(row["epoch"]) == epoch), None)


def deploy_graph(folder, epoch, network, num_classes, data_shape, **detection):
    """(deploy symbol, its arg params, its aux params) of the training checkpoint of `epoch` in `folder`.

    detection: force_nms, nms_threshold, nms_topk and threshold of build_deploy_symbol.
    """
    _, arg_params, aux_params = mx.model.load_checkpoint(str(Path(folder) / CHECKPOINT_PREFIX), epoch)
    symbol = build_deploy_symbol(network, num_classes, data_shape, **detection)
    needed_args = [n for n in symbol.list_arguments() if n != "data"]
    missing = [n for n in needed_args if n not in arg_params]
    if missing:
        raise UserError(
            f"checkpoint {folder}/{CHECKPOINT_PREFIX}-{epoch:04d}.params lacks {missing[:5]} for network {network}"
        )
    return symbol, {n: arg_params[n] for n in needed_args}, {n: aux_params[n] for n in symbol.list_auxiliary_states()}


def export(args):
    stop_dirs = args.train_dirs.split(",")
    epoch, folder, reason = choose_epoch(stop_dirs, args.epoch)
    symbol, arg_params, aux_params = deploy_graph(
        folder,
        epoch,
        args.network,
        len(args.classes.split(",")),
        args.data_shape,
        force_nms=args.force_nms,
        nms_threshold=args.nms_threshold,
        nms_topk=args.nms_topk,
        threshold=args.threshold,
    )
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / f"deploy_ssd_{args.network}_{args.data_shape}"
    mx.model.save_checkpoint(str(prefix), epoch, symbol, arg_params, aux_params)
    info = {
        "symbol": f"{prefix.name}-symbol.json",
        "params": f"{prefix.name}-{epoch:04d}.params",
        "epoch": epoch,
        "epoch_choice": args.epoch,
        "epoch_reason": reason,
        "val_map_at_epoch": val_map_at(stop_dirs[-1], epoch),
        "network": args.network,
        "data_shape": args.data_shape,
        "classes": args.classes.split(","),
        "force_nms": args.force_nms,
        "nms_threshold": args.nms_threshold,
        "nms_topk": args.nms_topk,
        "threshold": args.threshold,
        "input": {
            "layout": "NCHW",
            "color": "RGB",
            "mean_rgb": list(MEAN_RGB),
            "scale": 1.0,
            "resize": "forced to data_shape x data_shape, aspect ratio not kept",
        },
    }
    Path(args.out).write_text(json.dumps(info, indent=1))
    log(f"deploy: epoch {epoch} ({reason}) -> {prefix}-symbol.json, force_nms={info['force_nms']}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-dirs", required=True, help="comma-separated training stop folders, in order")
    parser.add_argument("--epoch", required=True, help="last, best or an epoch number")
    parser.add_argument("--network", required=True)
    parser.add_argument("--classes", required=True, help="comma-separated class names")
    parser.add_argument("--data-shape", type=int, required=True)
    parser.add_argument(
        "--force-nms", action=argparse.BooleanOptionalAction, required=True, help="NMS across classes (else per class)"
    )
    parser.add_argument("--nms-threshold", type=float, required=True)
    parser.add_argument("--nms-topk", type=int, required=True)
    parser.add_argument("--threshold", type=float, required=True)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--out", required=True, help="deploy.json to write")
    export(parser.parse_args(argv))


if __name__ == "__main__":
    run_main(main)
