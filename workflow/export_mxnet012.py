"""export_mxnet012: the deploy model in the form the DeepLens-era MXNet 0.12 loads, with MXNet 1.9.1's reference.

MXNet 1.x writes each node's attributes under "attrs"; MXNet 0.12 only knows "attr" and refuses the file. This
stage (mxnet 1.9.1) writes the renamed symbol, a copy of the params, and the reference verify_mxnet012 holds MXNet
0.12 to (workflow/lib/proof.py): preprocessed val images with MXNet 1.9.1's network outputs (class probabilities, box
offsets) and anchors, and synthetic network outputs with the detections the deploy graph's MultiBoxDetection keeps on
them in MXNet 1.9.1.
"""

import argparse
import itertools
import json
import shutil
from pathlib import Path

import numpy as np

from workflow.lib import proof
from workflow.lib.cli import log, run_main
from workflow.lib.detector import Detector, preprocess, read_records
from workflow.lib.mxnet012 import REFERENCE, SUMMARY, mxnet012_symbol_json
from workflow.lib.networks import VARIANCES


def export(deploy_json, val_rec, count, out_dir):
    detector = Detector(deploy_json)
    info, folder, out_dir = detector.info, Path(deploy_json).parent, Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(info["symbol"]).name[: -len("-symbol.json")] + "_mxnet012"
    (out_dir / f"{stem}-symbol.json").write_text(mxnet012_symbol_json((folder / info["symbol"]).read_text()))
    params_name = f"{stem}-{info['epoch']:04d}.params"
    shutil.copy2(folder / info["params"], out_dir / params_name)
    images = [image for image, _ in itertools.islice(read_records(val_rec), count)]
    inputs = np.stack([preprocess(image, info["data_shape"]) for image in images])
    class_prob, offsets = (np.stack(outputs) for outputs in zip(*(detector.network_outputs(image) for image in images)))
    synthetic = proof.synthetic_outputs(detector.anchors, VARIANCES, len(info["classes"]), detector.settings)
    detections = [detector.postprocess(prob, box_offsets) for prob, box_offsets in synthetic]
    np.savez_compressed(
        out_dir / REFERENCE,
        inputs=inputs,
        class_prob=class_prob,
        box_offsets=offsets,
        anchors=detector.anchors,
        variances=np.asarray(VARIANCES, np.float32),
        synthetic_class_prob=np.stack([prob for prob, _ in synthetic]),
        synthetic_box_offsets=np.stack([box_offsets for _, box_offsets in synthetic]),
        detections=np.concatenate(detections),
        detection_counts=np.array([len(rows) for rows in detections]),
    )
    (out_dir / SUMMARY).write_text(json.dumps({"symbol": f"{stem}-symbol.json", "params": params_name}, indent=1))
    log(
        f"export_mxnet012: {stem} for MXNet 0.12; MXNet 1.9.1's network outputs on {len(images)} val images and its "
        f"detections on {len(synthetic)} synthetic network outputs as the reference"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.export_mxnet012", description=__doc__.split("\n\n")[0])
    parser.add_argument("--deploy", required=True)
    parser.add_argument("--val-rec", required=True)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    export(args.deploy, args.val_rec, args.images, args.out_dir)


if __name__ == "__main__":
    run_main(main)
