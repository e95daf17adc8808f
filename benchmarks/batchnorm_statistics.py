"""What BatchNorm statistics measured again after training add (precise BN: Wu and Johnson, "Rethinking 'Batch' in
BatchNorm", 2021; Detectron2's update_bn_stats): the deployed model against the same weights with the moving
statistics of every trained BatchNorm replaced by their mean over whole passes of training images.

MXNet keeps each BatchNorm's statistics as a moving average with momentum 0.9, which at batches of 8 reflects about
the last ten batches (80 augmented images) of the last epoch. Here the deploy graph runs in training mode, every
BatchNorm normalising with its batch's statistics as in training, over `--passes` passes of the training records
(augmented as training augments them, or `--plain`: only resized, as val images are), and the inputs of the trained
BatchNorms are read out. The mean over the batches of the batch means, and of the batch variances plus the variance
of the batch means (the law of total variance), replace the moving statistics. The BatchNorms of frozen layers
(`freeze` of the config) keep theirs, as training does. (MXNet updates the moving statistics in the backward pass,
apache/mxnet#853, so a forward pass alone cannot collect them.)

For each finished run prints the deployed VOC07 (force_nms, as deployed) with its own statistics and with the
measured ones, the paired difference with its bootstrap interval, then the mean over the runs and the CPU.

    OMP_NUM_THREADS=2 .venv/bin/python -m workflow.orchestrator.envs exec mxnet -- \\
        python benchmarks/batchnorm_statistics.py results/cards_budget-0 results/cards_budget-1 results/cards_budget-2
"""

import os

os.environ.setdefault("MXNET_SUBGRAPH_BACKEND", "NONE")  # its fused graph cannot bind internal outputs

import argparse
import json
import types
from pathlib import Path

import mxnet as mx
import numpy as np
import yaml
from common import REPO, cpu_line
from weight_average import matched

from workflow import train
from workflow.evaluate import BATCH
from workflow.lib.detector import Detector
from workflow.lib.metrics import paired_difference


def trained_batchnorms(symbol, freeze):
    """Names of the BatchNorm nodes whose gamma training trains (not frozen by the freeze pattern)."""
    frozen = set(train.frozen_parameters(symbol, freeze))
    graph = json.loads(symbol.tojson())
    names = [node["name"] for node in graph["nodes"] if node["op"] == "BatchNorm"]
    return [name for name in names if f"{name}_gamma" not in frozen]


def with_inputs_of(symbol, trained):
    """The graph with its frozen BatchNorms on their global statistics (as training has them) and, as its outputs,
    the inputs of the trained BatchNorms, in the order of `trained`."""
    graph = json.loads(symbol.tojson())
    sources = {}
    for node in graph["nodes"]:
        if node["op"] == "BatchNorm":
            if node["name"] in trained:
                sources[node["name"]] = graph["nodes"][node["inputs"][0][0]]["name"]
            else:
                node["attrs"]["use_global_stats"] = "True"
    internals = mx.sym.load_json(json.dumps(graph)).get_internals()
    return mx.sym.Group([internals[f"{sources[name]}_output"] for name in trained])


def measured_statistics(detector, trained, train_rec, augment, passes, seed):
    """{aux name: array} of the trained BatchNorms' statistics over `passes` passes of the training records: the
    graph runs in training mode, so that every BatchNorm normalises with its batch's statistics, as in training."""
    info = detector.info
    symbol = with_inputs_of(detector.module.symbol, trained)
    args, auxs = detector.module.get_params()
    side = info["data_shape"]
    options = types.SimpleNamespace(batch_size=8, data_shape=side, threads=2, mirror=False)
    max_objects = train._scan_records(str(train_rec))[1]
    records = train._record_iter(str(train_rec), options, seed=seed, augment=augment, max_objects=max_objects)
    module = mx.mod.Module(symbol, data_names=["data"], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[("data", (options.batch_size, 3, side, side))], for_training=False)
    module.set_params(args, auxs, allow_extra=True)
    means = {name: [] for name in trained}
    variances = {name: [] for name in trained}
    for _ in range(passes):
        for batch in records:
            if batch.pad:
                continue
            module.forward(mx.io.DataBatch(batch.data), is_train=True)
            for name, output in zip(trained, module.get_outputs()):
                values = output.asnumpy().astype(np.float64)
                means[name].append(values.mean(axis=(0, 2, 3)))
                variances[name].append(values.var(axis=(0, 2, 3)))
        records.reset()
    measured = {}
    for name in trained:
        batch_means = np.stack(means[name])
        measured[f"{name}_moving_mean"] = mx.nd.array(batch_means.mean(axis=0))
        measured[f"{name}_moving_var"] = mx.nd.array(np.stack(variances[name]).mean(axis=0) + batch_means.var(axis=0))
    return measured


def compare(run, freeze, augment, passes):
    """(VOC07 as deployed, VOC07 with measured statistics, their paired difference) of one finished run."""
    deploy_info = run / "deploy" / "deploy.json"
    settings = json.loads((run / "evaluate" / "metrics.json").read_text())
    deployed = Detector(deploy_info, batch_size=BATCH)
    trained = trained_batchnorms(deployed.module.symbol, freeze)
    measured = measured_statistics(deployed, trained, run / "pack" / "train.rec", augment, passes, seed=1)
    args, auxs = deployed.module.get_params()
    remeasured = Detector.from_graph(
        deployed.info, deployed.module.symbol, args, {**auxs, **measured}, batch_size=BATCH
    )
    before, after = matched(deployed, run, settings), matched(remeasured, run, settings)
    return before.result().map_voc07, after.result().map_voc07, paired_difference(after, before)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="results/<run> folders of finished runs")
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml", help="the runs' config (for freeze)")
    parser.add_argument("--plain", action="store_true", help="measure on the training images without augmentation")
    parser.add_argument("--passes", type=int, default=1, help="passes over the training records")
    options = parser.parse_args()
    freeze = yaml.safe_load(options.config.read_text())["freeze"]
    kind = "plain" if options.plain else "augmented"
    print(f"| run | as deployed | {kind} statistics, {options.passes} pass(es) | difference (95% paired interval) |")
    print("|---|---|---|---|")
    figures = []
    for run in options.runs:
        before, after, difference = compare(run, freeze, not options.plain, options.passes)
        figures.append((before, after))
        interval = f"{difference['difference']:+.3f} ({difference['low']:+.3f} to {difference['high']:+.3f})"
        print(f"| {run.name} | {before:.3f} | {after:.3f} | {interval} |", flush=True)
    before, after = np.array(figures).T
    spread = 1 if len(figures) > 1 else 0
    print(
        f"| mean +- sd of {len(figures)} | {before.mean():.3f} +- {before.std(ddof=spread):.3f} | "
        f"{after.mean():.3f} +- {after.std(ddof=spread):.3f} | {np.mean(after - before):+.3f} |"
    )
    print(f"CPU: {cpu_line()}")


if __name__ == "__main__":
    main()
