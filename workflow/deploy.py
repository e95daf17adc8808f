"""deploy: the inference graph of the chosen checkpoint, with NMS built in.

The graph has no loss or target layers; it ends in SoftmaxActivation(mode='channel') (the DeepLens'
MXNet 0.12 knows no lowercase softmax) and MultiBoxDetection(force_suppress=force_nms, ...). Written as
deploy_ssd_<network>_<shape>-symbol.json + -NNNN.params, with deploy.json describing both.
"""

import argparse
import json
from pathlib import Path

import mxnet as mx

from workflow.lib.checkpoints import choose_epoch, deploy_graph, val_map_at
from workflow.lib.cli import log, run_main
from workflow.lib.networks import MEAN_RGB


def export(args):
    segment_dirs = args.train_dirs.split(",")
    epoch, folder, reason = choose_epoch(segment_dirs, args.epoch)
    symbol, arg_params, aux_params = deploy_graph(
        folder,
        epoch,
        args.network,
        len(args.classes),
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
        "val_map_at_epoch": val_map_at(segment_dirs[-1], epoch),
        "network": args.network,
        "data_shape": args.data_shape,
        "classes": args.classes,
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
    parser.add_argument("--train-dirs", required=True, help="comma-separated training segment folders, in order")
    parser.add_argument("--epoch", required=True, help="last, best or an epoch number")
    parser.add_argument("--network", required=True)
    parser.add_argument("--classes", required=True, type=json.loads, help="JSON list of class names")
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
