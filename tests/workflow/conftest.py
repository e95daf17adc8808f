import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from workflow.orchestrator.stages import PER_WILDCARD, rule_name, run_stages

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
WORKFLOW_FILES = ("Snakefile", "config.yaml", "rules", "workflow", "envs")

TINY_CONFIG = {
    "run": "tiny",
    "dataset": "voc",
    "classes": ["swoosh", "stripes"],
    "network": "tiny",
    "pretrained": None,
    "data_shape": 64,
    "batch_size": 4,
    "epochs": [15, 30],
    "learning_rate": 0.05,
    "lr_steps": [],
    "warmup_epochs": 0,
    "val_fraction": 0.25,
    "pack_max_side": 128,
    "demo_images": 2,
    "demo_threshold": 0.05,
    "parity_threshold": 0.05,
    "litert_int8": True,  # required: an INT8 model over its budget fails the tiny run
    # 30 short epochs: an untrained net scores many overlapping boxes almost alike, and FP16 rounding then flips
    # some near-ties in NMS (seen: 3% of detections after 2 epochs, none after 30).
}


def snakemake(workdir, *args, snakefile=REPO / "Snakefile", check=True, isa_cap=None):
    """Run the workflow in `workdir` with its config.yaml; return the finished process. isa_cap: DNNL_MAX_CPU_ISA for
    every stage (MXNet and OpenVINO compute as a CPU of that ISA does), or None for this machine's own."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(snakefile),
        "--directory",
        str(workdir),
        *args,
        "--configfile",
        str(workdir / "config.yaml"),
    ]
    env = dict(os.environ, DEEPLENS_SSD_ENVS=str(REPO / ".venvs"))
    for name in ("DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA"):
        env.pop(name, None)
    if isa_cap:
        env["DNNL_MAX_CPU_ISA"] = isa_cap
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


def copy_sample(target, first, count):
    for sub in ("Annotations", "JPEGImages"):
        (target / sub).mkdir(parents=True, exist_ok=True)
    for xml in sorted((SAMPLE / "Annotations").glob("*.xml"))[first : first + count]:
        shutil.copy(xml, target / "Annotations")
        shutil.copy(SAMPLE / "JPEGImages" / f"{xml.stem}.jpg", target / "JPEGImages")
    return target


def write_config(workdir, **overrides):
    config = dict(TINY_CONFIG, **overrides)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return config


@pytest.fixture
def tiny_run(tmp_path):
    """A work folder with a dozen sample images in voc/ and a tiny config; returns (folder, config dict)."""

    def make(**overrides):
        copy_sample(tmp_path / "voc", 0, 12)
        return tmp_path, write_config(tmp_path, **overrides)

    return make


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """The tiny workflow run to the end once, with its own copy of the workflow code (so that tests may touch
    that code): returns (snakefile, work folder, config)."""
    base = tmp_path_factory.mktemp("finished")
    repo = base / "repo"
    repo.mkdir()
    for name in WORKFLOW_FILES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, repo / name)
    workdir = base / "work"
    copy_sample(workdir / "voc", 0, 12)
    config = write_config(workdir)
    snakefile = repo / "Snakefile"
    snakemake(workdir, "deeplens_artifacts", "--cores", "2", snakefile=snakefile)
    return snakefile, workdir, config


# The target rules, which run nothing themselves: the whole run, and the stages with a job per wildcard value.
TARGETS = {"deeplens_artifacts", *PER_WILDCARD}
# The rules the tiny config's run runs after training (workflow/orchestrator/stages.py is the one list of stages).
_TINY_RULES = [
    rule_name(stage) for stage in run_stages(yaml.safe_load((REPO / "config.yaml").read_text()) | TINY_CONFIG)
]
AFTER_TRAINING = set(_TINY_RULES[_TINY_RULES.index(rule_name("train")) + 1 :])

# what a new annotated image reruns: the check and everything after it (each split packed, each segment trained)
NEW_IMAGE_RERUNS = {
    rule: {"pack": 2, "train": len(TINY_CONFIG["epochs"])}.get(stage, 1)
    for stage, rule in zip(run_stages(yaml.safe_load((REPO / "config.yaml").read_text()) | TINY_CONFIG), _TINY_RULES)
}


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A copy of the finished run's work folder (same Snakefile): (snakefile, folder)."""
    snakefile, workdir, _ = finished_run
    copy = tmp_path / "work"
    shutil.copytree(workdir, copy, symlinks=True)
    return snakefile, copy


def planned(snakefile, workdir):
    """{rule: number of jobs} that a dry run of deeplens_artifacts would run, without the target rules."""
    output = snakemake(workdir, "-n", "deeplens_artifacts", "--cores", "2", snakefile=snakefile).stdout
    if "Nothing to be done" in output:
        return {}
    table = output.split("Job stats:")[1].split("total")[0]
    jobs = dict((name, int(count)) for name, count in re.findall(r"^(\w+)\s+(\d+)$", table, re.M))
    return {name: count for name, count in jobs.items() if name not in TARGETS}


def in_env(env, script, *args):
    """Run a Python snippet in a stage environment, outside the repository; its last line printed, as JSON."""
    command = [sys.executable, str(REPO / "workflow" / "orchestrator" / "envs.py"), "exec", env, "--", "python", "-c"]
    result = subprocess.run([*command, script, *map(str, args)], cwd="/", capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])
