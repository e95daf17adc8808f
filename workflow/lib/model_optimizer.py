"""Optimize stage: an MXNet SSD deploy checkpoint -> OpenVINO IR (FP16 or FP32) and its contract.

The IR is made by the legacy Model Optimizer (`mo`, MXNet front end) of the interpreter's own
environment. Beside N.xml/N.bin it writes N.contract.json: what the IR expects as input and what it
returns, which `workflow/device/infer.py` follows.

The IR does no non-maximum suppression. The Model Optimizer turns MultiBoxDetection into a
DetectionOutput that always suppresses per class (force_suppress is dropped), and per-class
suppression followed by a cross-class one keeps fewer boxes than MXNet's single cross-class pass.
So the converted graph keeps every candidate (nms_threshold 1) and the contract carries the deploy
symbol's NMS settings for the caller, which then reproduces MXNet's detections exactly.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workflow.lib.cli import UserError, log

VARIANCES = (0.1, 0.1, 0.2, 0.2)
DETECTION_OP = "_contrib_MultiBoxDetection"
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
    if not (args.symbol and args.params and args.data_shape):
        parser.error("give --deploy, or --symbol, --params and --data-shape")
    return args


def read_symbol(path):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read the deploy symbol {path}: {error}") from None


def detection_attrs(graph, symbol_path):
    """The attributes of the graph's one MultiBoxDetection node (a dict that can be edited in place)."""
    nodes = [node for node in graph.get("nodes", []) if node.get("op") == DETECTION_OP]
    if len(nodes) != 1:
        raise UserError(f"{symbol_path} has {len(nodes)} MultiBoxDetection nodes; an SSD deploy symbol has one")
    return nodes[0].setdefault("attrs", {})


def mxnet_bool(text):
    return text.strip().lower() in ("true", "1")


def nms_settings(attrs, symbol_path):
    """force_nms and nms_threshold of the deploy symbol, with MXNet's defaults for absent attributes."""
    variances = tuple(float(v) for v in attrs.get("variances", "()").strip("()[] ").split(",") if v.strip())
    if variances and variances != VARIANCES:
        raise UserError(
            f"{symbol_path}: MultiBoxDetection variances {variances} are not {VARIANCES}, "
            "the only ones the Model Optimizer puts into PriorBox; the IR would decode boxes wrongly"
        )
    return {
        "force_nms": mxnet_bool(attrs.get("force_suppress", "False")),
        "nms_threshold": float(attrs.get("nms_threshold", "0.5")),
    }


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


def contract(args, nms):
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
        "output": "[1, 1, top_k, 7] rows (image_id, label, score, xmin, ymin, xmax, ymax), boxes normalised "
        "to [0, 1], grouped by label; image_id -1 ends the list",
        "labels": "0-based class ids as in MXNet (background removed)",
        "nms_in_ir": False,
        **nms,
    }


def optimize(args):
    graph = read_symbol(args.symbol)
    attrs = detection_attrs(graph, args.symbol)
    nms = nms_settings(attrs, args.symbol)
    attrs["nms_threshold"] = "1"  # IoU > 1 never happens: DetectionOutput keeps every candidate
    if not args.params.is_file():
        raise UserError(f"no such weights file: {args.params}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        # mo takes the epoch from a "-NNNN.params" file name; a link gives it one whatever the real name
        symbol, params = Path(work, "deploy-symbol.json"), Path(work, "deploy-0000.params")
        symbol.write_text(json.dumps(graph))
        params.symlink_to(args.params.resolve())
        start = time.monotonic()
        header = (
            f"# {args.symbol} + {args.params}, linked as {params.name}; its MultiBoxDetection has "
            f"nms_threshold 1 here (NMS is left to the caller: {nms})"
        )
        run_mo(mo_command(args, symbol, params), header, args.log)
    xml = args.out_dir / f"{args.model_name}.xml"
    if not xml.is_file() or not xml.with_suffix(".bin").is_file():
        raise UserError(f"the Model Optimizer wrote no {xml} and .bin; see {args.log}")
    xml.with_suffix(".contract.json").write_text(json.dumps(contract(args, nms), indent=2) + "\n")
    log(
        f"optimize: {xml} ({args.precision}, {args.color} input, mean {'inside' if args.mean_in_ir else 'outside'}"
        f" the IR) in {time.monotonic() - start:.0f} s"
    )
    return xml
