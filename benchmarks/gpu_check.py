"""GPU check: does MXNet 1.9.1's CUDA build train this workflow on this machine's GPU, how fast, and to the same model?

For a Linux machine with an NVIDIA driver, Python 3.11 and PyPI reachable, with nothing else installed:

    python3.11 benchmarks/gpu_check.py                         # everything, into results/gpu_check/
    python3.11 benchmarks/gpu_check.py --write-configs-only    # only the two run configs

1. Prints nvidia-smi's GPUs and driver and runs the workflow's own GPU check (orchestrator/gpus.py); with no usable
   NVIDIA GPU at all (no nvidia-smi, no device, driver too old) it stops here, exit 2, before building anything.
2. Builds .venv (Snakemake) and the mxnet and mxnet-cuda environments (workflow.orchestrator.envs; about 4 GB, once).
3. In mxnet-cuda: mx.context.num_gpus(), the time of the first CUDA call and of a small convolution forward and
   backward on GPU 0, and how far its results are from the CPU's; three times, in fresh processes: the second shows
   what the driver's cache (CUDA_CACHE_MAXSIZE, set to its 4 GiB maximum) saves, the third CUDA_MODULE_LOADING=LAZY.
4. Trains the bundled sample's segments (--epochs) through the real workflow up to `evaluate`, with gpus: [0], then
   the same config on the CPU; training uses all cores (--set-threads train_segment=N) in both.
5. Prints samples/s on both, the speed-up, both val mAPs (evaluate/metrics.json) and the phase times, and writes
   them to summary.json and summary.txt in the work folder.

Exit 0 when training on the GPU worked, 1 when it did not (the summary says where it stopped), 2 without a usable
GPU, 3 when the Python is not 3.11.
Standard library only: it runs before anything is installed.
"""

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# both standard library only, like this script
from workflow.lib import cpu  # noqa: E402
from workflow.orchestrator import gpus  # noqa: E402

VENV_PYTHON = REPO / ".venv" / "bin" / "python"
CUDA_CACHE_MAXSIZE = str(4 * 1024**3)  # the largest the driver accepts
GPU_FAILED, NO_GPU, NO_PYTHON = 1, 2, 3

MXNET_PROBE = r"""
import json, time
started = time.monotonic()
import mxnet as mx
import numpy as np
features = mx.runtime.Features()
out = {"mxnet": mx.__version__, "import_s": time.monotonic() - started, "num_gpus": mx.context.num_gpus(),
       "built_with": [name for name in ("CUDA", "CUDNN", "NCCL") if features.is_enabled(name)]}
rng = np.random.RandomState(0)
data, weight = rng.uniform(-1, 1, (8, 3, 64, 64)), rng.uniform(-1, 1, (16, 3, 3, 3))

def forward_backward(context):
    x, w = mx.nd.array(data, ctx=context), mx.nd.array(weight, ctx=context)
    x.attach_grad(), w.attach_grad()
    with mx.autograd.record():
        y = mx.nd.Convolution(x, w, kernel=(3, 3), pad=(1, 1), num_filter=16, no_bias=True)
        loss = (y * y).sum()
    loss.backward()
    return [a.asnumpy() for a in (y, x.grad, w.grad)]

try:
    started = time.monotonic()
    mx.nd.ones((1,), ctx=mx.gpu(0)).wait_to_read()
    out["first_cuda_call_s"] = time.monotonic() - started
    started = time.monotonic()
    on_gpu = forward_backward(mx.gpu(0))
    out["first_conv_s"] = time.monotonic() - started
    started = time.monotonic()
    forward_backward(mx.gpu(0))
    out["second_conv_s"] = time.monotonic() - started
    on_cpu = forward_backward(mx.cpu())
    out["max_relative_difference"] = {name: float(abs(g - c).max() / abs(c).max())
                                      for name, g, c in zip(("output", "data_grad", "weight_grad"), on_gpu, on_cpu)}
except mx.MXNetError as error:
    lines = [line.strip() for line in str(error).splitlines()]
    out["error"] = " | ".join(line for line in lines if line and not line.startswith(("Traceback", "File ", "frame #")))
print("PROBE " + json.dumps(out))
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "results" / "gpu_check", help="work folder")
    parser.add_argument("--epochs", type=int, nargs="+", default=[40, 60], help="the training segments' end epochs")
    parser.add_argument("--lr-steps", type=int, nargs="*", default=[50])
    parser.add_argument("--network", default="lite")
    parser.add_argument("--data-shape", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--write-configs-only", action="store_true", help="write the two configs and stop")
    return parser.parse_args(argv)


def run_configs(options):
    """The GPU and the CPU run's config overrides: the same training, only gpus differs."""
    base = {
        "dataset": str(REPO / "data" / "sample"),
        "network": options.network,
        "pretrained": "imagenet" if options.network == "efficientnet_lite0" else None,
        "data_shape": options.data_shape,
        "batch_size": options.batch_size,
        "epochs": options.epochs,
        "lr_steps": options.lr_steps,
    }
    return {"gpu": dict(base, run="gpu", gpus=[0]), "cpu": dict(base, run="cpu", gpus=[])}


def write_configs(options):
    options.work.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, config in run_configs(options).items():
        paths[name] = options.work / f"{name}.json"  # JSON is YAML: Snakemake reads it as a config file
        paths[name].write_text(json.dumps(config, indent=1) + "\n")
    return paths


def say(text):
    print(text, flush=True)


def timed(summary, phase, function, *args):
    started = time.monotonic()
    result = function(*args)
    summary["seconds"][phase] = round(time.monotonic() - started, 1)
    return result


def check_gpu(summary):
    """nvidia-smi's view and the workflow's verdict; what is missing when there is no usable GPU at all, else None."""
    try:
        summary["gpus"] = gpus.query()
        for row in summary["gpus"]:
            say(f"nvidia-smi: {gpus.describe(row)}")
        gpus.check([0])
        summary["workflow_check"] = "passed"
    except gpus.UnsupportedGpu as error:  # go on: MXNet's own error on this GPU is what the check is for
        summary["workflow_check"] = str(error)
    except gpus.GpuError as error:
        summary["workflow_check"] = str(error)
        return str(error)
    say(f"workflow GPU check: {summary['workflow_check']}")
    return None


def build_environments():
    if not VENV_PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(REPO / ".venv")], check=True)
    subprocess.run(
        [
            str(VENV_PYTHON),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(REPO / "envs" / "orchestrator.txt"),
        ],
        check=True,
    )
    subprocess.run(
        [str(VENV_PYTHON), "-m", "workflow.orchestrator.envs", "build", "mxnet", "mxnet-cuda"], check=True, cwd=REPO
    )


def probe_mxnet(extra_env):
    command = [
        str(VENV_PYTHON),
        "-m",
        "workflow.orchestrator.envs",
        "exec",
        "mxnet-cuda",
        "--",
        "python",
        "-c",
        MXNET_PROBE,
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=dict(os.environ, **extra_env))
    lines = [line for line in result.stdout.splitlines() if line.startswith("PROBE ")]
    if not lines:
        return {"error": f"exit {result.returncode}: {(result.stderr or result.stdout).strip()[-800:]}"}
    return json.loads(lines[-1][len("PROBE ") :])


def train_run(options, name, config_path):
    """The workflow up to evaluate for one config; the figures of its training and evaluation."""
    command = [
        str(VENV_PYTHON),
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(options.work),
        "evaluate",
        "--cores",
        str(options.cores),
        "--set-threads",
        f"train_segment={options.cores}",
        "--configfile",
        str(config_path),
    ]
    started = time.monotonic()
    with open(options.work / f"{name}.snakemake.log", "w") as log:
        returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    figures = {"workflow_s": round(time.monotonic() - started, 1), "exit": returncode}
    run = options.work / "results" / name
    if returncode != 0:
        logs = sorted((run / "logs").glob("train_epoch_*.log"), key=os.path.getmtime)
        source = logs[-1] if logs else options.work / f"{name}.snakemake.log"
        figures["error"] = " | ".join(source.read_text().strip().splitlines()[-6:])[-1200:]
        return figures
    return dict(figures, **training_figures(run, options.epochs[-1]))


def training_figures(run, last_stop):
    """samples/s (median over epochs: the first of each segment also pays for start-up), val mAPs, training time."""
    with open(run / "train" / f"epoch_{last_stop}" / "log.csv") as file:
        rows = list(csv.DictReader(file))
    speeds = [float(row["samples_per_s"]) for row in rows]
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    return {
        "epochs": len(rows),
        "samples_per_s": round(statistics.median(speeds), 2),
        "first_epoch_samples_per_s": round(speeds[0], 2),
        "train_s": round(sum(float(row["seconds"]) for row in rows), 1),
        "last_epoch_val_map": float(rows[-1]["val_map"]),
        "val_map_voc07": metrics["map_voc07"],
    }


def report(summary, options):
    (options.work / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = [f"CPU: {summary['cpu']}, {options.cores} cores"]
    lines += [f"GPU: {gpus.describe(row)}" for row in summary.get("gpus", [])]
    lines.append(f"workflow GPU check: {summary.get('workflow_check', '-')}")
    for name, probe in summary.get("probes", {}).items():
        if "error" in probe:
            lines.append(f"MXNet probe ({name}): FAILED: {probe['error']}")
        else:
            lines.append(
                f"MXNet probe ({name}): num_gpus {probe['num_gpus']}, import {probe['import_s']:.1f} s, "
                f"first CUDA call {probe['first_cuda_call_s']:.2f} s, first conv fwd+bwd "
                f"{probe['first_conv_s']:.2f} s, second {probe['second_conv_s']:.3f} s, GPU vs CPU max "
                f"relative difference {probe['max_relative_difference']}"
            )
    for name in ("gpu", "cpu"):
        run = summary.get("runs", {}).get(name)
        if run and "error" in run:
            lines.append(f"{name.upper()} training: FAILED (exit {run['exit']}): {run['error']}")
        elif run:
            lines.append(
                f"{name.upper()} training: {run['samples_per_s']} samples/s (median of {run['epochs']} "
                f"epochs, first {run['first_epoch_samples_per_s']}), training {run['train_s']} s, workflow "
                f"{run['workflow_s']} s, val mAP VOC07 {run['val_map_voc07']:.4f}"
            )
    runs = summary.get("runs", {})
    if all("samples_per_s" in runs.get(name, {}) for name in ("gpu", "cpu")):
        lines.append(
            f"speed-up GPU/CPU: {runs['gpu']['samples_per_s'] / runs['cpu']['samples_per_s']:.1f}x, "
            f"val mAP difference GPU-CPU: {runs['gpu']['val_map_voc07'] - runs['cpu']['val_map_voc07']:+.4f}"
        )
    lines.append(f"phase times (s): {summary['seconds']}")
    text = "\n".join(lines) + "\n"
    (options.work / "summary.txt").write_text(text)
    say("\n== GPU check summary ==\n" + text)


def main(argv=None):
    options = parse_args(argv)
    configs = write_configs(options)
    if options.write_configs_only:
        say("\n".join(f"{name}: {path}" for name, path in configs.items()))
        return 0
    os.environ["CUDA_CACHE_MAXSIZE"] = CUDA_CACHE_MAXSIZE
    summary = {"cpu": cpu.one_line(), "cores": options.cores, "config": run_configs(options)["gpu"], "seconds": {}}
    no_gpu = check_gpu(summary)
    if no_gpu:
        report(summary, options)
        say(f"ERROR: no NVIDIA GPU usable here: {no_gpu}. Nothing was built.")
        return NO_GPU
    if sys.version_info[:2] != (3, 11):
        say(
            f"ERROR: run this with Python 3.11, not {platform.python_version()}: the environments' locks pin "
            "numpy 1.23.5, which has no wheels for newer Pythons."
        )
        return NO_PYTHON
    try:
        timed(summary, "build_environments", build_environments)
    except subprocess.CalledProcessError as error:
        summary["build_error"] = f"{' '.join(error.cmd[-4:])} failed with exit {error.returncode} (its output is above)"
        report(summary, options)
        say(f"ERROR: building the environments failed: {summary['build_error']}")
        return GPU_FAILED
    summary["probes"] = {}
    for name, extra in [("first", {}), ("again", {}), ("lazy loading", {"CUDA_MODULE_LOADING": "LAZY"})]:
        summary["probes"][name] = timed(summary, f"probe {name}", probe_mxnet, extra)
        say(f"MXNet probe ({name}): {json.dumps(summary['probes'][name])}")
    summary["runs"] = {"gpu": timed(summary, "gpu_run", train_run, options, "gpu", configs["gpu"])}
    if "error" not in summary["runs"]["gpu"]:
        summary["runs"]["cpu"] = timed(summary, "cpu_run", train_run, options, "cpu", configs["cpu"])
    report(summary, options)
    return 0 if "error" not in summary["runs"]["gpu"] else GPU_FAILED


if __name__ == "__main__":
    sys.exit(main())
