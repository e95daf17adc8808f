"""What the benchmark scripts share: running the workflow on the repository, and naming the CPU a figure is from."""

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from workflow.lib.cli import with_interval  # noqa: E402, F401  (a metric as every output shows it)


def run_workflow(target, configfile, cores):
    """`snakemake --cores N TARGET --configfile FILE` on the repository, output to the terminal; the seconds it took."""
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(REPO)]
    started = time.monotonic()
    subprocess.run([*command, "--cores", str(cores), target, "--configfile", str(configfile)], check=True)
    return time.monotonic() - started


def pretrained_for(network):
    """The config's `pretrained` for a network trained on a benchmark: its ImageNet backbone where it has one."""
    return "imagenet" if network == "efficientnet_lite0" else None


def cpu_model():
    """lscpu's model name."""
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def cpu_flags():
    """The lscpu flags that change how fast (or in what precision) inference runs."""
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Flags:"):
            wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8")
            return [flag for flag in line.split(":", 1)[1].split() if flag in wanted]
    return []
