"""Train an SSD detector from RecordIO files: python -m workflow.train --train-rec ... --out DIR

Writes into --out: ssd-symbol.json (training graph), ssd-NNNN.params after every epoch (the moving average of the
weights when --ema-epochs is above 0, else SGD's own), and for the last epoch ssd-NNNN.states (optimizer state) and
ssd-NNNN.sgd.params (SGD's own weights, with a moving average), progress.csv with one row per finished epoch
(including the rows of the segment it resumed from), and log.csv, the same table, once the segment is done.
A run that was killed continues after its last finished epoch when started again with the same --out.

Record labels are [2, 6, cls, xmin, ymin, xmax, ymax, difficult, ...] with normalised
coordinates and 0-based classes (see the pack stage).
"""

import os
import sys

if __name__ == "__main__" and "--threads" in sys.argv[:-1]:
    # OpenMP reads its thread count once, when mxnet loads, so it must be set before the import.
    os.environ.setdefault("OMP_NUM_THREADS", sys.argv[sys.argv.index("--threads") + 1])

import argparse
import csv
import json
import math
import re
import time

import mxnet as mx
import numpy as np

from workflow.lib import mosaic, networks, quarter_turns
from workflow.lib.checkpoints import load_params
from workflow.lib.cli import Progress, UserError, log, run_main
from workflow.lib.stopping import plan_epochs, planned_epochs, stop_reason

PREFIX = "ssd"
PROGRESS_FILE, LOG_FILE = "progress.csv", "log.csv"
LOG_COLUMNS = ("epoch", "lr", "cls_loss", "loc_loss", "samples_per_s", "seconds", "val_map", "planned_epochs")
# Random crops with IoU constraints, zoom-out padding and colour jitter, as in apache/mxnet example/ssd
# config.py (crop samplers: min object overlap .1 ... .9), milder for small datasets and networks trained
# from scratch: crop half of the images, zoom out 30% by up to 2x. Mirroring is --mirror's choice.
TRAIN_AUGMENTATION = dict(
    rand_crop_prob=0.5,
    num_crop_sampler=5,
    min_crop_scales=(0.3,) * 5,
    max_crop_scales=(1.0,) * 5,
    min_crop_aspect_ratios=(0.5,) * 5,
    max_crop_aspect_ratios=(2.0,) * 5,
    min_crop_overlaps=(0.1, 0.3, 0.5, 0.7, 0.9),
    max_crop_overlaps=(1.0,) * 5,
    min_crop_sample_coverages=(0.0,) * 5,
    max_crop_sample_coverages=(1.0,) * 5,
    min_crop_object_coverages=(0.0,) * 5,
    max_crop_object_coverages=(1.0,) * 5,
    max_crop_trials=(25,) * 5,
    crop_emit_mode="center",
    rand_pad_prob=0.3,
    max_pad_scale=2.0,
    fill_value=127,
    random_hue_prob=0.5,
    max_random_hue=18,
    random_saturation_prob=0.5,
    max_random_saturation=32,
    random_illumination_prob=0.5,
    max_random_illumination=32,
    random_contrast_prob=0.5,
    max_random_contrast=0.5,
    inter_method=10,
)
MIRROR_PROB = 0.5


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-rec", required=True, help="training .rec (its .idx next to it)")
    parser.add_argument("--val-rec", help="validation .rec: val mAP (VOC07) is computed after every epoch")
    parser.add_argument("--classes", required=True, type=json.loads, help="JSON list of class names, in label order")
    parser.add_argument("--network", required=True, choices=networks.NETWORKS)
    parser.add_argument("--data-shape", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--begin-epoch", type=int, required=True, help="0, or the end epoch of the previous segment")
    parser.add_argument("--end-epoch", type=int, required=True, help="absolute epoch to stop at")
    parser.add_argument("--resume", help="the previous segment's folder, with its checkpoint at --begin-epoch")
    parser.add_argument(
        "--pretrained",
        help="a .params file to start from; arrays whose name or shape "
        "does not fit (other class count) are left out and initialised",
    )
    parser.add_argument(
        "--freeze",
        required=True,
        help="regular expression: parameters whose names match are not trained ('' trains all)",
    )
    parser.add_argument(
        "--mirror",
        action=argparse.BooleanOptionalAction,
        required=True,
        help="flip half of the training images left-right",
    )
    parser.add_argument(
        "--mosaic",
        type=float,
        required=True,
        help="the share of training images made a mosaic of four (0: none)",
    )
    parser.add_argument(
        "--quarter-turns",
        type=float,
        required=True,
        help="the share of training images turned a quarter turn, left or right at random (0: none)",
    )
    parser.add_argument(
        "--mosaic-close-epochs",
        type=int,
        required=True,
        help="no mosaics in this many last epochs (of the budget's plan, else of --final-epoch)",
    )
    parser.add_argument("--learning-rate", type=float, required=True)
    parser.add_argument("--momentum", type=float, required=True)
    parser.add_argument("--wd", type=float, required=True)
    parser.add_argument(
        "--lr-steps",
        required=True,
        help="epochs (absolute) where the lr is multiplied by --lr-factor; when the budget's plan fits fewer epochs "
        "than --final-epoch, they move in proportion",
    )
    parser.add_argument("--lr-factor", type=float, required=True)
    parser.add_argument("--warmup-epochs", type=float, required=True)
    parser.add_argument(
        "--final-epoch",
        type=int,
        required=True,
        help="the last epoch of the whole training (its last segment's --end-epoch): the budget's plan ends by it",
    )
    parser.add_argument(
        "--ema-epochs",
        type=float,
        required=True,
        help="validate and save an exponential moving average of the weights over about this many epochs (0: none)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        required=True,
        help="seeds the initialisation and the shuffling (MXNet seeds the augmentation itself)",
    )
    parser.add_argument("--threads", type=int, required=True, help="CPU threads (decoding and augmentation)")
    parser.add_argument(
        "--budget-minutes",
        type=float,
        required=True,
        help="the run's total epoch time: after the warm-up, training plans the epochs that fit in it (the lr steps "
        "move with them), and it stops after the epoch that brings it past this (0: no budget)",
    )
    parser.add_argument(
        "--patience",
        type=int,
        required=True,
        help="stop when val mAP has not improved for this many epochs (0: never; needs --val-rec)",
    )
    parser.add_argument(
        "--patience-smoothing",
        type=int,
        required=True,
        help="--patience watches the moving average of val mAP over this many epochs (1: none)",
    )
    parser.add_argument("--gpus", required=True, help="'' for the CPU, '0,1' for GPUs 0 and 1")
    parser.add_argument("--out", required=True)
    return parser.parse_args(argv)


def main(argv=None):
    train(parse_args(argv))


def train(options):
    """Train from options.begin_epoch to options.end_epoch; returns the log rows of all epochs."""
    _continue_after_interruption(options)
    earlier_rows = _read_log(options.resume) if options.resume else []
    reason = earlier_rows and _stop_reason(options, earlier_rows)
    if reason:
        return _finish_without_training(options, earlier_rows, reason)
    _check_options(options)
    num_classes = len(options.classes)
    contexts = [mx.gpu(int(i)) for i in options.gpus.split(",")] if options.gpus else [mx.cpu()]
    mx.random.seed(options.seed)
    np.random.seed(options.seed)
    os.makedirs(options.out, exist_ok=True)

    symbol, frozen = _training_symbol(options, num_classes)
    num_records, max_objects = _scan_records(options.train_rec)
    batches_per_epoch = math.ceil(num_records / options.batch_size)
    label_objects = max_objects * (mosaic.OBJECTS_FACTOR if options.mosaic > 0 else 1)
    module = _bind_module(symbol, contexts, options, label_objects, frozen)
    _init_params(module, symbol, options)
    schedule = _init_optimizer(module, options, len(contexts), batches_per_epoch)
    rows = []
    if options.resume:
        module.load_optimizer_states(_checkpoint_path(options.resume, options.begin_epoch, "states"))
        rows = [row for row in earlier_rows if int(row["epoch"]) <= options.begin_epoch]
        schedule.step_updates = _step_updates(options, batches_per_epoch, planned_epochs(rows))
    average = _weight_average(module, options, frozen, batches_per_epoch)
    validator = Validator(options, num_classes, contexts) if options.val_rec else None

    records = _record_iter(options.train_rec, options, seed=options.seed, augment=True, max_objects=max_objects)
    _replay_epochs(records, options.begin_epoch)
    for epoch in range(options.begin_epoch, options.end_epoch):
        started = time.monotonic()
        share = _mosaic_share(options, epoch, planned_epochs(rows))
        row = _train_epoch(module, records, options, epoch, batches_per_epoch, average, share)
        records.reset()
        row["lr"] = schedule((epoch + 1) * batches_per_epoch)
        weights = average.params(*module.get_params()) if average else module.get_params()
        if validator:
            row["val_map"] = validator.mean_ap(*weights)
        row["seconds"] = time.monotonic() - started
        _save_checkpoint(module, weights, options.out, epoch + 1, average is not None)
        rows.append(row)
        row["planned_epochs"] = _plan_steps(options, rows, schedule, batches_per_epoch)
        _write_log(options.out, rows, PROGRESS_FILE)
        log(_format_row(row))
        reason = _stop_reason(options, rows)
        if reason and epoch + 1 < options.end_epoch:
            log(f"stopping after epoch {epoch + 1}: {reason}")
            break
    _write_log(options.out, rows, LOG_FILE)
    return rows


def _training_symbol(options, num_classes):
    """(training graph, frozen parameter names): a BatchNorm whose parameters are frozen keeps its statistics too,
    as they were learned on the pretrained data (batches of a few images would re-estimate them badly)."""
    symbol = networks.build_training_symbol(options.network, num_classes, options.data_shape)
    frozen = frozen_parameters(symbol, options.freeze)
    graph = json.loads(symbol.tojson())
    for node in graph["nodes"]:
        if node["op"] == "BatchNorm" and f"{node['name']}_gamma" in frozen:
            node["attrs"]["use_global_stats"] = "True"
    return mx.sym.load_json(json.dumps(graph)), frozen


def _plan_steps(options, rows, schedule, batches_per_epoch):
    """The budget's plan, made after the warm-up and again after every epoch until its first lr step: the epochs
    that fit, with the lr steps moved into them. Returns the log row's planned_epochs value ('' when not planned)."""
    earlier = planned_epochs(rows[:-1])
    planned = plan_epochs(rows, options.budget_minutes, options.final_epoch, options.warmup_epochs, _lr_steps(options))
    if planned:
        schedule.step_updates = _step_updates(options, batches_per_epoch, planned)
    if planned and planned != earlier:
        steps = ", ".join(f"{update / batches_per_epoch:.1f}" for update in schedule.step_updates) or "none"
        log(
            f"training budget of {options.budget_minutes:g} min: about {planned} of {options.final_epoch} epochs fit; "
            f"learning-rate steps at epochs {steps}"
        )
    return planned or ""


def _lr_steps(options):
    return [int(epoch) for epoch in options.lr_steps.split(",") if epoch.strip()]


def _step_updates(options, batches_per_epoch, planned=None):
    """The update counts of the lr steps: --lr-steps, or with a plan those epochs scaled by planned / final epoch,
    so that a budget that fits fewer epochs gets the same schedule in fewer of them."""
    scale = planned / options.final_epoch if planned else 1
    return [round(epoch * scale * batches_per_epoch) for epoch in _lr_steps(options)]


def _stop_reason(options, rows):
    """Why training ends after these rows (this segment's and the earlier segments'), or None."""
    return stop_reason(rows, options.budget_minutes, options.patience, options.patience_smoothing)


def _finish_without_training(options, rows, reason):
    """An earlier segment ended training: this segment only carries its log over (deploy finds the checkpoint there)."""
    log(f"training ended after epoch {rows[-1]['epoch']}, {reason}: nothing to train")
    os.makedirs(options.out, exist_ok=True)
    symbol, _ = _training_symbol(options, len(options.classes))
    symbol.save(os.path.join(options.out, f"{PREFIX}-symbol.json"))
    _write_log(options.out, rows, PROGRESS_FILE)
    _write_log(options.out, rows, LOG_FILE)
    return rows


def _continue_after_interruption(options):
    """Point --resume and --begin-epoch at the last epoch this --out finished, if an earlier run was killed.

    An epoch counts as finished once its progress.csv row exists: the row is written after the
    epoch's params and optimizer state.
    """
    finished = [int(row["epoch"]) for row in _read_log(options.out)]
    last = max((epoch for epoch in finished if options.begin_epoch < epoch < options.end_epoch), default=None)
    if last is not None and os.path.exists(_checkpoint_path(options.out, last, "states")):
        log(f"{options.out} holds epoch {last} from an interrupted run: continuing after it")
        options.resume, options.begin_epoch = options.out, last


def _check_options(options):
    for path in (options.train_rec, options.val_rec):
        if path and not (os.path.exists(path) and os.path.exists(_idx_path(path))):
            raise UserError(f"record file {path} or its .idx is missing")
    if not 0 <= options.begin_epoch < options.end_epoch:
        raise UserError(f"need 0 <= --begin-epoch < --end-epoch, got {options.begin_epoch} and {options.end_epoch}")
    if options.patience > 0 and not options.val_rec:
        raise UserError("--patience stops on the val mAP: it needs --val-rec")
    if options.begin_epoch > 0 and not options.resume:
        raise UserError("--begin-epoch > 0 needs --resume with the previous segment's folder")
    if options.resume:
        for kind in ("params", "states"):
            if not os.path.exists(_checkpoint_path(options.resume, options.begin_epoch, kind)):
                raise UserError(
                    f"no checkpoint {_checkpoint_path(options.resume, options.begin_epoch, kind)} to resume from"
                )
    try:
        networks.anchor_boxes(options.network, options.data_shape)
    except ValueError as error:
        raise UserError(str(error)) from error


def frozen_parameters(symbol, pattern):
    """The parameter names matching --freeze (none when it is empty)."""
    if not pattern:
        return []
    try:
        matcher = re.compile(pattern)
    except re.error as error:
        raise UserError(f"freeze: '{pattern}' is not a regular expression ({error})") from None
    frozen = [name for name in symbol.list_arguments() if name not in ("data", "label") and matcher.search(name)]
    log(
        f"freeze '{pattern}': {len(frozen)} parameters not trained"
        + (f", e.g. {', '.join(frozen[:4])}" if frozen else "")
    )
    return frozen


def _bind_module(symbol, contexts, options, max_objects, frozen):
    shape = options.data_shape
    module = mx.mod.Module(
        symbol,
        data_names=["data"],
        label_names=["label"],
        context=contexts,
        fixed_param_names=frozen,
    )
    module.bind(
        data_shapes=[("data", (options.batch_size, 3, shape, shape))],
        label_shapes=[("label", (options.batch_size, max_objects, 6))],
    )
    return module


def _init_optimizer(module, options, num_devices, batches_per_epoch):
    """SGD with warm-up and steps counted in updates, continuing at --begin-epoch; returns the schedule."""
    schedule = WarmupStepSchedule(
        options.learning_rate,
        round(options.warmup_epochs * batches_per_epoch),
        _step_updates(options, batches_per_epoch),
        options.lr_factor,
    )
    module.init_optimizer(
        kvstore="device" if num_devices > 1 else "local",
        optimizer="sgd",
        optimizer_params=dict(
            learning_rate=options.learning_rate,
            momentum=options.momentum,
            wd=options.wd,
            lr_scheduler=schedule,
            # The losses are already divided by the number of valid anchors in the batch
            # (normalization='valid'); the gradients of the devices are summed.
            rescale_grad=1.0 / num_devices,
            begin_num_update=options.begin_epoch * batches_per_epoch,
        ),
    )
    return schedule


def _init_params(module, symbol, options):
    """Xavier initialisation; then the resumed checkpoint, or the fitting arrays of --pretrained."""
    initializer = mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)
    if options.resume:
        args, auxs = load_params(_trained_weights_path(options.resume, options.begin_epoch))
        module.init_params(initializer, args, auxs, allow_missing=False)
    elif options.pretrained:
        args, auxs = _fitting_params(symbol, options)
        module.init_params(initializer, args, auxs, allow_missing=True)
    else:
        module.init_params(initializer)


def _fitting_params(symbol, options):
    """The pretrained arrays whose names and shapes fit the symbol, logging the ones left out."""
    shape = options.data_shape
    args, _, auxs = symbol.infer_shape(data=(1, 3, shape, shape), label=(1, 1, 6))
    wanted = dict(zip(symbol.list_arguments(), args))
    wanted.update(zip(symbol.list_auxiliary_states(), auxs))
    loaded_args, loaded_auxs = load_params(options.pretrained)
    fitting, left_out = [{}, {}], []
    for kind, arrays in enumerate((loaded_args, loaded_auxs)):
        for name, array in arrays.items():
            if wanted.get(name) == array.shape:
                fitting[kind][name] = array
            else:
                left_out.append(name)
    if not fitting[0]:
        raise UserError(f"no array of {options.pretrained} fits network {options.network}")
    log(
        f"pretrained {options.pretrained}: {len(fitting[0]) + len(fitting[1])} arrays loaded, "
        f"left out (initialised): {', '.join(sorted(left_out)) or 'none'}"
    )
    return fitting


def _replay_epochs(records, epochs):
    """Read the batches of the epochs before a resumed run without training on them.

    ImageDetRecordIter seeds its augmentation randomness with fixed numbers when it is created
    and continues it across epochs; replaying it makes a resumed run see the same batches as an
    uninterrupted one (a new iterator per epoch would repeat the same augmented images).
    """
    progress = Progress("replaying the data augmentation of earlier epochs", epochs, every=10)
    for epoch in range(epochs):
        for _ in records:
            pass
        records.reset()
        progress.update(epoch + 1)


def _mosaic_share(options, epoch, planned):
    """The share of mosaics in epoch number epoch + 1: --mosaic, but none in the last --mosaic-close-epochs."""
    closed_from = (planned or options.final_epoch) - options.mosaic_close_epochs
    return options.mosaic if epoch < closed_from else 0.0


def _training_batch(batch, options, rng, share):
    """The module's input for a batch of the record iterator: its images and object rows, turned a quarter turn at
    --quarter-turns and made mosaics at the share (rng seeded per epoch, so that a resumed run makes the same ones),
    padded to the rows mosaics need."""
    objects = _objects(batch.label[0])
    if options.mosaic <= 0 and options.quarter_turns <= 0:
        return mx.io.DataBatch(batch.data, [objects])
    images, objects = batch.data[0].asnumpy(), objects.asnumpy()
    if options.quarter_turns > 0:
        images, objects = quarter_turns.turn_batch(images, objects, options.quarter_turns, rng)
    if options.mosaic > 0:
        images, objects = mosaic.mosaic_batch(images, objects, share, rng)
    return mx.io.DataBatch([mx.nd.array(images)], [mx.nd.array(objects)])


def _train_epoch(module, records, options, epoch, batches_per_epoch, average, mosaic_share):
    """One pass over the training records, updating the weight average after each step when there is one;
    returns the epoch's log row without lr and val_map."""
    progress = Progress(f"epoch {epoch + 1}/{options.end_epoch}", batches_per_epoch, every=10)
    losses = LossTotals()
    rng = np.random.default_rng([options.seed, epoch])
    start = time.monotonic()
    for done, batch in enumerate(records, start=1):
        module.forward_backward(_training_batch(batch, options, rng, mosaic_share))
        module.update()
        if average:
            average.update(_live_arrays(module))
        losses.add(*module.get_outputs())
        samples_per_s = done * options.batch_size / (time.monotonic() - start)
        progress.update(
            done, f"cls_loss {losses.cls_loss:.4f} loc_loss {losses.loc_loss:.4f} {samples_per_s:.1f} samples/s"
        )
    seconds = time.monotonic() - start
    return dict(
        epoch=epoch + 1,
        cls_loss=losses.cls_loss,
        loc_loss=losses.loc_loss,
        samples_per_s=done * options.batch_size / seconds,
        seconds=seconds,
        val_map="",
    )


def _live_arrays(module):
    """The arrays the module trains, by name (weights and BatchNorm statistics), after the step in flight: those of
    its first device, which holds the same weights as every other after an update. MXNet's engine does not order a
    BatchNorm's in-place update of its moving statistics before a read of them, hence the wait."""
    mx.nd.waitall()
    executor = module._exec_group.execs[0]  # Module has no public view of its arrays that does not copy them
    return {**executor.arg_dict, **executor.aux_dict}


def _weight_average(module, options, frozen, batches_per_epoch):
    """The moving average of the weights for --ema-epochs > 0 (None otherwise): started from the weights when
    training starts, or the resumed segment's average with its count of updates."""
    if options.ema_epochs <= 0:
        return None
    args, auxs = module.get_params()
    if options.resume and os.path.exists(_checkpoint_path(options.resume, options.begin_epoch, "sgd.params")):
        args, auxs = load_params(_checkpoint_path(options.resume, options.begin_epoch, "params"))
    trained = [name for name in args if name not in frozen]
    trained += [name for name in auxs if f"{name.rsplit('_moving_', 1)[0]}_gamma" not in frozen]
    return WeightAverage(
        {**args, **auxs},
        trained,
        options.ema_epochs * batches_per_epoch,
        options.begin_epoch * batches_per_epoch,
        context=_live_arrays(module)[trained[0]].context,
    )


class WeightAverage:
    """An exponential moving average of the trained arrays (weights, and the statistics of the BatchNorms that
    train), as TensorFlow's ExponentialMovingAverage keeps it: decay exp(-1 / horizon) per update, held at
    (1 + n) / (10 + n) while the count of updates n is small so the start weighs little.

    The arrays are averaged as one flat vector: a handful of operations per update instead of a few per array."""

    def __init__(self, start, trained, horizon_updates, updates=0, context=None):
        self.trained = [(name, start[name].shape) for name in trained]
        self.flat = self._flatten(start).as_in_context(context or mx.cpu())
        self.updates = updates
        self.decay = math.exp(-1 / horizon_updates)

    def update(self, arrays):
        """Move the average towards `arrays` (by name, as the start)."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = self._flatten(arrays)
        self.flat *= decay
        self.flat += (1 - decay) * current

    def params(self, args, auxs):
        """(args, auxs) with each trained array replaced by its average (on the CPU)."""
        args, auxs = dict(args), dict(auxs)
        offset = 0
        for name, shape in self.trained:
            size = int(np.prod(shape))
            average = self.flat[offset : offset + size].reshape(shape).copyto(mx.cpu())
            (args if name in args else auxs)[name] = average
            offset += size
        return args, auxs

    def _flatten(self, arrays):
        return mx.nd.concat(*(arrays[name].reshape(-1) for name, _ in self.trained), dim=0)


class LossTotals:
    """Running cross-entropy over non-ignored anchors and smooth L1 per positive anchor."""

    def __init__(self):
        self.cls_sum = self.cls_count = self.loc_sum = self.loc_count = 0.0

    def add(self, cls_prob, loc_loss, cls_label):
        labels = cls_label.asnumpy().astype(int)
        valid = labels >= 0
        probs = np.take_along_axis(cls_prob.asnumpy(), np.maximum(labels, 0)[:, None, :], axis=1)[:, 0, :]
        self.cls_sum += -np.log(np.maximum(probs[valid], 1e-12)).sum()
        self.cls_count += valid.sum()
        self.loc_sum += loc_loss.asnumpy().sum()
        self.loc_count += (labels > 0).sum()

    @property
    def cls_loss(self):
        return self.cls_sum / max(self.cls_count, 1)

    @property
    def loc_loss(self):
        return self.loc_sum / max(self.loc_count, 1)


class Validator:
    """VOC07 mAP of the deploy graph (per-class NMS 0.45) on the whole validation record file."""

    def __init__(self, options, num_classes, contexts):
        self.options, self.num_classes, self.contexts = options, num_classes, contexts
        self.max_objects = _scan_records(options.val_rec)[1]
        self.symbol = networks.build_deploy_symbol(options.network, num_classes, options.data_shape, force_nms=False)

    def mean_ap(self, args, auxs):
        from workflow.lib.metrics import evaluate_detections

        module = self._bind(args, auxs)
        ground_truth, detections = [], []
        for batch in _record_iter(
            self.options.val_rec, self.options, seed=0, augment=False, max_objects=self.max_objects
        ):
            module.forward(mx.io.DataBatch(batch.data), is_train=False)
            keep = self.options.batch_size - batch.pad
            for objects, found in zip(
                _objects(batch.label[0]).asnumpy()[:keep], module.get_outputs()[0].asnumpy()[:keep]
            ):
                ground_truth.append(objects[objects[:, 0] >= 0])
                detections.append(found[found[:, 0] >= 0])
        return evaluate_detections(ground_truth, detections, self.num_classes).map_voc07

    def _bind(self, args, auxs):
        """A new module each time: oneDNN caches inference weights, so parameters copied into a
        module that has already run forward would not be used."""
        shape = self.options.data_shape
        module = mx.mod.Module(self.symbol, data_names=["data"], label_names=None, context=self.contexts)
        module.bind(data_shapes=[("data", (self.options.batch_size, 3, shape, shape))], for_training=False)
        module.set_params(args, auxs, allow_extra=True)
        return module


def _record_iter(path, options, seed, augment, max_objects):
    """Batches of a record file; labels padded to max_objects (MultiBoxTarget's time grows with it)."""
    augmentation = {}
    if augment:
        augmentation = dict(TRAIN_AUGMENTATION, rand_mirror_prob=MIRROR_PROB if options.mirror else 0)
    return mx.io.ImageDetRecordIter(
        path_imgrec=path,
        path_imgidx=_idx_path(path),
        batch_size=options.batch_size,
        data_shape=(3, options.data_shape, options.data_shape),
        label_pad_width=2 + 6 * max_objects,
        label_pad_value=-1,
        shuffle=augment,
        seed=seed,
        preprocess_threads=options.threads,
        mean_r=networks.MEAN_RGB[0],
        mean_g=networks.MEAN_RGB[1],
        mean_b=networks.MEAN_RGB[2],
        verbose=False,
        **augmentation,
    )


def _objects(raw_label):
    """ImageDetRecordIter's flat label -> (batch, max_objects, 6) object rows.

    The flat label is [4 iterator values, header width, object width, header..., objects..., padding].
    """
    start = 4 + 2
    max_objects = (raw_label.shape[1] - start) // 6
    return raw_label[:, start : start + max_objects * 6].reshape((0, max_objects, 6))


class WarmupStepSchedule(mx.lr_scheduler.LRScheduler):
    """Linear warm-up to base_lr, then base_lr * factor per step passed.

    A function of the update count alone (and of step_updates, which the budget's plan may move), so a resumed run
    continues it exactly.
    """

    def __init__(self, base_lr, warmup_updates, step_updates, factor):
        super().__init__(base_lr)
        self.warmup_updates, self.step_updates, self.factor = warmup_updates, step_updates, factor

    def __call__(self, num_update):
        if num_update < self.warmup_updates:
            return self.base_lr * (num_update + 1) / (self.warmup_updates + 1)
        return self.base_lr * self.factor ** sum(num_update > step for step in self.step_updates)


def _scan_records(rec_path):
    """(number of records, most objects in one record), checking the label format on the way."""
    reader = mx.recordio.MXRecordIO(rec_path, "r")
    count = max_objects = 0
    while (record := reader.read()) is not None:
        label = mx.recordio.unpack(record)[0].label
        if len(label) < 2 or tuple(label[:2]) != (2, 6) or (len(label) - 2) % 6:
            raise UserError(
                f"{rec_path} record {count}: label is not [2, 6, cls, xmin, ymin, xmax, ymax, difficult, ...]"
            )
        count += 1
        max_objects = max(max_objects, (len(label) - 2) // 6)
    reader.close()
    if count == 0:
        raise UserError(f"{rec_path} holds no images")
    return count, max(max_objects, 1)


def _idx_path(rec_path):
    return os.path.splitext(rec_path)[0] + ".idx"


def _checkpoint_path(folder, epoch, kind):
    return os.path.join(folder, f"{PREFIX}-{epoch:04d}.{kind}")


def _trained_weights_path(folder, epoch):
    """SGD's own weights of a checkpoint: its .sgd.params when it kept a moving average in .params."""
    path = _checkpoint_path(folder, epoch, "sgd.params")
    return path if os.path.exists(path) else _checkpoint_path(folder, epoch, "params")


def _save_checkpoint(module, weights, folder, epoch, averaged):
    """ssd-NNNN.params (the weights validated and deployed), the optimizer state and, with a moving average in
    .params, SGD's own weights as .sgd.params; the state and SGD's weights only of the newest epoch (each is as
    large as the params)."""
    module.save_checkpoint(os.path.join(folder, PREFIX), epoch, save_optimizer_states=True)
    if averaged:
        os.replace(_checkpoint_path(folder, epoch, "params"), _checkpoint_path(folder, epoch, "sgd.params"))
        args, auxs = weights
        arrays = {f"arg:{name}": array for name, array in args.items()}
        arrays.update({f"aux:{name}": array for name, array in auxs.items()})
        mx.nd.save(_checkpoint_path(folder, epoch, "params"), arrays)
    for kind in ("states", "sgd.params"):
        path = _checkpoint_path(folder, epoch - 1, kind)
        if os.path.exists(path):
            os.remove(path)


def _read_log(folder):
    path = os.path.join(folder, PROGRESS_FILE)
    if not os.path.exists(path):
        return []
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def _write_log(folder, rows, name):
    with open(os.path.join(folder, name), "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _format_row(row):
    val = f", val mAP {row['val_map']:.4f}" if row["val_map"] != "" else ""
    return (
        f"epoch {row['epoch']}: lr {row['lr']:.5g}, cls_loss {row['cls_loss']:.4f}, "
        f"loc_loss {row['loc_loss']:.4f}, {row['samples_per_s']:.1f} samples/s, "
        f"{row['seconds']:.1f} s{val}"
    )


if __name__ == "__main__":
    run_main(main)
