"""Only a split whose records changed is repacked (checked on a copy of the finished run).

The pack of a split reads only that split's records (split/<split>.json). A new image that the hash puts in
val leaves split/train.json as it was, so once the check and split have run, Snakemake sees train.json newer
but with the checksum it recorded, and plans only the val pack and what follows. (Within the one invocation
that reruns the split, Snakemake still plans both packs: it cannot know train.json will come out the same.)
"""

import json
import shutil

from conftest import AFTER_TRAINING, SAMPLE, planned, snakemake
from workflow.split import stable_fraction


def add_val_image(workdir, config):
    """Copy in the first sample image not in the run whose hash puts it in val; return its id."""
    present = {xml.stem for xml in (workdir / "voc" / "Annotations").glob("*.xml")}
    for xml in sorted((SAMPLE / "Annotations").glob("*.xml")):
        if xml.stem not in present and stable_fraction(config.get("seed", 0), xml.stem) < config["val_fraction"]:
            shutil.copy(xml, workdir / "voc" / "Annotations")
            shutil.copy(SAMPLE / "JPEGImages" / f"{xml.stem}.jpg", workdir / "voc" / "JPEGImages")
            return xml.stem
    raise AssertionError("no sample image left that the split puts in val")


def test_a_new_val_image_repacks_only_val(finished_run, run_copy):
    _, _, config = finished_run
    snakefile, workdir = run_copy
    results = workdir / "results" / config["run"]
    train_records = (results / "split/train.json").read_bytes()
    packed = {path.name: path.stat().st_mtime_ns for path in (results / "pack").iterdir()}
    new_id = add_val_image(workdir, config)

    snakemake(workdir, "split", "--cores", "2", snakefile=snakefile)
    assert (results / "split/train.json").read_bytes() == train_records
    assert new_id in [r["id"] for r in json.loads((results / "split/val.json").read_text())]
    after_split = {"dataset_stats": 1, "pack_split": 1, "train_segment": 2}  # split ran alone
    assert planned(snakefile, workdir) == {**after_split, **{rule: 1 for rule in AFTER_TRAINING}}

    snakemake(workdir, "pack", "--cores", "2", snakefile=snakefile)
    now = {path.name: path.stat().st_mtime_ns for path in (results / "pack").iterdir()}
    assert {name for name in packed if now[name] != packed[name]} == {"val.rec", "val.idx", "val.lst"}
    assert new_id in (results / "pack/val.lst").read_text()
