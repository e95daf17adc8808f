"""The sample dataset generator: deterministic, LabelImg-shaped, and the committed data/sample matches it."""

import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import pytest

from workflow.sample_data import CLASSES, main

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "data" / "sample"
COMMITTED_SEED = 0


def generate(out, count, seed=0):
    main(["--out", str(out), "--count", str(count), "--seed", str(seed)])
    return out


def all_files(folder):
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def six_images(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("first"), 6)


def test_same_seed_gives_identical_bytes(six_images, tmp_path):
    again = generate(tmp_path / "again", 6)
    assert all_files(again) == all_files(six_images)


def test_other_seed_gives_other_images(six_images, tmp_path):
    other = generate(tmp_path / "other", 1, seed=1)
    name = Path("JPEGImages/sample_0001.jpg")
    assert all_files(other)[name] != all_files(six_images)[name]


def test_labelimg_layout(six_images):
    assert sorted(p.name for p in six_images.iterdir()) == ["Annotations", "JPEGImages"]
    images = sorted(p.stem for p in (six_images / "JPEGImages").glob("*.jpg"))
    annotations = sorted(p.stem for p in (six_images / "Annotations").glob("*.xml"))
    assert images == annotations == [f"sample_{i:04d}" for i in range(1, 7)]
    root = ET.parse(six_images / "Annotations" / "sample_0001.xml").getroot()
    assert [child.tag for child in root][:7] == ["folder", "filename", "path", "source", "size", "segmented", "object"]
    assert root.findtext("folder") == "JPEGImages"
    assert root.findtext("filename") == "sample_0001.jpg"
    assert root.findtext("path").endswith("/JPEGImages/sample_0001.jpg")
    assert "\n\t<size>\n\t\t<width>" in (six_images / "Annotations" / "sample_0001.xml").read_text()


def test_annotations_match_images(six_images):
    for xml_path in sorted((six_images / "Annotations").glob("*.xml")):
        root = ET.parse(xml_path).getroot()
        image = cv2.imread(str(six_images / "JPEGImages" / root.findtext("filename")))
        height, width = image.shape[:2]
        assert (int(root.findtext("size/width")), int(root.findtext("size/height"))) == (width, height)
        assert root.findtext("size/depth") == "3"
        objects = root.findall("object")
        assert 1 <= len(objects) <= 3
        for obj in objects:
            assert obj.findtext("name") in CLASSES
            xmin, ymin, xmax, ymax = (int(obj.findtext(f"bndbox/{tag}")) for tag in ("xmin", "ymin", "xmax", "ymax"))
            assert 1 <= xmin < xmax <= width and 1 <= ymin < ymax <= height, xml_path.name
            assert xmax - xmin >= 8 and ymax - ymin >= 8, xml_path.name


def test_committed_sample_is_reproduced_byte_for_byte(tmp_path):
    assert len(list((COMMITTED / "JPEGImages").glob("*.jpg"))) == 160
    regenerated = all_files(generate(tmp_path / "sample", 4, seed=COMMITTED_SEED))
    committed = all_files(COMMITTED)
    for name, data in regenerated.items():
        assert committed[name] == data, f"{name} differs from data/sample: regenerate it with the command in its README"
