"""Can this machine train on the GPUs the config names? python -m workflow.orchestrator.gpus --gpus 0,1

Asks nvidia-smi (it comes with the NVIDIA driver) and stops with what it found: no nvidia-smi, nvidia-smi
failing, no device, fewer devices than asked for, a driver too old for CUDA 11, or only GPUs that MXNet 1.9.1's
CUDA build has no machine code for. The train stage runs it before it builds the large mxnet-cuda environment.

Standard library only: it runs with whatever Python runs Snakemake.
"""

import argparse
import os
import shutil
import subprocess
import sys

# Oldest driver that runs CUDA 11.x applications (minor version compatibility; NVIDIA's CUDA compatibility guide).
MIN_DRIVER = "450.80.02"
# Compute capabilities that libmxnet.so of mxnet-cu112 1.9.1 has machine code (SASS) for: its .nv_fatbin section
# holds sm_50, sm_60, sm_70, sm_80 and sm_86 and no PTX, so nothing can be compiled for a newer GPU. Code built
# for X.y runs on X.z with z >= y: Maxwell to Ada (8.9) run it, Hopper (9.0) and later do not.
MXNET_SASS = ((5, 0), (6, 0), (7, 0), (8, 0), (8, 6))
FIELDS = ("index", "name", "driver_version", "compute_cap")


class GpuError(Exception):
    pass


class UnsupportedGpu(GpuError):
    """A GPU is there, but MXNet's kernels cannot run on it."""


def version_tuple(text):
    return tuple(int(part) for part in text.split("."))


def mxnet_runs_on(compute_cap):
    major, minor = version_tuple(compute_cap)
    return any(major == sass_major and minor >= sass_minor for sass_major, sass_minor in MXNET_SASS)


def query(environ=os.environ):
    """One dict per GPU nvidia-smi lists (compute_cap is '' where the driver's nvidia-smi cannot report it)."""
    nvidia_smi = shutil.which("nvidia-smi", path=environ.get("PATH", os.defpath))
    if not nvidia_smi:
        raise GpuError("no nvidia-smi on PATH: this machine has no NVIDIA driver installed")
    result = _nvidia_smi(nvidia_smi, FIELDS)
    if result.returncode != 0 and "compute_cap" in result.stdout + result.stderr:  # drivers before 510
        result = _nvidia_smi(nvidia_smi, FIELDS[:-1])
    said = (result.stdout + result.stderr).strip()
    if result.returncode != 0 and "No devices were found" not in said:
        raise GpuError(f"nvidia-smi failed (exit {result.returncode}): {said}")
    rows = [
        dict(zip(FIELDS, (cell.strip() for cell in line.split(","))))
        for line in result.stdout.splitlines()
        if line.strip() and "No devices were found" not in line
    ]
    if not rows:
        raise GpuError(f"nvidia-smi finds no GPU device ({said or 'it printed nothing'})")
    return [dict(row, compute_cap=row.get("compute_cap", "")) for row in rows]


def _nvidia_smi(nvidia_smi, fields):
    command = [nvidia_smi, f"--query-gpu={','.join(fields)}", "--format=csv,noheader"]
    return subprocess.run(command, capture_output=True, text=True)


def visible(rows, environ=os.environ):
    """The GPUs CUDA will number 0, 1, ...: all of them, or those CUDA_VISIBLE_DEVICES names."""
    names = environ.get("CUDA_VISIBLE_DEVICES")
    if names is None:
        return rows
    by_index = {row["index"]: row for row in rows}
    picked = []
    for entry in (part.strip() for part in names.split(",")):
        if not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
            break  # CUDA ignores an invalid entry and every entry after it
        # A UUID, or an index that nvidia-smi numbers otherwise (a Slurm job's cgroup renumbers): taken to be a GPU
        # like the first one listed.
        picked.append(by_index.get(entry, dict(rows[0], index=entry)))
    return picked


def check(gpu_ids, environ=os.environ):
    """The GPUs that gpu_ids pick, after checking they can train; raises GpuError saying what is missing."""
    rows = query(environ)
    usable = visible(rows, environ)
    listed = "; ".join(describe(row) for row in rows)
    if max(gpu_ids) >= len(usable):
        hidden = f" (CUDA_VISIBLE_DEVICES={environ['CUDA_VISIBLE_DEVICES']!r})" if len(usable) < len(rows) else ""
        raise GpuError(
            f"gpus: {list(gpu_ids)} asks for GPU {max(gpu_ids)}, but {len(usable)} GPU(s) are "
            f"visible{hidden}; nvidia-smi lists: {listed}"
        )
    driver = rows[0]["driver_version"]
    if version_tuple(driver) < version_tuple(MIN_DRIVER):
        raise GpuError(f"NVIDIA driver {driver} is too old: CUDA 11 needs {MIN_DRIVER} or newer ({listed})")
    chosen = [usable[i] for i in gpu_ids]
    unfit = [row for row in chosen if row["compute_cap"] and not mxnet_runs_on(row["compute_cap"])]
    if unfit:
        raise UnsupportedGpu(
            f"MXNet 1.9.1's CUDA build has machine code for compute capability 5.0 to 8.9 only "
            f"(sm_50 to sm_86 and no PTX, so nothing is compiled for newer GPUs), not for "
            f"{'; '.join(describe(row) for row in unfit)}"
        )
    return chosen


def describe(row):
    capability = f", compute capability {row['compute_cap']}" if row["compute_cap"] else ""
    return f"GPU {row['index']} {row['name']} (driver {row['driver_version']}{capability})"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.orchestrator.gpus", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", required=True, help="GPU ids as CUDA numbers them, comma separated")
    options = parser.parse_args(argv)
    try:
        for row in check([int(i) for i in options.gpus.split(",")]):
            print(f"Training on {describe(row)}", file=sys.stderr)
    except GpuError as error:
        sys.exit(f"ERROR: cannot train on the GPU (gpus: [{options.gpus}]): {error}. Set gpus: [] to train on the CPU.")


if __name__ == "__main__":
    main()
