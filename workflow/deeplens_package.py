"""deeplens_package: the DeepLens inference Lambda as the Lambda console's "Upload a .zip file" takes it.

Runs in the mxnet012 environment (MXNet 0.12, the DeepLens' version, and the pinned greengrasssdk). Writes
into the DeepLens folder: lambda_function.py and local_display.py (workflow/device/deeplens/), model.json (the
model's name and input size for mo.optimize, its NMS, the default score threshold chosen on val), labels.txt, and
deeplens-<run>-lambda.zip holding those four files and the greengrasssdk package, as the Developer Guide's
inference function template does (its copy comes from this environment's lock: nothing is downloaded). Before
that, MXNet 0.12 loads the DeepLens model and runs it once, as the device's optimizer will read it.
"""

import argparse
import importlib.metadata
import importlib.util
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np

from workflow.lib.cli import UserError, log, run_main

DEVICE_CODE = Path(__file__).resolve().parent / "device" / "deeplens"
LAMBDA_FILES = ("lambda_function.py", "local_display.py", "model.json", "labels.txt")
FALLBACK_THRESHOLD = 0.5  # as infer.py's, where val gave no detections to choose one from
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the same files give the same zip


def check_with_mxnet012(model_dir, description):
    """Load and run the DeepLens model in MXNet 0.12: its version and the output shape of one raw frame."""
    import mxnet as mx

    symbol = mx.sym.load(str(model_dir / description["symbol"]))
    shape = (1, 3, description["input_height"], description["input_width"])
    executor = symbol.simple_bind(mx.cpu(), data=shape, grad_req="null")
    for key, value in mx.nd.load(str(model_dir / description["params"])).items():
        kind, name = key.split(":", 1)
        (executor.arg_dict if kind == "arg" else executor.aux_dict)[name][:] = value
    executor.arg_dict["data"][:] = np.full(shape, 128, dtype=np.float32)
    executor.forward(is_train=False)
    return {"mxnet_version": mx.__version__, "output_shape": list(executor.outputs[0].shape)}


def model_settings(description, metrics):
    chosen = metrics["score_threshold"]["overall"]["threshold"]
    return {
        **{
            key: description[key] for key in ("model_name", "input_width", "input_height", "force_nms", "nms_threshold")
        },
        "score_threshold": FALLBACK_THRESHOLD if chosen is None else chosen,
    }


def greengrasssdk_folder():
    spec = importlib.util.find_spec("greengrasssdk")
    if spec is None:
        raise UserError("greengrasssdk is not installed in this environment (envs/mxnet012.txt pins it)")
    return Path(next(iter(spec.submodule_search_locations)))


def write_zip(path, folder, sdk):
    entries = [(folder / name, name) for name in LAMBDA_FILES]
    entries += [
        (file, f"greengrasssdk/{file.relative_to(sdk)}")
        for file in sorted(sdk.rglob("*"))
        if file.is_file() and "__pycache__" not in file.parts
    ]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for source, name in entries:
            info = zipfile.ZipInfo(name, ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, source.read_bytes())
    return [name for _, name in entries]


def package(args):
    description = json.loads(Path(args.model_info).read_text())
    model_dir = Path(args.model_info).parent / "model"
    legacy_check = check_with_mxnet012(model_dir, description)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("lambda_function.py", "local_display.py"):
        shutil.copy2(DEVICE_CODE / name, out / name)
    settings = model_settings(description, json.loads(Path(args.metrics).read_text()))
    (out / "model.json").write_text(json.dumps(settings, indent=1) + "\n")
    (out / "labels.txt").write_text("".join(f"{name}\n" for name in description["classes"]))
    sdk = greengrasssdk_folder()
    entries = write_zip(out / args.zip_name, out, sdk)
    version = importlib.metadata.version("greengrasssdk")
    summary = {
        "zip": args.zip_name,
        "zip_entries": entries,
        "greengrasssdk_version": version,
        "model_json": settings,
        "mxnet012_check": legacy_check,
    }
    Path(args.out).write_text(json.dumps(summary, indent=1))
    log(
        f"deeplens_package: {args.zip_name} ({len(entries)} files, greengrasssdk {version}); MXNet "
        f"{legacy_check['mxnet_version']} runs the DeepLens model (output {legacy_check['output_shape']})"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.deeplens_package", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-info", required=True, help="deeplens_model.json, beside the model/ folder")
    parser.add_argument("--metrics", required=True, help="evaluate's metrics.json (the score threshold)")
    parser.add_argument("--out-dir", required=True, help="the folder for the Lambda's files")
    parser.add_argument("--zip-name", required=True, help="file name of the Lambda zip, written in --out-dir")
    parser.add_argument("--out", required=True, help="package.json to write")
    package(parser.parse_args(argv))


if __name__ == "__main__":
    run_main(main)
