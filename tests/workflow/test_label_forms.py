"""Each tool's export runs through the workflow as the tool wrote it, the config naming where it is and the classes:
a dozen sample images as Roboflow's COCO and YOLOv8 exports, CVAT's XML and Label Studio's JSON. Each reaches the
packed records the VOC folder gives; the COCO export runs on to the artifacts; editing one of its label files reruns
the check and what follows."""

import json
import sys
import xml.etree.ElementTree as ET  # the bundled sample's own XML, trusted

import pytest
from conftest import REPO, SAMPLE, copy_sample, planned, snakemake, write_config

sys.path.insert(0, str(REPO / "tests" / "mxnet"))
from exports import WRITERS  # noqa: E402  (the mxnet suite's writers: the same layouts)

CLASSES = ["swoosh", "stripes"]
TOOLS = ("roboflow_coco", "roboflow_yolo", "cvat_xml", "label_studio")


def sample_items(count=12):
    """The first images of the bundled sample with their boxes, as the exports' writers take them."""
    items = []
    for xml in sorted((SAMPLE / "Annotations").glob("*.xml"))[:count]:
        root = ET.parse(xml).getroot()
        size = [int(root.find(f"size/{key}").text) for key in ("width", "height")]
        boxes = [
            (o.find("name").text, *(float(o.find(f"bndbox/{key}").text) for key in ("xmin", "ymin", "xmax", "ymax")))
            for o in root.findall("object")
        ]
        items.append((SAMPLE / "JPEGImages" / f"{xml.stem}.jpg", *size, boxes))
    return items


@pytest.fixture(scope="module")
def voc_records(tmp_path_factory):
    """The packed val and train records' lists of the same images as a VOC folder."""
    workdir = tmp_path_factory.mktemp("voc")
    copy_sample(workdir / "voc", 0, 12)
    write_config(workdir)
    snakemake(workdir, "pack", "--cores", "2")
    return {name: (workdir / f"results/tiny/pack/{name}.rec").read_bytes() for name in ("train", "val")}


@pytest.mark.parametrize("tool", TOOLS)
def test_each_tools_export_runs_as_written_and_packs_what_the_voc_folder_packs(tool, voc_records, tmp_path):
    dataset = WRITERS[tool](sample_items(), CLASSES, tmp_path / "export")
    write_config(tmp_path, dataset=str(dataset))
    snakemake(tmp_path, "pack", "--cores", "2")
    results = tmp_path / "results" / "tiny"
    assert {name: (results / f"pack/{name}.rec").read_bytes() for name in ("train", "val")} == voc_records
    splits = json.loads((results / "check" / "splits.json").read_text())
    assert splits["named"] == (["train"] if "roboflow" in tool else [])
    if tool == "roboflow_yolo":  # its data.yaml names ../valid/images, which the export lacks
        assert "split-missing" in (results / "logs" / "check_problems.csv").read_text()


def test_a_coco_export_runs_to_the_artifacts_and_a_label_edit_reruns_the_check(tmp_path):
    dataset = WRITERS["roboflow_coco"](sample_items(), CLASSES, tmp_path / "export")
    write_config(tmp_path, dataset=str(dataset), epochs=[2, 4])
    snakemake(tmp_path, "deeplens_artifacts", "--cores", "2")
    manifest = json.loads((tmp_path / "results/tiny/artifacts/manifest.json").read_text())
    assert manifest["classes"] == CLASSES and (tmp_path / "results/tiny/report/report.html").is_file()
    assert planned(REPO / "Snakefile", tmp_path) == {}
    annotations = dataset / "train" / "_annotations.coco.json"
    data = json.loads(annotations.read_text())
    data["annotations"][0]["bbox"][2] += 5
    annotations.write_text(json.dumps(data))
    assert {"check", "split"} <= set(planned(REPO / "Snakefile", tmp_path))
