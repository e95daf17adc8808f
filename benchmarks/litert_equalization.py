"""What activation-range equalization does to the LiteRT INT8 model: on a finished run (litert: true), the INT8
model made by export_litert's own conversion from network.onnx as it is and equalized with several settings, each
proven on the val images as export_litert proves it. Runs in the litert environment:

    .venv/bin/python -m workflow.orchestrator.envs exec litert -- python benchmarks/litert_equalization.py --run sample

Prints one markdown table (equalization, INT8 val mAP against MXNet's, share of MXNet's detections paired at IoU
0.9) and the CPU's model name and flags. About a minute per setting on 2 cores.
"""

import argparse
import json
import tempfile
from pathlib import Path

from common import REPO, cpu_line

import onnx

from workflow import export_litert
from workflow.device import litert_infer
from workflow.lib import equalization
from workflow.lib.detector import Detector

# (exponent before pointwise convs, largest gain); None: network.onnx as it is
SETTINGS = [None, (equalization.EXPONENT, equalization.MAX_GAIN), (0.5, 30.0), (1.0, 30.0), (0.75, 1000.0)]


def onnx_model(network, calibration, setting):
    if setting is None:
        return onnx.load(network)
    exponent, max_gain = setting
    return export_litert.equalized(network, calibration, exponent=exponent, max_gain=max_gain)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="sample", help="a finished run under results/ with litert: true")
    args = parser.parse_args()
    run = REPO / "results" / args.run
    detector = Detector(str(run / "deploy" / "deploy.json"))
    calibration = export_litert.calibration_images(str(run / "pack" / "train.rec"), detector.data_shape)
    network = run / "export_onnx" / "network.onnx"
    network_contract = json.loads(network.with_suffix(".onnx.contract.json").read_text())
    proof = argparse.Namespace(min_score=0.5, iou_threshold=0.5, max_map_drop=1.0)
    rows = []
    for setting in SETTINGS:
        with tempfile.TemporaryDirectory() as folder:
            out_dir = Path(folder)
            models = {"int8": "model_int8.tflite"}
            export_litert.convert(onnx_model(network, calibration, setting), calibration, models, out_dir)
            contract = export_litert.litert_contract(network_contract, models)
            (out_dir / litert_infer.CONTRACT).write_text(json.dumps(contract))
            result = export_litert.prove(detector, out_dir, contract, str(run / "pack" / "val.rec"), proof)
        name = "none" if setting is None else f"exponent {setting[0]}, gain at most {setting[1]:g}"
        paired = result["int8_paired"]["agreement"]
        rows.append(
            f"| {name} | {result['int8_map_voc07']:.4f} (MXNet {result['mxnet_map_voc07']:.4f}) | {paired:.0%} |"
        )
        print(rows[-1], flush=True)
    print(f"\nrun {args.run}, {result['images']} val images, {len(calibration)} calibration images")
    print("| equalization | INT8 val mAP | MXNet's detections paired |\n|---|---|---|\n" + "\n".join(rows))
    print(f"CPU: {cpu_line()}")


if __name__ == "__main__":
    main()
