"""The training checkpoints: which epoch to deploy, and its deploy graph."""

import csv
from pathlib import Path

import mxnet as mx

from workflow.lib.cli import UserError
from workflow.lib.networks import build_deploy_symbol
from workflow.lib.stopping import best_epoch, val_map


CHECKPOINT_PREFIX = "ssd"


def read_log(segment_dir):
    with open(Path(segment_dir) / "log.csv") as handle:
        return list(csv.DictReader(handle))


def choose_epoch(segment_dirs, choice):
    """Return (epoch, folder holding its checkpoint, reason) for 'last', 'best' or an epoch number."""
    rows = read_log(segment_dirs[-1])
    if choice == "last":
        epoch, reason = int(rows[-1]["epoch"]), "last epoch trained (deploy_epoch: last)"
    elif choice == "best":
        best = best_epoch(rows)
        if best is None:
            raise UserError(f"deploy_epoch: best needs val mAP in {Path(segment_dirs[-1]) / 'log.csv'}, which has none")
        best_map, epoch = best
        evaluated = sum(val_map(row) is not None for row in rows)
        reason = f"highest val mAP {best_map:.4f} over {evaluated} evaluated epochs (deploy_epoch: best)"
    else:
        epoch, reason = int(choice), f"chosen in the config (deploy_epoch: {choice})"
    for folder in segment_dirs:
        if (Path(folder) / f"{CHECKPOINT_PREFIX}-{epoch:04d}.params").exists():
            return epoch, Path(folder), reason
    raise UserError(f"no checkpoint of epoch {epoch} in {', '.join(map(str, segment_dirs))}")


def val_map_at(segment_dir, epoch):
    return next((val_map(row) for row in read_log(segment_dir) if int(row["epoch"]) == epoch), None)


def load_params(path):
    """(arg params, aux params) of a .params file, by name without MXNet's 'arg:' and 'aux:' prefixes."""
    arrays = mx.nd.load(str(path))
    args = {name[4:]: array for name, array in arrays.items() if name.startswith("arg:")}
    auxs = {name[4:]: array for name, array in arrays.items() if name.startswith("aux:")}
    return args, auxs


def deploy_graph(folder, epoch, network, num_classes, data_shape, weights="params", **detection):
    """(deploy symbol, its arg params, its aux params) of the training checkpoint of `epoch` in `folder`.

    weights: the checkpoint's file of weights, "params" (those validated and deployed) or "sgd.params" (SGD's own
    weights, beside a moving average). detection: force_nms, nms_threshold, nms_topk and threshold of
    build_deploy_symbol.
    """
    path = Path(folder) / f"{CHECKPOINT_PREFIX}-{epoch:04d}.{weights}"
    arg_params, aux_params = load_params(path)
    symbol = build_deploy_symbol(network, num_classes, data_shape, **detection)
    needed_args = [n for n in symbol.list_arguments() if n != "data"]
    missing = [n for n in needed_args if n not in arg_params]
    if missing:
        raise UserError(f"checkpoint {path} lacks {missing[:5]} for network {network}")
    return symbol, {n: arg_params[n] for n in needed_args}, {n: aux_params[n] for n in symbol.list_auxiliary_states()}
