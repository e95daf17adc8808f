"""Labels from the tools people use (workflow/lib/forms.py and a reader per form): the bundled sample written as each
tool exports it checks and packs exactly as LabelImg's VOC folder does, and each form's traps are problems that name
the file and the line or entry."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from exports import UPLOAD_PREFIX, WRITERS, write_data_yaml
from PIL import Image

from workflow import check, pack, split
from workflow.lib import forms, voc

CLASSES = ["swoosh", "stripes"]
SETTINGS = check.Settings(CLASSES, {}, 50_000_000, True)
EXIF_ORIENTATION = 0x0112
FORM_OF = {"roboflow_coco": "coco", "cvat_coco": "coco", "ultralytics_yolo": "yolo", "roboflow_yolo": "yolo"}
FORM_OF.update(cvat_yolo="yolo", cvat_xml="cvat", label_studio="labelstudio")
REPO = Path(__file__).resolve().parents[2]


def checked(dataset, settings=SETTINGS):
    """(records, {(problem, severity): [problems]}, splits) of a dataset."""
    records, problems, splits = check.check_export(dataset, settings)
    found = {}
    for problem in problems:
        found.setdefault((problem.problem, problem.severity), []).append(problem)
    return records, found, splits


def packed(records, prefix):
    pack.pack(records, prefix, max_side=160, quality=90, max_pixels=50_000_000, processes=1)
    return hashlib.sha256(prefix.with_suffix(".rec").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The first 10 images of the bundled sample as a VOC folder: (items for the writers, VOC's records, their
    packed .rec's sha256)."""
    folder = tmp_path_factory.mktemp("sample")
    root = folder / "voc"
    for sub in ("Annotations", "JPEGImages"):
        (root / sub).mkdir(parents=True)
    sample = REPO / "data" / "sample"
    for xml in sorted((sample / "Annotations").glob("*.xml"))[:10]:
        shutil.copy(xml, root / "Annotations")
        shutil.copy(sample / "JPEGImages" / f"{xml.stem}.jpg", root / "JPEGImages")
    items = [
        (entry.image, entry.width, entry.height, [(b.label, b.xmin, b.ymin, b.xmax, b.ymax) for b in entry.boxes])
        for entry in voc.read_voc(root).entries
    ]
    records, problems, _ = checked(root)
    assert problems == {} and len(records) == 10
    return items, records, packed(records, folder / "voc_packed")


def without_paths(records):
    return [{key: value for key, value in r.items() if key not in ("image", "annotation")} for r in records]


@pytest.mark.parametrize("writer", WRITERS)
def test_each_tools_export_of_the_sample_checks_and_packs_as_the_voc_folder_does(sample, tmp_path, writer):
    items, voc_records, voc_rec = sample
    dataset = WRITERS[writer](items, CLASSES, tmp_path / writer)
    assert forms.recognise(dataset) == FORM_OF[writer]
    records, problems, splits = checked(dataset)
    expected = {("split-missing", "warning")} if writer == "roboflow_yolo" else set()  # no valid/ in this export
    assert set(problems) == expected, problems
    assert without_paths(records) == without_paths(voc_records)
    assert packed(records, tmp_path / "packed") == voc_rec
    if writer == "roboflow_yolo":
        assert "val is drawn from train by val_fraction" in problems[("split-missing", "warning")][0].message
        train, val, how = split.split_records(records, splits, 0.3, seed=0)
        assert train and val and "it names no val images" in how


def write_yolo(folder, lines, names=("swoosh", "stripes"), image_size=(100, 80)):
    """An Ultralytics export of one image whose label file holds `lines`."""
    (folder / "images" / "train").mkdir(parents=True)
    (folder / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", image_size, (90, 120, 150)).save(folder / "images" / "train" / "a.jpg")
    (folder / "labels" / "train" / "a.txt").write_text("".join(f"{line}\n" for line in lines))
    write_data_yaml(folder / "data.yaml", list(names), {"train": "images/train"})
    return folder


@pytest.mark.parametrize(
    "lines, expected, boxes",
    [
        (["0 0.5 0.5 0.2 0.2", "1 1.0 0.5 0.0008 0.1"], {("box-clipped", "warning"): "a.txt:2"}, 2),  # 1.0004
        (["0 0.5 0.5 0.2 0.2", "1 1.2 0.5 0.2 0.2"], {("box-outside", "error"): "a.txt:2"}, 0),
        (["0 0.5 0.5 0.2 0.2", "2 0.5 0.5 0.2 0.2"], {("unknown-class", "error"): "a.txt:2"}, 0),
        (["0 0.5 0.5 0.2 0.2 0.87"], {("score-column", "warning"): "a.txt:1"}, 1),
        (["1 0.1 0.1 0.5 0.2 0.3 0.6 0.1 0.4"], {("polygon", "warning"): "a.txt:1"}, 1),
        (["0 0.5 0.5"], {("label-invalid", "error"): "a.txt:1"}, 0),
        (["0 0.5 half 0.2 0.2"], {("label-invalid", "error"): "a.txt:1"}, 0),
    ],
)
def test_a_yolo_label_files_traps_are_named_with_the_file_and_the_line(tmp_path, lines, expected, boxes):
    records, problems, _ = checked(write_yolo(tmp_path, lines))
    assert {key: found[0].file.rpartition("/")[2] for key, found in problems.items()} == expected
    assert sum(len(r["objects"]) for r in records) == boxes


def test_a_yolo_polygon_becomes_its_bounding_box_and_an_image_without_labels_is_a_background(tmp_path):
    folder = write_yolo(tmp_path, ["1 0.1 0.1 0.5 0.2 0.3 0.6 0.1 0.4"])
    Image.new("RGB", (50, 50)).save(folder / "images" / "train" / "b.jpg")  # no labels/train/b.txt
    records, problems, _ = checked(folder)
    assert [r["objects"] for r in records] == [
        [{"class": 1, "name": "stripes", "box": [10.0, 8.0, 50.0, 48.0], "difficult": 0}],
        [],
    ]
    assert "a polygon of 4 points" in problems[("polygon", "warning")][0].message


@pytest.mark.parametrize("names", ["[]", "[[swoosh, stripes]]", "{0: {a: 1}}", "swoosh"])
def test_a_data_yaml_without_a_list_of_names_is_refused_naming_it(tmp_path, names):
    folder = write_yolo(tmp_path, [])
    (folder / "data.yaml").write_text(f"train: images/train\nnames: {names}\n")
    with pytest.raises(check.UserError, match="data.yaml names no classes: it needs names, a list or"):
        checked(folder)


def test_a_yolo_file_that_is_no_text_is_refused_naming_it(tmp_path):
    folder = write_yolo(tmp_path, [])
    (folder / "data.yaml").write_bytes(b"\xff\xfe\x00names: [a]")
    with pytest.raises(check.UserError, match=f"{folder / 'data.yaml'} is no UTF-8 text"):
        checked(folder)


def write_coco(folder, data, images=("a.jpg",), size=(100, 80)):
    folder.mkdir(parents=True, exist_ok=True)
    for name in images:
        Image.new("RGB", size, (90, 120, 150)).save(folder / name)
    (folder / "_annotations.coco.json").write_text(json.dumps(data))
    return folder


def coco_file(annotations, images=None, categories=None):
    return {
        "images": images or [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}],
        "annotations": annotations,
        "categories": categories or [{"id": 0, "name": "logos", "supercategory": "none"}, {"id": 3, "name": "swoosh"}],
    }


def box(identifier, category=3, bbox=(10, 20, 30, 40), image=1, **extra):
    return {"id": identifier, "image_id": image, "category_id": category, "bbox": list(bbox), **extra}


def test_coco_maps_categories_by_name_and_its_bbox_is_x_y_width_height(tmp_path):
    records, problems, _ = checked(write_coco(tmp_path, coco_file([box(1)])))
    assert problems == {}  # the unused placeholder category 0 and the gap in ids are no problem
    assert records[0]["objects"] == [{"class": 0, "name": "swoosh", "box": [10.0, 20.0, 40.0, 60.0], "difficult": 0}]


@pytest.mark.parametrize(
    "data, expected",
    [
        (coco_file([box(1, iscrowd=1)]), ("crowd-region", "warning", "annotation 1")),
        (coco_file([box(1), box(2, image=7)]), ("image-unknown", "error", "annotation 2")),
        (coco_file([box(1), box(1)]), ("duplicate-id", "error", "annotation 1")),
        (coco_file([box(1, category=9)]), ("unknown-category", "error", "annotation 1")),
        (coco_file([box(1, bbox=(10, 20, 30))]), ("box-invalid", "error", "annotation 1")),
        (
            coco_file([], images=[{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}] * 2),
            ("duplicate-id", "error", "image 1"),
        ),
        (
            coco_file([], images=[{"id": 1, "file_name": "a.jpg", "width": 120, "height": 80}]),
            ("size-mismatch", "error", "image 1 (a.jpg)"),
        ),
        (
            coco_file([], images=[{"id": 1, "file_name": "../a.jpg", "width": 100, "height": 80}]),
            ("image-path-invalid", "error", "image 1 (../a.jpg)"),
        ),
        (
            coco_file([], images=[{"id": 1, "file_name": "gone.jpg", "width": 100, "height": 80}]),
            ("image-missing", "error", "image 1 (gone.jpg)"),
        ),
    ],
)
def test_a_coco_files_traps_are_named_with_the_file_and_the_entry(tmp_path, data, expected):
    _, problems, _ = checked(write_coco(tmp_path, data))
    problem, severity, where = expected
    assert (problem, severity) in problems, problems
    assert problems[(problem, severity)][0].file.endswith(f"_annotations.coco.json: {where}")


def test_ids_that_are_lists_or_objects_are_problems_not_a_crash(tmp_path):
    annotations = [box([1]), box(2, image=[1]), box(3, category={"id": 3}), box(4)]
    images = [{"id": [2], "file_name": "b.jpg"}, {"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}]
    records, problems, _ = checked(write_coco(tmp_path, coco_file(annotations, images=images)))
    assert set(problems) == {
        ("annotation-invalid", "error"),
        ("image-invalid", "error"),
        ("image-unknown", "error"),
        ("unknown-category", "error"),
    }
    assert problems[("image-unknown", "error")][0].file.endswith("annotation 2")
    assert problems[("unknown-category", "error")][0].file.endswith("annotation 3")


def test_an_image_without_annotations_is_kept_as_a_background(tmp_path):
    records, problems, _ = checked(write_coco(tmp_path, coco_file([])))
    assert problems == {} and records[0]["objects"] == []


def test_the_same_file_name_in_two_splits_is_an_error_naming_both(tmp_path):
    write_coco(tmp_path / "train", coco_file([box(1)]))
    write_coco(tmp_path / "valid", coco_file([box(1)]), size=(100, 81))
    (tmp_path / "valid" / "_annotations.coco.json").write_text(
        json.dumps(coco_file([box(1)], images=[{"id": 1, "file_name": "a.jpg", "width": 100, "height": 81}]))
    )
    records, problems, splits = checked(tmp_path)
    assert len(records) == 1 and splits["named"] == ["train", "val"]
    message = problems[("same-name", "error")][0].message
    assert message.startswith(f"the file name of {tmp_path / 'train' / 'a.jpg'} (in train and in val)")


def test_a_declared_size_that_is_the_exif_rotated_view_is_named_so(tmp_path):
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    tmp_path.mkdir(exist_ok=True)
    Image.new("RGB", (100, 80)).save(tmp_path / "a.jpg", exif=exif.tobytes())
    data = coco_file([], images=[{"id": 1, "file_name": "a.jpg", "width": 80, "height": 100}])
    (tmp_path / "_annotations.coco.json").write_text(json.dumps(data))
    _, problems, _ = checked(tmp_path)
    assert "is the EXIF-rotated view of the 100x80 stored image" in problems[("size-mismatch", "error")][0].message


def write_tasks(folder, tasks, images=("photo.jpg",)):
    folder.mkdir(parents=True, exist_ok=True)
    for name in images:
        Image.new("RGB", (100, 80)).save(folder / name)
    (folder / "export.json").write_text(json.dumps(tasks))
    return folder / "export.json"


def rectangle(label="swoosh", x=10, y=20, width=30, height=40, **value):
    value = {"x": x, "y": y, "width": width, "height": height, "rotation": 0, "rectanglelabels": [label], **value}
    return {"type": "rectanglelabels", "original_width": 100, "original_height": 80, "value": value}


@pytest.mark.parametrize(
    "url",
    [
        f"/data/upload/1/{UPLOAD_PREFIX}photo.jpg",
        "/data/local-files/?d=shots/2026/photo.jpg",
        "s3://bucket/x/photo.jpg",
    ],
)
def test_label_studio_tasks_find_their_images_by_file_name_and_give_boxes_in_percent(tmp_path, url):
    export = write_tasks(tmp_path, [{"id": 4, "data": {"image": url}, "annotations": [{"result": [rectangle()]}]}])
    records, problems, _ = checked(export)
    assert problems == {}
    assert records[0]["objects"][0]["box"] == [10.0, 16.0, 40.0, 48.0]


def test_label_studios_traps_are_named_with_the_task(tmp_path):
    tasks = [
        {"id": 1, "data": {"image": "/data/upload/1/0000aaaa-missing.jpg"}, "annotations": [{"result": []}]},
        {"id": 2, "data": {"image": "/data/upload/1/0000bbbb-photo.jpg"}},  # unlabelled
        {"id": 3, "data": {"image": "/data/upload/1/0000cccc-photo.jpg"}, "predictions": [{"result": [rectangle()]}]},
        {"id": 4, "data": {"image": "photo.jpg"}, "annotations": [{"result": [rectangle(rotation=90)]}]},
    ]
    _, problems, _ = checked(write_tasks(tmp_path, tasks))
    assert problems[("image-missing", "error")][0].message.startswith(
        "names /data/upload/1/0000aaaa-missing.jpg: no 0000aaaa-missing.jpg or missing.jpg in"
    )
    assert problems[("unverified", "warning")][0].file.endswith("export.json: task 3")  # predictions, no annotation
    assert "rotated by 90 degrees: its bounding box is used" in problems[("rotated-box", "warning")][0].message
    assert problems[("unlabelled", "warning")][0].file.endswith("export.json: task 2")


def test_label_studio_results_of_any_shape_are_problems_not_a_crash(tmp_path):
    results = [rectangle(rotation="90"), {"type": "rectanglelabels", "value": [1, 2]}, rectangle()]
    results[2]["value"]["rectanglelabels"] = "swoosh"  # a string, not a list of names
    tasks = [
        {"id": 1, "data": {"image": "photo.jpg"}, "annotations": [{"result": results}]},
        {"id": 2, "data": {"image": "photo.jpg"}, "annotations": 7},
    ]
    records, problems, _ = checked(write_tasks(tmp_path, tasks))
    assert [p.file for p in problems[("box-invalid", "error")]] == [
        f"{tmp_path / 'export.json'}: task 1, result {i}" for i in (1, 2, 3)
    ]
    assert problems[("unlabelled", "warning")][0].file.endswith("export.json: task 2")


def test_cvat_polygons_become_boxes_and_a_video_export_is_refused(tmp_path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (100, 80)).save(tmp_path / "images" / "a.jpg")
    shapes = '<polygon label="stripes" points="10,20;50,25;30,60" occluded="0"></polygon>'
    image = f'<image id="0" name="a.jpg" width="100" height="80">{shapes}</image>'
    (tmp_path / "annotations.xml").write_text(f"<annotations><version>1.1</version>{image}</annotations>")
    records, problems, _ = checked(tmp_path)
    assert records[0]["objects"][0]["box"] == [10.0, 20.0, 50.0, 60.0] and ("polygon", "warning") in problems
    (tmp_path / "annotations.xml").write_text('<annotations><track id="0" label="a"></track></annotations>')
    with pytest.raises(check.UserError, match="is CVAT for video \\(tracks\\): export the task as CVAT for images 1.1"):
        checked(tmp_path)


@pytest.mark.parametrize(
    "shape",
    ['<box label="swoosh" xtl="nan" ytl="1" xbr="inf" ybr="5"/>', '<polygon label="swoosh" points="1,2;nan,4;5,6"/>'],
)
def test_a_cvat_coordinate_that_is_not_finite_is_an_error(tmp_path, shape):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (100, 80)).save(tmp_path / "images" / "a.jpg")
    image = f'<image id="0" name="a.jpg" width="100" height="80">{shape}</image>'
    (tmp_path / "annotations.xml").write_text(f"<annotations>{image}</annotations>")
    _, problems, _ = checked(tmp_path)
    assert list(problems) == [("box-invalid", "error")]
    assert problems[("box-invalid", "error")][0].file.endswith("annotations.xml: image 0 (a.jpg), shape 1")


def test_class_names_keep_their_spaces(tmp_path):
    categories = [{"id": 1, "name": "traffic light"}, {"id": 2, "name": "rice bug -hama padi-"}]
    data = coco_file([box(1, category=2), box(2, category=1)], categories=categories)
    settings = check.Settings(["traffic light", "rice bug -hama padi-"], {}, 50_000_000, True)
    records, problems, _ = checked(write_coco(tmp_path, data), settings)
    assert problems == {} and [o["name"] for o in records[0]["objects"]] == ["rice bug -hama padi-", "traffic light"]


def test_an_unknown_export_is_named_with_what_the_workflow_reads(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(check.UserError, match="holds no export this workflow reads: a VOC folder"):
        checked(tmp_path)
