"""The deploy model in a form the DeepLens-era MXNet 0.12 loads, and the proof that it detects the same.

MXNet 1.x writes each node's attributes under "attrs"; MXNet 0.12 only knows "attr" and refuses the
file. `export` (mxnet 1.9.1 env) writes the renamed symbol, a copy of the params, and a reference file
with preprocessed val images and MXNet 1.9.1's detections. `verify` (deeplens-mxnet env: mxnet 0.12 and
numpy only) runs the exported model on the same inputs and requires the same labels and boxes, with
scores within a tolerance, for every detection at or above the compared score.
"""

import argparse
import itertools
import json
import shutil
from pathlib import Path

import numpy as np

from workflow.lib.cli import UserError, log, run_main
from workflow.lib.legacy import compare, legacy_symbol_json


def export(deploy_json, val_rec, count, out_dir):
    from workflow.lib.detector import Detector, preprocess, read_records

    detector = Detector(deploy_json)
    info, folder, out_dir = detector.info, Path(deploy_json).parent, Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(info["symbol"]).name[: -len("-symbol.json")] + "_mxnet012"
    (out_dir / f"{stem}-symbol.json").write_text(legacy_symbol_json((folder / info["symbol"]).read_text()))
    params_name = f"{stem}-{info['epoch']:04d}.params"
    shutil.copy2(folder / info["params"], out_dir / params_name)
    images = [image for image, _ in itertools.islice(read_records(val_rec), count)]
    inputs = np.stack([preprocess(image, info["data_shape"]) for image in images])
    outputs = np.concatenate([detector.raw([image]) for image in images])
    np.savez_compressed(out_dir / "reference.npz", inputs=inputs, outputs=outputs)
    (out_dir / "legacy.json").write_text(json.dumps({"symbol": f"{stem}-symbol.json", "params": params_name}, indent=1))
    log(f"legacy: {stem} for MXNet 0.12, reference detections of {len(images)} val images")


def run_legacy_model(folder, inputs):
    import mxnet as mx

    names = json.loads((folder / "legacy.json").read_text())
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
    reference = np.load(folder / "reference.npz")
    version, legacy = run_legacy_model(folder, reference["inputs"])
    result = {"mxnet_version": version, **compare(reference["outputs"], legacy, min_score)}
    Path(out).write_text(json.dumps(result, indent=1))
    if result["mismatches"]:
        raise UserError(f"MXNet {version} detects differently from MXNet 1.9.1: " + "; ".join(result["mismatches"][:5]))
    log(
        f"legacy: MXNet {version} loads the model and matches MXNet 1.9.1 on {result['images']} images "
        f"({result['detections_compared']} detections, max difference {result['max_abs_difference']:.1e})"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.mxnet012", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    exporter = sub.add_parser("export", help="(mxnet 1.9.1) write the MXNet 0.12 form and reference detections")
    exporter.add_argument("--deploy", required=True)
    exporter.add_argument("--val-rec", required=True)
    exporter.add_argument("--images", type=int, default=8)
    exporter.add_argument("--out-dir", required=True)
    checker = sub.add_parser("verify", help="(mxnet 0.12) run the exported model and compare")
    checker.add_argument("--dir", required=True)
    checker.add_argument("--min-score", type=float, required=True)
    checker.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.action == "export":
        export(args.deploy, args.val_rec, args.images, args.out_dir)
    else:
        verify(args.dir, args.min_score, args.out)


if __name__ == "__main__":
    run_main(main)
