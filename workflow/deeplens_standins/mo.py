"""Stand-in for the DeepLens model optimizer module `mo` (on the device only), for rehearsing the DeepLens Lambda
on this machine. It converts with the Model Optimizer of our optimizer environment (OpenVINO 2024.4, MXNet front
end), where the device runs Intel's 2018-2019 one.

Follows the AWS DeepLens Developer Guide (deeplens-model-optimizer-api-methods.md): `mo.optimize(model_name,
input_width, input_height, platform, aux_inputs)` "Optimizes the AWS DeepLens model specified by model_name so that it
runs efficiently on the AWS DeepLens GPU"; the model is "a <model_name>-symbol.json file and a
<model_name>-###.params file"; input_width and input_height are "a non-negative integer less than or equal to
1024"; platform defaults to "mxNet, which is currently the only supported platform". It returns `error` and
`model_path`: error 0 "Model optimizer ran successfully", 1 "The requested platform is not supported", 2 "Model
optimizer failed"; model_path is "the path and the artifact name" to give awscam.Model.

The model files are read from ARTIFACTS (on the device, where the project's model is deployed); the IR is FP16,
the precision of the device's GPU. Like the device, it refuses a graph with a layer outside the list of MXNet
layers the device accepts (error 2). Stand-in only: `convert` makes the same IR with FP32 weights elsewhere, for
the rehearsal's proof.
"""

import glob
import json
import os
import subprocess
import sys

from workflow.deeplens_model import DEEPLENS_LAYERS

ARTIFACTS = "/opt/awscam/artifacts"
log = []  # stand-in only: what each call did, and the Model Optimizer's output when it failed


def optimize(model_name, input_width, input_height, platform="mxNet", aux_inputs=None):
    if platform != "mxNet":
        return 1, ""
    symbol = os.path.join(ARTIFACTS, f"{model_name}-symbol.json")
    params = sorted(glob.glob(os.path.join(ARTIFACTS, f"{model_name}-[0-9][0-9][0-9][0-9].params")))
    if not (os.path.isfile(symbol) and params) or not (0 <= input_width <= 1024 and 0 <= input_height <= 1024):
        log.append(f"no {symbol} with its -NNNN.params, or an input size over 1024")
        return 2, ""
    with open(symbol) as handle:
        unknown = {node["op"] for node in json.load(handle)["nodes"]} - DEEPLENS_LAYERS - {"null"}
    if unknown:
        log.append(f"layers the device does not accept: {sorted(unknown)}")
        return 2, ""
    return convert(model_name, input_width, input_height, ARTIFACTS, compress_to_fp16=True)


def convert(model_name, input_width, input_height, output_dir, compress_to_fp16):
    """Stand-in only: optimize's conversion of the model in ARTIFACTS into output_dir, FP16 weights or FP32."""
    command = [
        os.path.join(os.path.dirname(sys.executable), "mo"),
        "--input_model",
        sorted(glob.glob(os.path.join(ARTIFACTS, f"{model_name}-[0-9][0-9][0-9][0-9].params")))[-1],
        "--input_symbol",
        os.path.join(ARTIFACTS, f"{model_name}-symbol.json"),
        "--input_shape",
        f"[1,3,{input_height},{input_width}]",
        "--output_dir",
        output_dir,
        "--model_name",
        model_name,
        f"--compress_to_fp16={compress_to_fp16}",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    log.append(" ".join(command) + "\n" + result.stdout + result.stderr)
    xml = os.path.join(output_dir, f"{model_name}.xml")
    return (0, xml) if result.returncode == 0 and os.path.isfile(xml) else (2, "")
