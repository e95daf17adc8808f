"""After a finished run, only what changed reruns (checked with dry runs on a copy of the finished run)."""

import os
import shutil

import pytest

from conftest import AFTER_TRAINING, NEW_IMAGE_RERUNS, REPO, copy_sample, planned, snakemake, write_config

from workflow.orchestrator.plan import module_files


def test_nothing_reruns_when_nothing_changed(run_copy):
    assert planned(*run_copy) == {}


def test_a_new_image_reruns_from_the_check_and_keeps_the_old_split(run_copy):
    snakefile, workdir = run_copy
    old_val = (workdir / "results/tiny/split/val.txt").read_text().split()
    old_train = (workdir / "results/tiny/split/train.txt").read_text().split()
    copy_sample(workdir / "voc", 12, 1)
    assert planned(snakefile, workdir) == NEW_IMAGE_RERUNS
    snakemake(workdir, "split", "--cores", "2", snakefile=snakefile)
    new_val = (workdir / "results/tiny/split/val.txt").read_text().split()
    new_train = (workdir / "results/tiny/split/train.txt").read_text().split()
    assert set(old_val) <= set(new_val) and set(old_train) <= set(new_train)


def test_demo_threshold_reruns_only_demo_and_report(run_copy):
    snakefile, workdir = run_copy
    write_config(workdir, demo_threshold=0.3)
    assert planned(snakefile, workdir) == {"demo": 1, "report": 1}


def test_a_new_training_segment_trains_only_that_segment(run_copy):
    snakefile, workdir = run_copy
    write_config(workdir, epochs=[15, 30, 35])
    assert planned(snakefile, workdir) == {"train_segment": 1, **{rule: 1 for rule in AFTER_TRAINING}}
    assert "epoch_35" in snakemake(workdir, "-n", "--cores", "2", snakefile=snakefile).stdout


def planned_after_editing(snakefile, workdir, module):
    """What a dry run plans after an edit of workflow/<module>.py in the finished run's own copy of the code."""
    code = snakefile.parent / "workflow" / f"{module}.py"
    original, stat = code.read_text(), code.stat()
    try:
        code.write_text(original + "\n# an edit\n")
        return planned(snakefile, workdir)
    finally:
        code.write_text(original)
        os.utime(code, (stat.st_atime, stat.st_mtime))


@pytest.mark.parametrize(
    "module, rules",
    [
        # evaluate's score threshold is the DeepLens Lambda's default (model.json in its zip) and the browser page's
        (
            "evaluate",
            {
                "evaluate",
                "deeplens_package",
                "deeplens_rehearsal",
                "export_web",
                "artifacts",
                "report",
            },
        ),
        ("report", {"report"}),  # imported by no other stage
        # imported by demo, evaluate, export_mxnet012, verify_ir, export_onnx, export_litert and the DeepLens model and
        # rehearsal (some imports inside a function), not by train
        (
            "lib/detector",
            {
                "demo",
                "evaluate",
                "export_mxnet012",
                "verify_mxnet012",
                "verify_ir",
                "export_onnx",
                "export_litert",
                "export_web",
                "deeplens_model",
                "deeplens_package",
                "deeplens_rehearsal",
                "artifacts",
                "report",
            },
        ),
        ("lib/cli", set(NEW_IMAGE_RERUNS)),  # every stage
    ],
)
def test_editing_a_module_reruns_exactly_the_stages_that_import_it_and_what_follows(run_copy, module, rules):
    assert set(planned_after_editing(*run_copy, module)) == rules


def test_a_finished_run_that_moves_with_its_repository_has_nothing_to_do(finished_run, tmp_path):
    """Another clone, another mount point on a cluster, a renamed checkout: nothing machine-specific is tracked."""
    snakefile, workdir, _ = finished_run
    moved = tmp_path / "elsewhere"
    shutil.copytree(snakefile.parent.parent, moved, symlinks=True)
    assert planned(moved / snakefile.parent.name / "Snakefile", moved / workdir.name) == {}


def test_a_relative_import_makes_the_imported_module_part_of_the_stage_code():
    """litert_infer.py imports infer.py beside it (`from .infer import ...`): export_litert's code includes it."""
    files = module_files("workflow.export_litert", REPO)
    assert REPO / "workflow" / "device" / "infer.py" in files and REPO / "workflow" / "lib" / "parity.py" in files
