"""The workflow on a cluster: the tiny run through profiles/cluster-generic (snakemake-executor-plugin-cluster-generic)
with a stand-in for Slurm on this machine, and the Slurm profile's plan.

The stand-in sbatch starts each job script in its own session, detached from the submitting Snakemake (no stdin, a
compute node's bare environment), as a real scheduler would on another machine: the run only finishes if no rule
depends on the submitting process, its environment or its memory."""

import collections
import hashlib
import json
import os
import re
import signal
import sys

import pytest

from conftest import REPO, snakemake, write_config
from test_reruns import planned

SBATCH = '''
"""Stand-in for `sbatch --parsable`: records the request, starts the job script detached and prints the job id."""
import json, os, subprocess, sys, uuid
from pathlib import Path

options, script = sys.argv[1:-1], sys.argv[-1]
job_id = uuid.uuid4().hex[:12]
job = Path(os.environ["FAKE_SLURM_SPOOL"]) / job_id
job.mkdir(parents=True)
flags = dict(option[2:].split("=", 1) for option in options if option.startswith("--") and "=" in option)
output = flags.get("output", "slurm-%j.out").replace("%j", job_id)
# What a compute node gives a job: no variables of the submitting shell but those the site exports.
node_env = {"PATH": "/usr/bin:/bin", "HOME": os.environ["HOME"], "LANG": "C.UTF-8",
            "DEEPLENS_SSD_ENVS": os.environ["DEEPLENS_SSD_ENVS"]}
with open(output, "w") as log:
    wrapper = 'sh "$1"; echo $? > "$2.tmp"; mv "$2.tmp" "$2"'
    process = subprocess.Popen(["sh", "-c", wrapper, "job", script, job / "exit"],
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=node_env,
                               start_new_session=True)
(job / "request.json").write_text(json.dumps({"flags": flags, "pid": process.pid, "script": Path(script).read_text()}))
print(job_id)
'''

SACCT = '''
"""Stand-in for `sacct --jobs ID ... --format=State`: COMPLETED or FAILED by the job script's exit status once it has
ended, RUNNING while its process lives, NODE_FAIL if it vanished without an exit status."""
import json, os, sys
from pathlib import Path

job = Path(os.environ["FAKE_SLURM_SPOOL"]) / sys.argv[sys.argv.index("--jobs") + 1]
try:
    os.kill(json.loads((job / "request.json").read_text())["pid"], 0)
    alive = True
except ProcessLookupError:
    alive = False
if (job / "exit").exists():
    print("COMPLETED" if (job / "exit").read_text().strip() == "0" else "FAILED")
else:
    print("RUNNING" if alive else "NODE_FAIL")
'''

SCANCEL = '''
"""Stand-in for `scancel ID...`: ends each job's process group."""
import json, os, signal, sys
from pathlib import Path

for job_id in sys.argv[1:]:
    request = json.loads((Path(os.environ["FAKE_SLURM_SPOOL"]) / job_id / "request.json").read_text())
    try:
        os.killpg(request["pid"], signal.SIGTERM)
    except ProcessLookupError:
        pass
'''


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sbatch, sacct and scancel stand-ins first on PATH; returns the spool folder (one folder per job)."""
    bin_dir, spool = tmp_path / "fake-slurm-bin", tmp_path / "fake-slurm-spool"
    bin_dir.mkdir()
    spool.mkdir()
    for name, source in (("sbatch", SBATCH), ("sacct", SACCT), ("scancel", SCANCEL)):
        (bin_dir / name).write_text(f"#!{sys.executable}{source}")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_SPOOL", str(spool))
    yield spool
    for job in spool.iterdir():  # a failed test leaves no job running
        if not (job / "exit").exists():
            try:
                os.killpg(json.loads((job / "request.json").read_text())["pid"], signal.SIGTERM)
            except (ProcessLookupError, FileNotFoundError):
                pass


def job_properties(script):
    """The rule, threads and resources Snakemake wrote into a job script's `# properties = {...}` line."""
    return json.loads(re.search(r"^# properties = (.*)$", script, re.M).group(1))


def test_tiny_workflow_runs_as_detached_batch_jobs_through_the_cluster_generic_profile(tiny_run, fake_slurm):
    workdir, config = tiny_run()
    jobs = planned(REPO / "Snakefile", workdir)

    snakemake(
        workdir,
        "deeplens_artifacts",
        "--profile",
        str(REPO / "profiles" / "cluster-generic"),
        "--jobs",
        "2",
        "--seconds-between-status-checks",
        "1",
        "--latency-wait",
        "5",
    )

    requests = [json.loads((job / "request.json").read_text()) for job in fake_slurm.iterdir()]
    properties = [job_properties(request["script"]) for request in requests]
    assert collections.Counter(p["rule"] for p in properties) == jobs, "every stage ran as a batch job, once"
    for request, props in zip(requests, properties):
        assert request["flags"]["job-name"] == f"deeplens-{props['rule']}"
        assert request["flags"]["cpus-per-task"] == str(props["threads"])
        assert request["flags"]["mem"] == str(props["resources"]["mem_mb"])
        assert request["flags"]["time"] == str(props["resources"]["runtime"])
    assert len({(r["flags"]["cpus-per-task"], r["flags"]["mem"], r["flags"]["time"]) for r in requests}) > 1
    assert all((job / "exit").read_text().strip() == "0" for job in fake_slurm.iterdir())
    assert len(list((workdir / ".snakemake" / "cluster_logs").glob("*.log"))) == len(requests)

    results = workdir / "results" / config["run"]
    artifacts = results / "artifacts"
    manifest = json.loads((artifacts / "manifest.json").read_text())
    assert {"model.xml", "model.bin", "infer.py", "labels.txt"} <= set(manifest["files"])
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((artifacts / name).read_bytes()).hexdigest() == entry["sha256"], name
    assert json.loads((results / "verify_ir" / "verify.json").read_text())["proof"]["postprocessing"]["problems"] == []
    assert "val mAP" in (results / "report" / "report.html").read_text()
    assert planned(REPO / "Snakefile", workdir) == {}, "a local dry run finds the cluster's outputs complete"


def test_slurm_profile_is_valid_for_the_plugin_and_plans_gpu_training(tiny_run):
    workdir, _ = tiny_run()
    write_config(workdir, gpus=[0])
    profile = REPO / "profiles" / "slurm"
    result = snakemake(workdir, "-n", "deeplens_artifacts", "--profile", str(profile))
    output = result.stdout + result.stderr
    assert f"Using profile {profile}" in output
    stats = output.split("Job stats:")[1]
    assert all(
        re.search(rf"^{rule}\s+{count}$", stats, re.M) for rule, count in planned(REPO / "Snakefile", workdir).items()
    )
    train_commands = [line for line in output.splitlines() if "python -m workflow.train" in line]
    assert len(train_commands) == 2 and all(
        "exec --gpus 0 mxnet-cuda --" in line and "--gpus '0'" in line for line in train_commands
    )
