"""How fast Snakemake plans and reruns this workflow. Prints figures only.

    .venv/bin/python benchmarks/workflow_speed.py [--configfile config.yaml] [--repeat 3] [--cores N] [--skip-tiny]

1. The no-op dry run `snakemake -n deeplens_artifacts` of a finished run: the repository's config.yaml (the bundled
   sample, finished by `make run`) or --configfile. Goal: under 3 s (1.4 s measured on the sample, 2 cores).
2. A tiny run (12 sample images, the tests' tiny config) in a temporary folder: the first run, its no-op dry run,
   then one new image: the dry run (which jobs rerun) and the real rerun.
"""

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "workflow"))
from conftest import TINY_CONFIG, copy_sample  # noqa: E402  (the tests' tiny run, one definition)


def snakemake(workdir, configfile, *args):
    """Run snakemake on the repository's Snakefile; return (seconds, combined output)."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
        "--configfile",
        str(configfile),
    ]
    started = time.monotonic()
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}")
    return seconds, result.stdout


def planned_jobs(output):
    """Jobs a dry run would run (its 'total' line), 0 when nothing is to be done."""
    match = re.search(r"^total\s+(\d+)$", output, re.M)
    return int(match.group(1)) if match else 0


def dry_runs(workdir, configfile, repeat):
    """(seconds of each no-op-or-not dry run, jobs planned)."""
    runs = [snakemake(workdir, configfile, "-n", "deeplens_artifacts") for _ in range(repeat)]
    return [seconds for seconds, _ in runs], planned_jobs(runs[-1][1])


def describe(times):
    return f"{min(times):.2f} s (min of {len(times)}; median {statistics.median(times):.2f} s)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", type=Path, default=REPO / "config.yaml", help="a finished run's config")
    parser.add_argument("--repeat", type=int, default=3, help="dry runs per measurement")
    parser.add_argument("--cores", default="all", help="cores of the tiny runs")
    parser.add_argument("--skip-tiny", action="store_true", help="only the dry run of the finished run")
    args = parser.parse_args()
    figures = []

    def report(label, value):
        figures.append((label, value))
        print(f"{label}: {value}", flush=True)

    times, jobs = dry_runs(REPO, args.configfile.resolve(), args.repeat)
    run = yaml.safe_load(args.configfile.read_text()).get("run", "?")
    if jobs:
        report(f"dry run of run '{run}' (not finished: {jobs} jobs to do; `make run` first)", describe(times))
    else:
        report(f"no-op dry run, finished run '{run}' (goal < 3 s)", describe(times))

    if not args.skip_tiny:
        with tempfile.TemporaryDirectory(prefix="workflow_speed_") as folder:
            workdir = Path(folder)
            copy_sample(workdir / "voc", 0, 12)
            configfile = workdir / "config.yaml"
            configfile.write_text(yaml.safe_dump(TINY_CONFIG))
            seconds, _ = snakemake(workdir, configfile, "--cores", args.cores, "deeplens_artifacts")
            report("tiny run (12 images): first run", f"{seconds:.1f} s")
            times, jobs = dry_runs(workdir, configfile, args.repeat)
            report(f"tiny run: no-op dry run ({jobs} jobs planned)", describe(times))
            copy_sample(workdir / "voc", 12, 1)
            times, jobs = dry_runs(workdir, configfile, args.repeat)
            report(f"tiny run + 1 image: dry run ({jobs} jobs planned, targets included)", describe(times))
            seconds, _ = snakemake(workdir, configfile, "--cores", args.cores, "deeplens_artifacts")
            report("tiny run + 1 image: rerun", f"{seconds:.1f} s")

    width = max(len(label) for label, _ in figures)
    print("\n" + "\n".join(f"{label:<{width}}  {value}" for label, value in figures))


if __name__ == "__main__":
    main()
