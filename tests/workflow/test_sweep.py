"""Sweeps (workflow/orchestrator/sweep.py): one file, several runs of the real tiny workflow, one comparison table."""

import csv
import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, TINY_CONFIG, copy_sample
from workflow.orchestrator.sweep import SweepError, comparison, load_sweep, seed_groups, seed_table, variants


def sweep(workdir, *args):
    """Run `python -m workflow.orchestrator.sweep` in `workdir` (stage environments from the repository's .venvs)."""
    env = dict(os.environ, DEEPLENS_SSD_ENVS=str(REPO / ".venvs"), PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "workflow.orchestrator.sweep", *map(str, args)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )


def write_sweep(folder, **sweep):
    (folder / "base.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    (folder / "sweep.yaml").write_text(yaml.safe_dump({"name": "tiny", "base": "base.yaml", **sweep}, sort_keys=False))
    return folder / "sweep.yaml"


def table(workdir, name):
    with open(workdir / "results" / "sweeps" / name / "comparison.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_grid_gives_one_named_config_per_combination(tmp_path):
    loaded = load_sweep(
        write_sweep(tmp_path, set={"epochs": [5, 10]}, grid={"network": ["tiny", "lite"], "lr_steps": [[], [4, 8]]})
    )
    runs = variants(loaded)
    assert [name for name, _, _ in runs] == ["tiny-tiny-none", "tiny-tiny-4_8", "tiny-lite-none", "tiny-lite-4_8"]
    name, chosen, config = runs[1]
    assert chosen == {"network": "tiny", "lr_steps": [4, 8]}
    assert config == {**TINY_CONFIG, "run": name, "epochs": [5, 10], "network": "tiny", "lr_steps": [4, 8]}
    assert loaded["target"] == "deeplens_artifacts"

    with pytest.raises(SweepError, match="unknown keys"):
        load_sweep(write_sweep(tmp_path, grids={"network": ["tiny"]}))
    with pytest.raises(SweepError, match="grid.network must be a non-empty list"):
        load_sweep(write_sweep(tmp_path, grid={"network": "tiny"}))
    with pytest.raises(SweepError, match="'run' is not a sweep key"):
        load_sweep(write_sweep(tmp_path, grid={"run": ["a", "b"]}))
    with pytest.raises(SweepError, match="share a name"):
        variants(load_sweep(write_sweep(tmp_path, grid={"learning_rate": [0.1, "0.1"]})))


def test_a_wrong_config_key_stops_the_sweep_before_any_run(tmp_path):
    copy_sample(tmp_path / "voc", 0, 12)
    result = sweep(tmp_path, write_sweep(tmp_path, grid={"learning_rat": [0.1, 0.2]}))
    assert result.returncode != 0
    assert "tiny-0.1" in result.stderr and "learning_rat" in result.stderr
    assert not (tmp_path / "results" / "tiny-0.1").exists() and not (tmp_path / "results" / "tiny-0.2").exists()


def test_runs_at_once_must_be_a_positive_count(tmp_path):
    result = sweep(tmp_path, write_sweep(tmp_path, grid={"seed": [0, 1]}), "--runs-at-once", "0")
    assert result.returncode != 0 and "ERROR: --runs-at-once must be at least 1, got 0" in result.stderr


def test_two_tiny_runs_at_once_and_their_comparison(tmp_path):
    copy_sample(tmp_path / "voc", 0, 12)
    grid = {"learning_rate": [0.05], "ir_precision": ["FP16", "FP32"]}
    sweep_file = write_sweep(tmp_path, set={"litert": False}, grid=grid)  # LiteRT is tested on its own

    result = sweep(tmp_path, sweep_file, "--cores", "1", "--runs-at-once", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.index("[2/2] tiny-0.05-FP32: started") < result.stdout.index("[1/2] tiny-0.05-FP16: done")
    rows = table(tmp_path, "tiny")
    assert [row["run"] for row in rows] == ["tiny-0.05-FP16", "tiny-0.05-FP32"]
    assert "| tiny-0.05-FP16 | 0.05 | FP16 | done |" in result.stdout
    for row in rows:
        results = tmp_path / "results" / row["run"]
        assert row["status"] == "done" and (results / "artifacts" / "manifest.json").exists()
        assert (
            row["report"] == f"results/{row['run']}/report/report.html"
            and (results / "report" / "report.html").exists()
        )
        assert (
            yaml.safe_load((tmp_path / "results" / "sweeps" / "tiny" / f"{row['run']}.yaml").read_text())["run"]
            == row["run"]
        )
        metrics = json.loads((results / "evaluate" / "metrics.json").read_text())
        check = json.loads((results / "verify_ir" / "verify.json").read_text())
        assert check["precision"] == row["ir_precision"]
        assert float(row["val_map"]) == metrics["map_voc07"] and float(row["ir_map"]) == check["ir_map_voc07"]
        assert float(row["ir_latency_ms"]) == check["latency"][f"ir_{row['ir_precision'].lower()}_ms"]
        assert float(row["mxnet_latency_ms"]) == check["latency"]["mxnet_fp32_ms"]
        with open(results / "train" / "epoch_30" / "log.csv", newline="") as handle:
            epochs = list(csv.DictReader(handle))
        assert len(epochs) == 30 and row["epochs"] == "30"
        assert float(row["train_seconds"]) == pytest.approx(sum(float(epoch["seconds"]) for epoch in epochs))

    again = sweep(tmp_path, sweep_file, "--cores", "2")  # complete runs: nothing reruns, same table
    assert again.returncode == 0 and table(tmp_path, "tiny") == rows
    assert all(
        "Nothing to be done" in (tmp_path / "results" / "sweeps" / "tiny" / f"{row['run']}.log").read_text()
        for row in rows
    )
    assert sweep(tmp_path, sweep_file, "--table-only").returncode == 0 and table(tmp_path, "tiny") == rows


def test_runs_that_differ_only_in_seed_get_their_mean_and_spread():
    rows = [
        {
            "run": f"s-{network}-{seed}",
            "network": network,
            "seed": seed,
            "status": "done",
            "val_map": val_map,
            "val_map_low": val_map - 0.1,
            "val_map_high": val_map + 0.05,
            "val_images": 23,
            "ir_map": val_map,
            "train_seconds": 100.0 + seed,
        }
        for network, seed, val_map in [("tiny", 0, 0.80), ("tiny", 1, 0.84), ("tiny", 2, 0.88), ("lite", 0, 0.5)]
    ]
    groups = seed_groups(rows, ["network", "seed"])
    assert [(g["network"], g["runs"], g["seeds"]) for g in groups] == [("tiny", 3, "0 1 2"), ("lite", 1, "0")]
    assert (groups[0]["val_map_mean"], groups[0]["val_map_sd"]) == (pytest.approx(0.84), pytest.approx(0.04))
    assert (groups[0]["val_map_min"], groups[0]["val_map_max"]) == (0.80, 0.88)
    assert groups[1]["val_map_sd"] is None  # one run has no spread
    csv_text, markdown = seed_table(groups, ["network", "seed"])
    assert (
        "| tiny | 3 | 0 1 2 | 0.8400 ± 0.0400 (0.8000-0.8800) | 0.8400 ± 0.0400 (0.8000-0.8800) | 101.0 ± 1.0"
        in markdown
    )
    assert "| lite | 1 | 0 | 0.5000 (0.5000-0.5000) |" in markdown
    assert csv_text.splitlines()[0].startswith("network,runs,seeds,val_map_mean,val_map_sd,val_map_min,val_map_max")
    assert "| s-tiny-0 | tiny | 0 | done | 0.800 (0.70-0.85, 23 images) |" in comparison(rows, ["network", "seed"])[1]


def test_a_failed_run_shows_the_end_of_its_log(tmp_path):
    voc = copy_sample(tmp_path / "voc", 0, 12)
    broken = sorted((voc / "Annotations").glob("*.xml"))[0]
    broken.write_text(broken.read_text()[:200])  # truncated XML: the check stage refuses it
    sweep_file = write_sweep(tmp_path, grid={"seed": [0, 1]}, target="check")

    result = sweep(tmp_path, sweep_file, "--cores", "1", "--runs-at-once", "2")
    assert result.returncode == 1
    for run in ("tiny-0", "tiny-1"):
        log = tmp_path / "results" / "sweeps" / "tiny" / f"{run}.log"
        assert f"{run}: failed in" in result.stdout and f"{run}: from {log.relative_to(tmp_path)}:" in result.stdout
        assert "--nolock" in log.read_text()  # runs at once share .snakemake/: no directory lock to race on
    assert f"  voc/Annotations/{broken.name}: xml-invalid: XML does not parse" in result.stdout
