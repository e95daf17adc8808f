"""Sweeps: several runs of the same workflow from one file, and a table comparing them.

    .venv/bin/python -m workflow.orchestrator.sweep sweeps/example.yaml [--cores N] [--runs-at-once N] \
        [--dry-run | --table-only] [-- SNAKEMAKE OPTIONS]

A sweep file names a base config and a grid; every combination of the grid's values is one run, with its own
`run` name (<name>-<value>-<value>...), results folder and report:

    name: lite-grid              # the runs are lite-grid-<values>; the table goes to results/sweeps/lite-grid/
    base: ../config.yaml         # the base config, relative to the sweep file
    set: {epochs: [40, 60], pretrained: null}   # optional: keys changed in every run
    grid:                        # optional: every combination of these values is a run
      network: [tiny, lite]
      learning_rate: [0.05, 0.02]
    target: deeplens_artifacts   # optional: the Snakemake target of each run

Each run's full config is written to results/sweeps/<name>/<run>.yaml and checked by a dry run before anything
trains; then the runs go one after the other (`snakemake --cores N <target> --configfile <run>.yaml`, output in
results/sweeps/<name>/<run>.log; a run already complete does nothing), or --runs-at-once of them at a time,
without Snakemake's directory lock (--nolock): the runs' outputs never overlap (each has its own results folder),
and instances that end in the same instant race on the shared .snakemake/locks folder, each deleting it whole
(FileNotFoundError, a run that did everything reported failed). A failed run's error lines are printed.
Options after `--` go to every snakemake call, e.g. `-- --profile profiles/slurm` to run each run's jobs on a
cluster, where `--runs-at-once` as large as the grid lets the scheduler have every run's jobs at once. Finally the
comparison (val mAP with its bootstrap interval, IR mAP and latency, training time) is written to comparison.csv
and comparison.md and printed. When the grid varies `seed`, the runs that differ only in seed form a group, and
seed_groups.csv (also at the end of comparison.md) gives each group's mean, standard deviation (n - 1) and range:
what the seed moves (training, and the split where the seed draws it), which the bootstrap interval of one run does
not hold. Exit status 1 if any run failed. Runs in the orchestrator environment (Snakemake's); standard library and
PyYAML only.
"""

import argparse
import concurrent.futures
import csv
import io
import itertools
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from workflow.lib.cli import with_interval

REPO = Path(__file__).resolve().parents[2]
SWEEP_KEYS = {"name", "base", "set", "grid", "target"}
COLUMNS = [
    "val_map",
    "val_map_low",
    "val_map_high",
    "val_images",
    "ir_map",
    "ir_latency_ms",
    "mxnet_latency_ms",
    "train_seconds",
    "epochs",
]
SHOWN = [c for c in COLUMNS if c not in ("val_map_low", "val_map_high", "val_images")]  # in val_map's cell instead
SPREAD_COLUMNS = ["val_map", "ir_map", "train_seconds"]


class SweepError(Exception):
    pass


def load_sweep(path):
    """The sweep file, checked: {name, base (a dict), set, grid, target}."""
    path = Path(path)
    sweep = yaml.safe_load(path.read_text()) or {}
    unknown = set(sweep) - SWEEP_KEYS
    if unknown:
        raise SweepError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(SWEEP_KEYS)}")
    for key in ("name", "base"):
        if not sweep.get(key):
            raise SweepError(f"{path}: '{key}' is required")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", str(sweep["name"])):
        raise SweepError(f"{path}: name '{sweep['name']}' may only hold letters, digits, '_', '.' and '-'")
    grid = sweep.get("grid") or {}
    if "run" in grid or "run" in (sweep.get("set") or {}):
        raise SweepError(f"{path}: 'run' is not a sweep key: each run is named <name>-<grid values>")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"{path}: grid.{key} must be a non-empty list of values")
    base_path = (path.parent / sweep["base"]).resolve()
    return {
        "name": str(sweep["name"]),
        "base": yaml.safe_load(base_path.read_text()),
        "set": sweep.get("set") or {},
        "grid": grid,
        "target": sweep.get("target", "deeplens_artifacts"),
    }


def slug(value):
    text = "_".join(map(str, value)) if isinstance(value, list) else str(value)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "none"


def variants(sweep):
    """[(run name, {grid key: value}, full config)] for every combination of the grid, in the grid's order."""
    keys = list(sweep["grid"])
    runs = []
    for values in itertools.product(*(sweep["grid"][key] for key in keys)):
        chosen = dict(zip(keys, values))
        name = "-".join([sweep["name"], *map(slug, values)])
        runs.append((name, chosen, {**sweep["base"], **sweep["set"], **chosen, "run": name}))
    names = [name for name, _, _ in runs]
    if len(set(names)) != len(names):
        raise SweepError(f"two runs would share a name: {sorted(n for n in names if names.count(n) > 1)}")
    return runs


def snakemake_command(config_file, target, cores, extra, lock=True):
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--cores",
        str(cores),
        target,
        *extra,
        "--configfile",
        str(config_file),
        *([] if lock else ["--nolock"]),
    ]


def run_results(run, config):
    """The figures of one run, read from its results folder (None where a file is missing)."""
    results = Path("results") / run
    row = dict.fromkeys(COLUMNS)
    metrics = results / "evaluate" / "metrics.json"
    if metrics.exists():
        scores = json.loads(metrics.read_text())
        row["val_map"], row["val_images"] = scores["map_voc07"], scores["images"]
        row["val_map_low"], row["val_map_high"] = scores.get("intervals", {}).get("map_voc07", (None, None))
    verify = results / "verify_ir" / "verify.json"
    if verify.exists():
        check = json.loads(verify.read_text())
        row["ir_map"] = check["ir_map_voc07"]
        row["ir_latency_ms"] = check["latency"][f"ir_{check['precision'].lower()}_ms"]
        row["mxnet_latency_ms"] = check["latency"]["mxnet_fp32_ms"]
    train_log = results / "train" / f"epoch_{config['epochs'][-1]}" / "log.csv"
    if train_log.exists():
        with open(train_log, newline="") as handle:
            epochs = list(csv.DictReader(handle))
        row["train_seconds"] = sum(float(epoch["seconds"]) for epoch in epochs)
        row["epochs"] = int(epochs[-1]["epoch"]) if epochs else 0  # the last trained (a time budget may stop early)
    report = results / "report" / "report.html"
    row["report"] = str(report) if report.exists() else ""
    return row


FORMATS = {"val_map": ".4f", "ir_map": ".4f", "ir_latency_ms": ".2f", "mxnet_latency_ms": ".2f", "train_seconds": ".1f"}


def cell(key, value, row=None):
    if value is None:
        return ""
    if key == "val_map" and row is not None:
        return with_interval(value, (row.get("val_map_low"), row.get("val_map_high")), row.get("val_images"))
    return format(value, FORMATS[key]) if key in FORMATS else str(value)


def markdown_table(rows, shown):
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(cell(key, row.get(key), row) for key in shown) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def comparison(rows, keys):
    """The table as (CSV text, Markdown text); rows are dicts with 'run', 'status', the grid keys and COLUMNS."""
    header = ["run", *keys, "status", *COLUMNS, "report"]
    out = io.StringIO()
    writer = csv.DictWriter(out, header, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: row.get(key) for key in header} for row in rows)
    return out.getvalue(), markdown_table(rows, ["run", *keys, "status", *SHOWN, "report"])


def seed_groups(rows, keys):
    """One row per group of runs that differ only in seed: the other grid keys, the runs, and the mean, standard
    deviation (n - 1) and range of SPREAD_COLUMNS over the runs that have the figure."""
    others = [key for key in keys if key != "seed"]
    groups = {}
    for row in rows:
        groups.setdefault(tuple(str(row[key]) for key in others), []).append(row)
    summary = []
    for values, members in groups.items():
        entry = {**dict(zip(others, values)), "runs": len(members), "seeds": " ".join(str(r["seed"]) for r in members)}
        for column in SPREAD_COLUMNS:
            figures = [r[column] for r in members if r.get(column) is not None]
            entry[f"{column}_mean"] = statistics.mean(figures) if figures else None
            entry[f"{column}_sd"] = statistics.stdev(figures) if len(figures) > 1 else None
            entry[f"{column}_min"], entry[f"{column}_max"] = (min(figures), max(figures)) if figures else (None, None)
        summary.append(entry)
    return summary


def seed_table(groups, keys):
    """seed_groups as (CSV text, Markdown text): 'mean ± sd (min-max)' per figure in the Markdown."""
    others = [key for key in keys if key != "seed"]
    out = io.StringIO()
    writer = csv.DictWriter(out, list(groups[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(groups)
    shown = [*others, "runs", "seeds", *SPREAD_COLUMNS]
    lines = [
        "| " + " | ".join(f"{key} mean ± sd (min-max)" if key in SPREAD_COLUMNS else key for key in shown) + " |",
        "|" + "---|" * len(shown),
    ]
    for group in groups:
        cells = [str(group[key]) for key in [*others, "runs", "seeds"]]
        for column in SPREAD_COLUMNS:
            mean, sd, low, high = (group[f"{column}_{part}"] for part in ("mean", "sd", "min", "max"))
            spread = f" ± {format(sd, FORMATS[column])}" if sd is not None else ""
            cells.append(
                ""
                if mean is None
                else f"{format(mean, FORMATS[column])}{spread} "
                f"({format(low, FORMATS[column])}-{format(high, FORMATS[column])})"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return out.getvalue(), "\n".join(lines) + "\n"


def run_one(label, name, command, log):
    """One run of the sweep, its output into log: (name, "done" or "failed")."""
    print(f"{label} {name}: started, log {log}", flush=True)
    started = time.monotonic()
    with open(log, "w") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT)
    status = "done" if result.returncode == 0 else "failed"
    print(f"{label} {name}: {status} in {time.monotonic() - started:.0f} s", flush=True)
    if status == "failed":
        lines = failure_lines(Path(log).read_text(errors="replace"))
        print(f"{label} {name}: from {log}:", *(f"  {line}" for line in lines), sep="\n", flush=True)
    return name, status


def failure_lines(log_text, last=8):
    """What says why a run failed: the stages' ERROR lines (with their indented details) and the log's last lines."""
    lines = log_text.splitlines()
    errors, in_error = [], False
    for line in lines[:-last]:
        in_error = line.startswith("ERROR") or (in_error and line.startswith("  "))
        if in_error:
            errors.append(line)
    return [*errors, *(["..."] if errors else []), *lines[-last:]]


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m workflow.orchestrator.sweep",
        description=__doc__.split("\n\n")[0],
        usage="%(prog)s [-h] [--cores N] [--dry-run | --table-only] SWEEP [-- SNAKEMAKE OPTIONS]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("sweep", help="the sweep file (YAML)")
    parser.add_argument("--cores", default="all", help="cores of each run (default: all)")
    parser.add_argument("--runs-at-once", type=int, default=1, help="runs going at the same time (default: 1)")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--dry-run", action="store_true", help="only write and check each run's config")
    only.add_argument("--table-only", action="store_true", help="only collect the table from existing results")
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []  # options for every snakemake call
    args = parser.parse_args(argv[: len(argv) - len(extra) - 1] if "--" in argv else argv)

    if args.runs_at_once < 1:
        sys.exit(f"ERROR: --runs-at-once must be at least 1, got {args.runs_at_once}")
    try:
        sweep = load_sweep(args.sweep)
        runs = variants(sweep)
    except (SweepError, OSError, yaml.YAMLError) as error:
        sys.exit(f"ERROR: {error}")
    folder = Path("results") / "sweeps" / sweep["name"]
    folder.mkdir(parents=True, exist_ok=True)
    config_files = {}
    for name, _, config in runs:
        config_files[name] = folder / f"{name}.yaml"
        config_files[name].write_text(yaml.safe_dump(config, sort_keys=False))

    status = {}
    if args.table_only:
        status = {
            name: "done" if (Path("results") / name / "report" / "report.html").exists() else "not run"
            for name, _, _ in runs
        }
    else:
        for name, _, _ in runs:  # a wrong key or value stops the sweep here, before anything trains
            check = subprocess.run(
                snakemake_command(config_files[name], sweep["target"], 1, extra) + ["--dry-run"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            if check.returncode != 0:
                sys.exit(f"ERROR: run {name} ({config_files[name]}) does not plan:\n{check.stdout[-3000:]}")
            print(f"{name}: {config_files[name]} plans", flush=True)
        if args.dry_run:
            return
        names = [name for name, _, _ in runs]
        labels = [f"[{index}/{len(runs)}]" for index in range(1, len(runs) + 1)]
        lock = args.runs_at_once == 1
        commands = [snakemake_command(config_files[name], sweep["target"], args.cores, extra, lock) for name in names]
        logs = [folder / f"{name}.log" for name in names]
        with concurrent.futures.ThreadPoolExecutor(args.runs_at_once) as pool:
            status = dict(pool.map(run_one, labels, names, commands, logs))

    rows = [
        {"run": name, **chosen, "status": status[name], **run_results(name, config)} for name, chosen, config in runs
    ]
    csv_text, markdown = comparison(rows, list(sweep["grid"]))
    (folder / "comparison.csv").write_text(csv_text)
    if "seed" in sweep["grid"]:
        seeds_csv, seeds_markdown = seed_table(seed_groups(rows, list(sweep["grid"])), list(sweep["grid"]))
        (folder / "seed_groups.csv").write_text(seeds_csv)
        markdown += "\nOver the seeds (what the seed moves; each run's interval above is the val-set noise):\n\n"
        markdown += seeds_markdown
    (folder / "comparison.md").write_text(markdown)
    print(f"\n{markdown}\nTable: {folder / 'comparison.csv'}, {folder / 'comparison.md'}")
    if any(value == "failed" for value in status.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
