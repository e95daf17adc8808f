"""verify_mxnet012: MXNet 0.12 (the DeepLens' version; mxnet012 environment: mxnet 0.12 and numpy only) loads what
export_mxnet012 wrote and detects the same as MXNet 1.9.1: the same labels and boxes, with scores within a
tolerance, for every detection at or above the compared score.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from workflow.lib.cli import UserError, log, run_main
from workflow.lib.mxnet012 import REFERENCE, SUMMARY, compare


def run_mxnet012_model(folder, inputs):
    import mxnet as mx

    names = json.loads((folder / SUMMARY).read_text())
    symbol = mx.sym.load(str(folder / names["symbol"]))
    params = mx.nd.load(str(folder / names["params"]))
    executor = symbol.simple_bind(mx.cpu(), data=(1,) + inputs.shape[1:], grad_req="null")
    for key, value in params.items():
        kind, name = key.split(":", 1)
        (executor.arg_dict if kind == "arg" else executor.aux_dict)[name][:] = value
    outputs = []
    for single in inputs:
        executor.arg_dict["data"][:] = single[None]
        executor.forward(is_train=False)
        outputs.append(executor.outputs[0].asnumpy()[0])
    return mx.__version__, np.stack(outputs)


def verify(folder, min_score, out):
    folder = Path(folder)
    reference = np.load(folder / REFERENCE)
    version, outputs = run_mxnet012_model(folder, reference["inputs"])
    result = {"mxnet_version": version, **compare(reference["outputs"], outputs, min_score)}
    Path(out).write_text(json.dumps(result, indent=1))
    if result["mismatches"]:
        raise UserError(f"MXNet {version} detects differently from MXNet 1.9.1: " + "; ".join(result["mismatches"][:5]))
    log(
        f"verify_mxnet012: MXNet {version} loads the model and matches MXNet 1.9.1 on {result['images']} images "
        f"({result['detections_compared']} detections, max difference {result['max_abs_difference']:.1e})"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.verify_mxnet012", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True, help="export_mxnet012's folder")
    parser.add_argument("--min-score", type=float, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    verify(args.dir, args.min_score, args.out)


if __name__ == "__main__":
    run_main(main)
