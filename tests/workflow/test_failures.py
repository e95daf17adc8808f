"""What a failed run needs to be understood survives it: Snakemake deletes a failed job's outputs, not its logs."""

import json
import shutil

from conftest import snakemake


def test_a_failed_check_leaves_its_problem_table_where_the_message_says(tiny_run):
    workdir, _ = tiny_run()
    xml = next((workdir / "voc" / "Annotations").glob("*.xml"))
    xml.write_text(xml.read_text().replace("<name>swoosh</name>", "<name>nike</name>", 1))
    result = snakemake(workdir, "check", "--cores", "1", check=False)
    assert result.returncode != 0
    table = "results/tiny/logs/check_problems.csv"
    assert f"full table: {table}" in result.stderr
    assert f"{xml.name},error,unknown-class" in (workdir / table).read_text()
    assert not (workdir / "results/tiny/check/check.csv").exists()  # the output itself is gone


def test_a_failed_ir_proof_leaves_the_differing_detections_where_the_message_says(finished_run, tmp_path):
    snakefile, finished, _ = finished_run
    workdir = tmp_path / "work"
    shutil.copytree(finished, workdir, symlinks=True)
    contract_path = workdir / "results/tiny/optimize/model.contract.json"
    contract = json.loads(contract_path.read_text())
    contract["nms_threshold"] = 1.0  # the IR's caller now keeps every candidate box: not what MXNet detects
    contract_path.write_text(json.dumps(contract))
    result = snakemake(workdir, "results/tiny/verify_ir/verify.json", "--cores", "1", snakefile=snakefile, check=False)
    assert result.returncode != 0
    differences = "results/tiny/logs/verify_ir_differences.txt"
    assert (
        "the IR does not compute what the MXNet model computes: the IR's contract's nms_threshold is 1.0"
        in result.stderr
    )
    assert f"listed in {differences}" in result.stderr
    lines = (workdir / differences).read_text().splitlines()
    assert lines[0].startswith("# ") and "at f32 (reported; the proof compares" in lines[0]
    assert any(": only IR: " in line for line in lines)
    assert not (workdir / "results/tiny/verify_ir/verify.json").exists()
