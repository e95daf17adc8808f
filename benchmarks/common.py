"""What the benchmark scripts share: running the workflow on the repository, and naming the CPU a figure is from."""

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from workflow.lib.cli import with_interval  # noqa: E402, F401  (a metric as every output shows it)
from workflow.lib.cpu import one_line as cpu_line  # noqa: E402, F401  (the CPU, with every figure)


def run_workflow(target, configfile, cores):
    """`snakemake --cores N TARGET --configfile FILE` on the repository, output to the terminal; the seconds it took."""
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(REPO)]
    started = time.monotonic()
    subprocess.run([*command, "--cores", str(cores), target, "--configfile", str(configfile)], check=True)
    return time.monotonic() - started


def pretrained_for(network):
    """The config's `pretrained` for a network trained on a benchmark: its ImageNet backbone where it has one."""
    return "imagenet" if network == "efficientnet_lite0" else None
