"""Optimize stage: an MXNet SSD deploy checkpoint -> OpenVINO IR (FP16 or FP32) and its contract.

The IR is made by the legacy Model Optimizer (`mo`, MXNet front end) of the interpreter's own
environment. Beside N.xml/N.bin it writes N.contract.json: what the IR expects as input and what it
returns, which `workflow/device/infer.py` follows.

The IR holds the network without its MultiBoxDetection: its outputs are what that node takes (every
anchor's class probabilities and box offsets, and the anchors with their variances, PriorBox's), and the
contract carries the node's settings (nms_threshold, force_nms, nms_topk, its score threshold) for the
caller's post-processing (workflow/device/infer.py), which does what MultiBoxDetection does. The Model
Optimizer would turn the node into a DetectionOutput, which differs from it: it suppresses per class only
(force_suppress is dropped), it keeps rows for every class of an anchor rather than its best, and its top-k
counts those rows.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workflow.lib import deploy_graph
from workflow.lib.cli import UserError, log

VARIANCES = [0.1, 0.1, 0.2, 0.2]  # the only ones the Model Optimizer puts into PriorBox
# The precision inference runs at unless a caller asks for another: the one verify_ir proves the IR at. Never the
# CPU plugin's default, which is bf16 on CPUs with AVX512_BF16 or AMX and f32 elsewhere.
INFERENCE_PRECISION = "f32"
LOG_TAIL_LINES = 15


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m workflow.optimize", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--deploy", type=Path, help="deploy.json of the deploy stage (gives symbol, params, data shape)"
    )
    parser.add_argument("--symbol", type=Path, help="deploy symbol, P-symbol.json")
    parser.add_argument("--params", type=Path, help="weights, P-NNNN.params")
    parser.add_argument("--data-shape", type=int, help="square input side in pixels")
    parser.add_argument(
        "--mean-rgb",
        type=float,
        nargs=3,
        default=(123, 117, 104),
        help="the mean the network was trained with (deploy.json's input.mean_rgb with --deploy; "
        "default: MXNet's SSD example's)",
    )
    parser.add_argument("--precision", choices=("FP16", "FP32"), required=True)
    parser.add_argument(
        "--color",
        choices=("RGB", "BGR"),
        required=True,
        help="channel order of the frames given to the IR (OpenCV and awscam frames are BGR)",
    )
    parser.add_argument(
        "--mean-in-ir",
        action=argparse.BooleanOptionalAction,
        required=True,
        help="subtract the mean inside the IR, or leave it to the caller",
    )
    parser.add_argument("--classes", nargs="+", help="class names in class-id order (deploy.json's with --deploy)")
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--log", required=True, type=Path, help="file that keeps the full Model Optimizer output")
    args = parser.parse_args(argv)
    if args.deploy:
        info = json.loads(args.deploy.read_text())
        args.symbol = args.deploy.parent / info["symbol"]
        args.params = args.deploy.parent / info["params"]
        args.data_shape = info["data_shape"]
        args.mean_rgb = info["input"]["mean_rgb"]
        args.classes = info["classes"]
    if not (args.symbol and args.params and args.data_shape):
        parser.error("give --deploy, or --symbol, --params and --data-shape")
    return args


def read_symbol(path):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read the deploy symbol {path}: {error}") from None


def postprocessing_settings(graph, symbol_path):
    """The deploy symbol's MultiBoxDetection settings (deploy_graph.settings) the caller applies, without the
    variances: the IR's anchors output carries them."""
    settings = deploy_graph.settings(graph, symbol_path)
    if settings["variances"] != VARIANCES:
        raise UserError(
            f"{symbol_path}: MultiBoxDetection variances {settings['variances']} are not {VARIANCES}, "
            "the only ones the Model Optimizer puts into PriorBox; the IR would decode boxes wrongly"
        )
    del settings["variances"]
    return settings


def mo_command(args, symbol, params):
    side = args.data_shape
    command = [
        str(Path(sys.executable).parent / "mo"),
        "--input_model",
        str(params),
        "--input_symbol",
        str(symbol),
        "--input_shape",
        f"[1,3,{side},{side}]",
        "--output_dir",
        str(args.out_dir),
        "--model_name",
        args.model_name,
        f"--compress_to_fp16={args.precision == 'FP16'}",
    ]
    if args.mean_in_ir:
        command += ["--mean_values", "[{:g},{:g},{:g}]".format(*args.mean_rgb)]
    if args.color == "BGR":
        command.append("--reverse_input_channels")
    return command


def run_mo(command, header, log_path):
    """Run the Model Optimizer with all its output in log_path; a failure names the log and its last lines."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as out:
        out.write(f"{header}\n{' '.join(command)}\n\n")
        out.flush()
        returncode = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
    if returncode != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-LOG_TAIL_LINES:])
        raise UserError(
            f"the Model Optimizer failed (exit status {returncode}); full output in {log_path}. Last lines:\n{tail}"
        )


def contract(args, settings, outputs):
    mean = list(args.mean_rgb) if args.color == "RGB" else list(reversed(args.mean_rgb))
    return {
        "model": f"{args.model_name}.xml",
        "precision": args.precision,
        "inference_precision": INFERENCE_PRECISION,
        "inference_precision_note": "the INFERENCE_PRECISION_HINT infer.py compiles with unless told otherwise; "
        "the stored weights are `precision`",
        "layout": "NCHW",
        "input_shape": [1, 3, args.data_shape, args.data_shape],
        "resize": "stretch to the input size, aspect ratio not kept",
        "color_order": args.color,
        "mean_values": mean,
        "mean_in_ir": args.mean_in_ir,
        "mean_note": "mean_values are in color_order; the caller subtracts them when mean_in_ir is false",
        "scale": None,
        "outputs": outputs,
        "outputs_note": "class_prob (1, classes + 1, anchors), background first; box_offsets (1, anchors * 4); "
        "anchors (1, 2, anchors * 4): the anchors' corners [xmin, ymin, xmax, ymax], normalised, then their variances",
        "labels": args.classes,
        "nms_in_ir": False,
        **settings,
    }


def output_names(xml, graph, symbol_path):
    """{class_prob, box_offsets, anchors: the IR's name of that output}: the first two keep their MXNet node's name,
    the anchors are the third output (the Model Optimizer names it after the concatenation it folds)."""
    import openvino as ov

    class_prob, box_offsets = (
        f"{name[: -len('_output')]}:0" for name in deploy_graph.output_names(graph, symbol_path)[:2]
    )
    names = {}
    for output in ov.Core().read_model(xml).outputs:
        key = (
            "class_prob"
            if class_prob in output.get_names()
            else "box_offsets"
            if box_offsets in output.get_names()
            else "anchors"
        )
        names[key] = output.get_any_name()
    if len(names) != 3:
        raise UserError(f"{xml}: the IR's outputs are {names}, not class_prob, box_offsets and anchors")
    return names


def fp16_rounded(xml):
    """The IR at xml (FP32 weights) with every f32 constant rounded to FP16: what the FP16 IR of the same conversion
    computes at f32 (measured: equal to the last bit)."""
    import numpy as np
    import openvino as ov
    from openvino.runtime import op

    model = ov.Core().read_model(xml)
    for node in model.get_ordered_ops():
        if node.get_type_name() == "Constant" and node.get_element_type() == ov.Type.f32:
            rounded = node.get_data().astype(np.float16).astype(np.float32)
            node.output(0).replace(op.Constant(rounded).output(0))
    return model


def optimize(args):
    graph = read_symbol(args.symbol)
    settings = postprocessing_settings(graph, args.symbol)
    network = deploy_graph.network_graph(graph, args.symbol)
    if not args.params.is_file():
        raise UserError(f"no such weights file: {args.params}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        # mo takes the epoch from a "-NNNN.params" file name; a link gives it one whatever the real name
        symbol, params = Path(work, "deploy-symbol.json"), Path(work, "deploy-0000.params")
        symbol.write_text(json.dumps(network))
        params.symlink_to(args.params.resolve())
        start = time.monotonic()
        header = (
            f"# {args.symbol} + {args.params}, linked as {params.name}, without its MultiBoxDetection (left to the "
            f"caller: {settings})"
        )
        run_mo(mo_command(args, symbol, params), header, args.log)
    xml = args.out_dir / f"{args.model_name}.xml"
    if not xml.is_file() or not xml.with_suffix(".bin").is_file():
        raise UserError(f"the Model Optimizer wrote no {xml} and .bin; see {args.log}")
    outputs = output_names(xml, graph, args.symbol)
    xml.with_suffix(".contract.json").write_text(json.dumps(contract(args, settings, outputs), indent=2) + "\n")
    log(
        f"optimize: {xml} ({args.precision}, {args.color} input, mean {'inside' if args.mean_in_ir else 'outside'}"
        f" the IR) in {time.monotonic() - start:.0f} s"
    )
    return xml
