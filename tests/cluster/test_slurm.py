"""The workflow on a real Slurm cluster: one node with this machine's CPUs and memory, accounting through slurmdbd
(tests/cluster/slurm.sh), every stage a job submitted by the pinned snakemake-executor-plugin-slurm through
profiles/slurm. `make test-cluster` installs Slurm (root, Debian) and runs this file; the session starts the
cluster and stops every daemon it started when it ends, pass or fail."""

import collections
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
from conftest import REPO, copy_sample, planned, write_config  # noqa: E402
from test_sweep import table, write_sweep  # noqa: E402

SLURM_SH = REPO / "tests" / "cluster" / "slurm.sh"
RUN_TIMEOUT = 900  # seconds; a hung run fails the test instead of the CI job
# Each rule's threads, mem_mb and runtime as the Snakefile declares them, read by Snakemake itself.
DECLARED = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings
with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    config = ConfigSettings(configfiles=[Path(sys.argv[3])])
    workflow = api.workflow(snakefile=Path(sys.argv[1]), workdir=Path(sys.argv[2]), config_settings=config,
                            resource_settings=ResourceSettings(), storage_settings=StorageSettings())._workflow
    print(json.dumps({rule.name: {"threads": rule.resources["_cores"].value, "mem_mb": rule.resources["mem_mb"].value,
                                  "runtime": rule.resources["runtime"].value}
                      for rule in workflow.rules if "mem_mb" in rule.resources}))
"""


@pytest.fixture(scope="session")
def cluster():
    """The running cluster for the whole session; returns the node's CPUs."""
    try:
        subprocess.run([SLURM_SH, "start"], check=True)
        yield int(slurm("sinfo", "-h", "-o", "%c"))
    finally:
        subprocess.run([SLURM_SH, "stop"], check=True)


def slurm(*command):
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def slurm_options(cpus):
    """Options for every snakemake call: the profile; no rule asks for more CPUs than the node has (Slurm would keep
    the job pending forever, reason PartitionConfig); the first status check a second after a submission."""
    return [
        "--profile",
        str(REPO / "profiles" / "slurm"),
        "--max-threads",
        str(cpus),
        "--slurm-init-seconds-before-status-checks",
        "1",
    ]


def snakemake_command(workdir, *args):
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
        "--configfile",
        str(workdir / "config.yaml"),
    ]


def run_env():
    return dict(os.environ, DEEPLENS_SSD_ENVS=str(REPO / ".venvs"), PYTHONPATH=str(REPO))


def on_slurm(workdir, *args):
    """Run the workflow in `workdir` through the cluster; the finished process (stdout and stderr together)."""
    return subprocess.run(
        snakemake_command(workdir, *args),
        env=run_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=RUN_TIMEOUT,
    )


def run_id(output):
    """The plugin's id of one snakemake run: every job of that run has it as its Slurm job name."""
    return re.search(r"SLURM run ID: (\S+)", output).group(1)


def accounted_jobs(name):
    """The jobs named `name` as Slurm's accounting database has them (one dict per job, without steps)."""
    fields = ["JobID", "Comment", "Account", "AllocCPUS", "ReqMem", "Timelimit", "State"]
    lines = slurm(
        "sacct",
        "-X",
        "--parsable2",
        "--noheader",
        "--name",
        name,
        f"--format={','.join(fields)}",
        "--starttime",
        "now-1days",
    ).splitlines()
    return [dict(zip(fields, line.split("|"))) for line in lines]


def rule_of(job):
    """The rule a job ran: the plugin comments each job rule_<rule> or rule_<rule>_wildcards_<values>."""
    return job["Comment"].removeprefix("rule_").split("_wildcards_")[0]


def minutes(limit):
    """A Slurm time limit ([D-]HH:MM:SS) in minutes."""
    days, _, clock = limit.rpartition("-")
    hours, mins, _ = map(int, clock.split(":"))
    return int(days or 0) * 24 * 60 + hours * 60 + mins


def declared_resources(workdir, config_file):
    command = [sys.executable, "-c", DECLARED, str(REPO / "Snakefile"), str(workdir), str(config_file)]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])


def ir_graph(path):
    """An IR's XML without its layer names (the Model Optimizer numbers generated layers differently each run)."""
    root = ElementTree.parse(path).getroot()
    for layer in root.iter("layer"):
        layer.attrib.pop("name")
    return ElementTree.tostring(root)


def assert_same_artifacts(folder, reference):
    files = json.loads((folder / "manifest.json").read_text())["files"]
    assert files.keys() == json.loads((reference / "manifest.json").read_text())["files"].keys()
    for name in files:
        if name == "model.xml":
            assert ir_graph(folder / name) == ir_graph(reference / name)
        else:
            assert (folder / name).read_bytes() == (reference / name).read_bytes(), name


def test_sweep_of_two_tiny_runs_runs_every_stage_as_an_accounted_slurm_job(cluster, tmp_path):
    work, local = tmp_path / "work", tmp_path / "local"
    copy_sample(work / "voc", 0, 12)
    # no LiteRT: its conversion (TensorFlow) would add minutes to each run, and this tests the scheduler
    sweep_file = write_sweep(work, set={"litert": False}, grid={"ir_precision": ["FP16", "FP32"]})
    # The first run's config, run here without Slurm while the sweep's jobs wait on the scheduler: its plan is what
    # each sweep run must have run as jobs, its artifacts what the first sweep run's must be.
    subprocess.run(
        [sys.executable, "-m", "workflow.orchestrator.sweep", str(sweep_file), "--dry-run"],
        cwd=work,
        env=run_env(),
        check=True,
        capture_output=True,
    )
    copy_sample(local / "voc", 0, 12)
    shutil.copy(work / "results" / "sweeps" / "tiny" / "tiny-FP16.yaml", local / "config.yaml")
    jobs = planned(REPO / "Snakefile", local)
    here = subprocess.Popen(
        snakemake_command(local, "deeplens_artifacts", "--cores", str(cluster)),  # the jobs' threads: same weights
        env=run_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sweep = [sys.executable, "-m", "workflow.orchestrator.sweep", str(sweep_file), "--runs-at-once", "2"]
    result = subprocess.run(
        [*sweep, "--", *slurm_options(cluster)],
        cwd=work,
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=2 * RUN_TIMEOUT,
    )
    local_output = here.communicate(timeout=RUN_TIMEOUT)[0]
    assert here.returncode == 0, local_output[-5000:]
    assert result.returncode == 0, result.stdout + result.stderr
    rows = table(work, "tiny")
    assert [(row["run"], row["status"]) for row in rows] == [("tiny-FP16", "done"), ("tiny-FP32", "done")]
    assert "| tiny-FP16 | FP16 | done |" in result.stdout and "| tiny-FP32 | FP32 | done |" in result.stdout

    declared = declared_resources(local, local / "config.yaml")
    for row in rows:
        accounted = accounted_jobs(run_id((work / "results" / "sweeps" / "tiny" / f"{row['run']}.log").read_text()))
        assert collections.Counter(rule_of(job) for job in accounted) == jobs, "one job per rule and wildcards"
        for job in accounted:
            rule = declared[rule_of(job)]
            assert job["State"] == "COMPLETED" and job["Account"] == "deeplens", job
            assert int(job["AllocCPUS"]) == min(rule["threads"], cluster), job
            assert job["ReqMem"] == f"{rule['mem_mb']}M" and minutes(job["Timelimit"]) == rule["runtime"], job
        check = json.loads((work / "results" / row["run"] / "verify_ir" / "verify.json").read_text())
        assert check["precision"] == row["ir_precision"] and check["proof"]["postprocessing"]["problems"] == []
    assert_same_artifacts(work / "results" / "tiny-FP16" / "artifacts", local / "results" / "tiny-FP16" / "artifacts")


@pytest.fixture(scope="module")
def packed(cluster, tmp_path_factory):
    """A tiny run with one long training segment (200 epochs of about 0.2 s), packed through Slurm: its folder."""
    workdir = tmp_path_factory.mktemp("packed")
    copy_sample(workdir / "voc", 0, 12)
    write_config(workdir, epochs=[200])
    result = on_slurm(workdir, "pack", *slurm_options(cluster))
    assert result.returncode == 0, result.stdout[-5000:]
    return workdir


@pytest.fixture
def packed_copy(packed, tmp_path):
    copy = tmp_path / "work"
    shutil.copytree(packed, copy, symlinks=True)
    return copy


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def wait_until(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not after {seconds} s"
        time.sleep(0.5)


def running_training_job():
    """The Slurm id of the running train_segment job, or None."""
    for line in slurm("squeue", "-h", "-o", "%i|%k|%T").splitlines():
        job_id, comment, state = line.split("|")
        if comment.startswith("rule_train_segment") and state == "RUNNING":
            return job_id
    return None


def test_scancel_mid_training_then_the_same_command_continues_after_the_last_finished_epoch(cluster, packed_copy):
    train = packed_copy / "results" / "tiny" / "train" / "epoch_200"
    progress = train / "progress.csv"
    command = snakemake_command(packed_copy, "train", *slurm_options(cluster))
    with open(packed_copy / "first.log", "w") as log:
        first = subprocess.Popen(command, env=run_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: progress.exists() and len(read_rows(progress)) >= 3, 300, "three epochs trained")
            job_id = running_training_job()
            assert job_id, "training runs as a Slurm job"
            slurm("scancel", job_id)
            assert first.wait(timeout=120) != 0
        finally:
            first.kill()
    output = (packed_copy / "first.log").read_text()
    assert "Error in rule train_segment" in output and f"SLURM-job '{job_id}' failed" in output
    assert "CANCELLED" in output, output[-3000:]
    assert accounted_jobs(run_id(output))[-1]["State"].startswith("CANCELLED")
    before = read_rows(progress)
    assert 3 <= len(before) < 200, "killed mid-training"

    again = on_slurm(packed_copy, "train", *slurm_options(cluster))
    assert again.returncode == 0, again.stdout[-5000:]
    log = (packed_copy / "results" / "tiny" / "logs" / "train_epoch_200.log").read_text()
    assert f"holds epoch {len(before)} from an interrupted run: continuing after it" in log
    rows = read_rows(train / "log.csv")
    assert [int(row["epoch"]) for row in rows] == list(range(1, 201))
    assert rows[: len(before)] == before, "the finished epochs are kept, not trained again"
    assert collections.Counter(rule_of(job) for job in accounted_jobs(run_id(again.stdout))) == {"train_segment": 1}


def test_a_job_over_its_memory_limit_is_reported_with_its_rule_and_logs(cluster, packed_copy):
    # 250 MB: enough for the job's own snakemake (about 140 MB), not for MXNet training (about 390 MB).
    result = on_slurm(packed_copy, "train", *slurm_options(cluster), "--set-resources", "train_segment:mem_mb=250")
    assert result.returncode != 0
    output = result.stdout
    job = accounted_jobs(run_id(output))[-1]
    assert rule_of(job) == "train_segment" and job["ReqMem"] == "250M" and job["State"] == "FAILED"
    assert "Error in rule train_segment" in output and f"SLURM-job '{job['JobID']}' failed" in output, output[-5000:]
    logs = re.search(r"^    log: (.*) \(check log file", output, re.M).group(1).split(", ")
    assert logs[0] == "results/tiny/logs/train_epoch_200.log"
    assert logs[1] == str(
        packed_copy / ".snakemake" / "slurm_logs" / "rule_train_segment" / "200" / f"{job['JobID']}.log"
    )
    # Without cgroups Slurm samples memory and kills the step (state FAILED; OUT_OF_MEMORY where cgroups enforce it).
    assert re.search(rf"StepId={job['JobID']}\.0 exceeded memory limit \(\d+ > 262144000\)", Path(logs[1]).read_text())
