import hashlib
import io
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, check_command
from workflow import check
from workflow.lib.images import EXIF_ORIENTATION, jpeg_ends_early, load_rgb

CLASSES = ["swoosh", "stripes"]


def settings(**overrides):
    values = dict(classes=CLASSES, class_map={}, max_pixels=50_000_000, keep_empty=True)
    values.update(overrides)
    return check.Settings(**values)


def write_xml(root, stem, objects, size=(320, 240), extra=""):
    body = "".join(
        f"<object><name>{name}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for name, x1, y1, x2, y2 in objects
    )
    size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>" if size else ""
    (root / "Annotations" / f"{stem}.xml").write_text(
        f"{extra}<annotation><filename>{stem}.jpg</filename>{size_xml}{body}</annotation>"
    )


def write_image(root, stem, size=(320, 240), suffix=".jpg", color=(90, 120, 150)):
    Image.new("RGB", size, color).save(root / "JPEGImages" / f"{stem}{suffix}")


def problems_of(root, **overrides):
    records, problems = check.check_dataset(root, settings(**overrides))
    return records, {(p.problem, p.severity): p for p in problems}


def test_sample_copy_is_clean(voc):
    records, problems = check.check_dataset(voc(4), settings())
    assert problems == [] and len(records) == 4
    assert all(o["name"] in CLASSES and o["class"] == CLASSES.index(o["name"]) for r in records for o in r["objects"])


def test_float_coordinates_missing_size_and_upper_case_extension_are_accepted(voc):
    root = voc(0)
    write_image(root, "IMG_1", suffix=".JPG")
    write_xml(root, "IMG_1", [("swoosh", 10.5, 20.25, 100.75, 200.0)], size=None)
    records, problems = problems_of(root)
    assert problems == {}
    assert records[0]["width"] == 320 and records[0]["objects"][0]["box"] == [10.5, 20.25, 100.75, 200.0]


@pytest.mark.parametrize(
    "objects, problem, words",
    [
        (
            [("nike", 10, 10, 50, 50)],
            "unknown-class",
            "class 'nike' is not in the configured classes ['swoosh', 'stripes']",
        ),
        ([("swoosh", "nan", 10, 50, 50)], "xml-invalid", "object 1 ('swoosh') <xmin> is not a number: 'nan'"),
        ([("swoosh", 10, 10, "inf", 50)], "xml-invalid", "object 1 ('swoosh') <xmax> is not a number: 'inf'"),
        ([("swoosh", 50, 10, 50, 60)], "degenerate-box", "empty box (50, 10, 50, 60)"),
        ([("swoosh", 10, 10, 400, 60)], "box-outside", "lies outside the 320x240 image"),
    ],
)
def test_bad_objects_are_errors_naming_the_object(voc, objects, problem, words):
    root = voc(0)
    write_image(root, "a")
    write_xml(root, "a", objects)
    records, problems = problems_of(root)
    assert records == []
    found = problems[(problem, "error")]
    assert found.file.endswith("a.xml") and words in found.message


def test_box_slightly_outside_is_clipped_with_a_warning(voc):
    root = voc(0)
    write_image(root, "a")
    write_xml(root, "a", [("swoosh", -2, 10, 322, 241)])
    records, problems = problems_of(root)
    assert ("box-clipped", "warning") in problems
    assert records[0]["objects"][0]["box"] == [0, 10, 320, 240]


def test_class_map_renames_and_drops_labels(voc):
    root = voc(0)
    write_image(root, "a")
    write_xml(root, "a", [("Nike", 10, 10, 50, 50), ("logo", 60, 60, 90, 90)])
    records, problems = problems_of(root, class_map={"Nike": "swoosh", "logo": None})
    assert problems == {} and [o["name"] for o in records[0]["objects"]] == ["swoosh"]


def test_broken_xml_missing_image_and_missing_xml(voc):
    root = voc(0)
    write_image(root, "broken")
    (root / "Annotations" / "broken.xml").write_text("<annotation><object>")
    write_xml(root, "lonely_xml", [("swoosh", 1, 1, 5, 5)])
    write_image(root, "lonely_image")
    records, problems = problems_of(root)
    assert records == []
    assert "XML does not parse" in problems[("xml-invalid", "error")].message
    assert problems[("image-missing", "error")].file.endswith("lonely_xml.xml")
    assert problems[("xml-missing", "warning")].file.endswith("lonely_image.jpg")


def test_entities_are_refused_not_expanded(voc):
    root = voc(0)
    write_image(root, "bomb")
    doctype = '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
    write_xml(root, "bomb", [("swoosh", 1, 1, 5, 5)], extra=doctype)
    _, problems = problems_of(root)
    assert "refused for safety" in problems[("xml-invalid", "error")].message


def test_broken_and_oversized_images_are_refused(voc):
    root = voc(0)
    write_image(root, "broken")
    data = bytearray((root / "JPEGImages" / "broken.jpg").read_bytes())
    table = data.index(b"\xff\xc4")
    data[table + 5 : table + 21] = b"\xff" * 16  # Huffman code counts no table can hold
    (root / "JPEGImages" / "broken.jpg").write_bytes(bytes(data))
    write_xml(root, "broken", [("swoosh", 1, 1, 50, 50)])
    _, problems = problems_of(root)
    assert "image data is broken or truncated" in problems[("image-unreadable", "error")].message
    root2 = voc(0)
    (root2 / "JPEGImages" / "broken.jpg").unlink()
    (root2 / "Annotations" / "broken.xml").unlink()
    write_image(root2, "big")
    write_xml(root2, "big", [("swoosh", 1, 1, 50, 50)])
    _, problems = problems_of(root2, max_pixels=1000)
    assert "exceeds the limit of 1000" in problems[("image-unreadable", "error")].message


def test_size_mismatch_and_grayscale_png(voc):
    root = voc(0)
    write_image(root, "a")
    write_xml(root, "a", [("swoosh", 1, 1, 50, 50)], size=(640, 480))
    Image.new("L", (100, 80), 128).save(root / "JPEGImages" / "gray.png")
    write_xml(root, "gray", [("stripes", 1, 1, 50, 50)], size=(100, 80))
    records, problems = problems_of(root)
    assert "the declared size 640x480 is not the image's 320x240" in problems[("size-mismatch", "error")].message
    assert [r["id"] for r in records] == ["gray"]


def test_duplicate_content_is_left_out(voc):
    root = voc(1)
    stem = next((root / "Annotations").glob("*.xml")).stem
    (root / "JPEGImages" / "copy.jpg").write_bytes((root / "JPEGImages" / f"{stem}.jpg").read_bytes())
    (root / "Annotations" / "copy.xml").write_text((root / "Annotations" / f"{stem}.xml").read_text())
    records, problems = problems_of(root)
    assert len(records) == 1 and ("duplicate-image", "warning") in problems


def test_cli_fails_with_file_level_message_and_never_writes_into_the_dataset(voc, tmp_path):
    root = voc(2)
    write_image(root, "bad")
    write_xml(root, "bad", [("nike", 10, 10, 50, 50)])
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}
    command = check_command(tmp_path, ["swoosh", "stripes"], "--dataset", str(root))
    result = subprocess.run(command + ["--no-skip-bad-files"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1
    assert "ERROR: 1 annotation errors" in result.stderr and "bad.xml: unknown-class" in result.stderr
    assert f"full table: {tmp_path / 'problems.csv'}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "bad.xml,error,unknown-class" in (tmp_path / "problems.csv").read_text()
    skipped = subprocess.run(command + ["--skip-bad-files"], cwd=REPO, capture_output=True, text=True)
    assert skipped.returncode == 0 and "skipped" in skipped.stderr
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}
    assert before == after


def test_filename_is_never_used_to_find_the_image(voc):
    root = voc(0)
    write_image(root, "IMG_1", suffix=".JPG")
    write_xml(
        root, "IMG_1", [("swoosh", 10, 10, 50, 50)]
    )  # <filename>IMG_1.jpg</filename>: case of the extension differs
    write_image(root, "IMG_2", color=(10, 20, 30))
    write_xml(root, "IMG_2", [("swoosh", 10, 10, 50, 50)])
    xml = root / "Annotations" / "IMG_2.xml"
    xml.write_text(xml.read_text().replace("<filename>IMG_2.jpg</filename>", "<filename>img_2.png</filename>"))
    records, problems = problems_of(root)
    assert problems == {} and [Path(r["image"]).name for r in records] == ["IMG_1.JPG", "IMG_2.jpg"]


def test_filename_naming_another_image_is_a_warning(voc):
    root = voc(0)
    write_image(root, "IMG_3")
    write_xml(root, "IMG_3", [("swoosh", 10, 10, 50, 50)])
    xml = root / "Annotations" / "IMG_3.xml"
    xml.write_text(
        xml.read_text().replace("<filename>IMG_3.jpg</filename>", "<filename>C:\\photos\\IMG_9.jpg</filename>")
    )
    records, problems = problems_of(root)
    assert len(records) == 1 and records[0]["image"].endswith("IMG_3.jpg")
    assert problems[("filename-differs", "warning")].message == (
        "<filename> 'C:\\photos\\IMG_9.jpg' names another image; this XML is paired with IMG_3.jpg by file stem: "
        "check that its boxes belong to that image"
    )


def test_path_and_folder_from_another_machine_are_never_used(voc, tmp_path):
    root = voc(0)
    write_image(root, "card")
    elsewhere = tmp_path / "elsewhere.jpg"  # an existing file the XML points at: still not used
    Image.new("RGB", (50, 50)).save(elsewhere)
    extra_fields = f"<folder>train</folder><path>C:\\tensorflow_cards\\train\\card.jpg</path><path>{elsewhere}</path>"
    write_xml(root, "card", [("swoosh", 10, 10, 50, 50)])
    xml = root / "Annotations" / "card.xml"
    xml.write_text(xml.read_text().replace("<annotation>", f"<annotation>{extra_fields}"))
    records, problems = problems_of(root)
    assert problems == {} and records[0]["image"] == str(root / "JPEGImages" / "card.jpg")
    assert records[0]["width"] == 320


@pytest.mark.parametrize(
    "name, make",
    [
        ("rgba.png", lambda: Image.new("RGBA", (320, 240), (10, 20, 30, 128))),
        ("palette.png", lambda: Image.new("RGB", (320, 240), (200, 20, 30)).convert("P")),
        ("gray.jpg", lambda: Image.new("L", (320, 240), 77)),
        ("cmyk.jpg", lambda: Image.new("CMYK", (320, 240), (10, 200, 30, 0))),
        ("deep.png", lambda: Image.fromarray(np.full((240, 320), 40000, dtype=np.uint16))),
    ],
)
def test_png_gray_cmyk_and_16_bit_images_are_accepted(voc, name, make):
    root = voc(0)
    make().save(root / "JPEGImages" / name)
    stem = Path(name).stem
    write_xml(root, stem, [("swoosh", 10, 10, 50, 50)])
    records, problems = problems_of(root)
    assert problems == {} and (records[0]["width"], records[0]["height"]) == (320, 240)
    pixels = load_rgb(root / "JPEGImages" / name, 50_000_000)
    assert pixels.shape == (240, 320, 3) and pixels.dtype == np.uint8
    if name == "deep.png":
        assert Image.open(root / "JPEGImages" / name).mode.startswith("I") and pixels[0, 0, 0] == 40000 * 255 // 65535


def write_rotated_jpeg(root, stem, size=(320, 240), orientation=6):
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    Image.new("RGB", size, (90, 120, 150)).save(root / "JPEGImages" / f"{stem}.jpg", exif=exif.tobytes())


def test_exif_rotation_warns_and_the_stored_pixels_are_used(voc):
    root = voc(0)
    write_rotated_jpeg(root, "phone")
    write_xml(root, "phone", [("swoosh", 10, 10, 300, 50)], size=(320, 240))
    records, problems = problems_of(root)
    assert list(problems) == [("exif-rotation", "warning")]
    assert problems[("exif-rotation", "warning")].message == (
        "EXIF orientation 6: boxes are taken on the image as stored (as LabelImg shows it); the image is used unrotated"
    )
    assert (records[0]["width"], records[0]["height"]) == (320, 240) and records[0]["objects"][0]["box"] == [
        10,
        10,
        300,
        50,
    ]


def test_size_of_the_rotated_view_is_an_error(voc):
    root = voc(0)
    write_rotated_jpeg(root, "phone")
    write_xml(root, "phone", [("swoosh", 10, 10, 200, 300)], size=(240, 320))
    records, problems = problems_of(root)
    assert records == [] and ("exif-rotation", "warning") in problems
    assert problems[("size-mismatch", "error")].message == (
        "the declared size 240x320 is the EXIF-rotated view of the 320x240 stored image: the boxes were drawn on a "
        "rotated image; re-save the image without EXIF rotation and relabel"
    )


CARDS = REPO.parent / "shared" / "datasets" / "cards" / "train"
CARD_CLASSES = ["nine", "ten", "jack", "queen", "king", "ace"]


def cut_card_photo(root, kept):
    """A real phone photo of the cards dataset (a 504-row baseline JPEG) with its XML in root, keeping only
    kept(data) of the JPEG's bytes: a download cut short."""
    xml = sorted((CARDS / "Annotations").glob("*.xml"))[0]
    data = (CARDS / "JPEGImages" / f"{xml.stem}.JPG").read_bytes()
    (root / "Annotations" / xml.name).write_bytes(xml.read_bytes())
    image = root / "JPEGImages" / f"{xml.stem}.JPG"
    image.write_bytes(kept(data))
    return image


@pytest.mark.parametrize("kept", [lambda data: data[:-2], lambda data: data[:-20]], ids=["no-end-marker", "last-bytes"])
def test_a_jpeg_missing_only_its_end_is_accepted_with_a_warning(voc, kept):
    image = cut_card_photo(voc(0), kept)
    records, problems = problems_of(image.parent.parent, classes=CARD_CLASSES)
    assert list(problems) == [("jpeg-ends-early", "warning")]
    assert problems[("jpeg-ends-early", "warning")].file == str(image)
    assert "every pixel row decodes" in problems[("jpeg-ends-early", "warning")].message
    assert len(records) == 1 and records[0]["jpeg_ends_early"] is True and records[0]["height"] == 504


def test_a_jpeg_that_lost_rows_is_an_error_saying_how_many(voc):
    image = cut_card_photo(voc(0), lambda data: data[: len(data) * 6 // 10])
    records, problems = problems_of(image.parent.parent, classes=CARD_CLASSES)
    message = problems[("image-unreadable", "error")].message
    assert records == [] and message.startswith("the JPEG data ends early: the bottom ")
    missing = int(message.split("the bottom ")[1].split()[0])
    assert 100 < missing < 300 and "of its 504 pixel rows" in message


def test_jpeg_ends_early_walks_markers_and_scans(tmp_path):
    photo = (CARDS / "JPEGImages" / f"{sorted((CARDS / 'Annotations').glob('*.xml'))[0].stem}.JPG").read_bytes()
    progressive = tmp_path / "progressive.jpg"
    Image.open(io.BytesIO(photo)).save(progressive, progressive=True, quality=90)
    for data in (photo, progressive.read_bytes()):
        assert not jpeg_ends_early(data)
        assert not jpeg_ends_early(data + b"trailing bytes after the end marker")
        for cut in (1, 2, 20, len(data) // 2):
            assert jpeg_ends_early(data[:-cut])


def test_a_pre_label_nobody_verified_is_a_warning_or_an_error(voc):
    root = voc(2)
    xml = sorted((root / "Annotations").glob("*.xml"))[0]
    xml.write_text(xml.read_text().replace("<annotation>", '<annotation verified="no">', 1))
    for severity in ("warning", "error"):
        records, problems = problems_of(root, unverified=severity)
        assert problems[("unverified", severity)].file == str(xml)
        assert len(records) == (2 if severity == "warning" else 1)
    verified = sorted((root / "Annotations").glob("*.xml"))[1]
    verified.write_text(verified.read_text().replace("<annotation>", '<annotation verified="yes">', 1))
    assert [p for p in problems_of(root)[1] if p[0] == "unverified"] == [("unverified", "warning")]
