"""An im2rec detection list (.lst, the original project's format) and an image folder as the dataset."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from conftest import REPO, check_command
from workflow import check
from workflow.lib import voc

SEED = REPO.parent / "shared" / "reference" / "seed_project"
CLASSES = ["nike", "adidas"]


def settings(**overrides):
    values = dict(classes=CLASSES, class_map={}, max_pixels=50_000_000, keep_empty=True)
    values.update(overrides)
    return check.Settings(**values)


def lst_line(index, objects, path):
    values = "\t".join(f"{v:.4f}" for obj in objects for v in obj)
    return "\t".join([str(index), "2", "6"] + ([values] if values else []) + [path]) + "\r\n"


def write_list(path, lines):
    path.write_text("".join(lst_line(i, objects, image) for i, (objects, image) in enumerate(lines)), newline="")
    return path


@pytest.fixture
def folder(tmp_path):
    """tmp/VOC2017/{a,b,c}.jpg (200x100), distinct contents."""
    (tmp_path / "VOC2017").mkdir()
    for shade, name in enumerate("abc"):
        Image.new("RGB", (200, 100), (40 * shade, 90, 150)).save(tmp_path / "VOC2017" / f"{name}.jpg")
    return tmp_path


def problems_of(lst, **overrides):
    records, problems = check.check_dataset(lst, settings(**overrides))
    return records, {(p.problem, p.severity): p for p in problems}


@pytest.mark.parametrize(
    "name, lines, objects, difficult, first",
    [
        (
            "NikeAndAdidas_train.lst",
            108,
            (103, 102),
            5,
            ("VOC2017\\n2.jpg", [0.0, 0.1902, 0.3185, 0.3738, 0.4296, 0.0]),
        ),
        ("NikeAndAdidas_val.lst", 15, (10, 6), 0, ("VOC2017\\a1.jpg", [1.0, 0.517, 0.2428, 0.669, 0.3288, 0.0])),
    ],
)
def test_the_original_lists_parse_completely(name, lines, objects, difficult, first):
    entries = [voc.parse_lst_line(line) for _, line in voc.lst_lines(SEED / name)]
    assert len(entries) == lines
    assert tuple(sum(o[0] == cls for e in entries for o in e.objects) for cls in (0, 1)) == objects
    for entry in entries:
        path = voc.lst_image_path(SEED, entry.path)
        assert entry.path.startswith("VOC2017\\") and path.parent == SEED / "VOC2017" and path.suffix == ".jpg"
        assert all(0 <= min(o[1:5]) and max(o[1:5]) <= 1 and o[5] in (0, 1) for o in entry.objects)
    assert sum(o[5] for e in entries for o in e.objects) == difficult
    assert (entries[0].path, entries[0].objects[0]) == first


def test_a_clean_list_gives_pixel_boxes_and_ids_by_relative_path(folder):
    lst = write_list(
        folder / "train.lst",
        [([(1, 0.1, 0.2, 0.5, 0.9, 0), (0, 0.6, 0.1, 0.9, 0.4, 1)], "VOC2017\\a.jpg"), ([], "VOC2017/b.jpg")],
    )
    records, problems = problems_of(lst)
    assert problems == {}
    assert [r["id"] for r in records] == ["VOC2017/a", "VOC2017/b"]
    assert records[0]["image"] == str(folder / "VOC2017" / "a.jpg") and records[0]["annotation"] == f"{lst}:1"
    first, second = records[0]["objects"]
    assert first["name"] == "adidas" and first["class"] == 1 and first["difficult"] == 0
    assert first["box"] == pytest.approx([20, 20, 100, 90]) and second["difficult"] == 1 and records[1]["objects"] == []


@pytest.mark.parametrize(
    "objects, path, problem, message",
    [
        (
            [(0, 0.1, 0.1, 0.5, 0.5, 0)],
            "VOC2017\\gone.jpg",
            "image-missing",
            "no image at {root}/VOC2017/gone.jpg (written 'VOC2017\\gone.jpg')",
        ),
        (
            [(0, 0.1, 0.1, 1.3, 0.5, 0)],
            "VOC2017\\a.jpg",
            "box-outside",
            "object 1 ('nike'): box (0.1, 0.1, 1.3, 0.5) lies outside [0, 1] (normalised coordinates)",
        ),
        (
            [(2, 0.1, 0.1, 0.5, 0.5, 0)],
            "VOC2017\\a.jpg",
            "unknown-class",
            "object 1: class id 2 is not one of the 2 configured classes (ids 0 to 1: ['nike', 'adidas'])",
        ),
        (
            [(0.5, 0.1, 0.1, 0.5, 0.5, 0)],
            "VOC2017\\a.jpg",
            "unknown-class",
            "object 1: class id 0.5 is not one of the 2 configured classes (ids 0 to 1: ['nike', 'adidas'])",
        ),
        (
            [(0, 0.5, 0.1, 0.5, 0.5, 0)],
            "VOC2017\\a.jpg",
            "degenerate-box",
            "object 1 ('nike'): empty box (0.5, 0.1, 0.5, 0.5) (xmin >= xmax or ymin >= ymax)",
        ),
        (
            [],
            "..\\outside.jpg",
            "image-path-invalid",
            "image path '..\\outside.jpg' leads outside the image root {root}",
        ),
        (
            [],
            "VOC2017\\..\\..\\outside.jpg",
            "image-path-invalid",
            "image path 'VOC2017\\..\\..\\outside.jpg' leads outside the image root {root}",
        ),
        (
            [],
            "C:\\data\\VOC2017\\a.jpg",
            "image-path-invalid",
            "image path 'C:\\data\\VOC2017\\a.jpg' is absolute; it must be relative to the image root {root}",
        ),
        (
            [],
            "/etc/passwd",
            "image-path-invalid",
            "image path '/etc/passwd' is absolute; it must be relative to the image root {root}",
        ),
    ],
)
def test_list_errors_name_the_line_and_the_problem(folder, objects, path, problem, message):
    (folder.parent / "outside.jpg").write_bytes((folder / "VOC2017" / "a.jpg").read_bytes())
    lst = write_list(folder / "train.lst", [([(0, 0.1, 0.1, 0.4, 0.4, 0)], "VOC2017\\b.jpg"), (objects, path)])
    records, problems = problems_of(lst)
    assert [r["id"] for r in records] == ["VOC2017/b"]
    found = problems[(problem, "error")]
    assert found.file == f"{lst}:2" and found.message == message.format(root=folder)


def test_broken_lines_and_slight_overshoot(folder):
    lst = folder / "train.lst"
    lst.write_text(
        "0\t2\t6\t0\t0.1\t0.1\tx\t0.5\t0\tVOC2017/a.jpg\n"
        "0\t2\t6\tnan\t0.1\t0.1\t0.2\t0.5\t0\tVOC2017/a.jpg\n"
        "1\t2\t6\t0\t0.1\t0.1\t0.5\tVOC2017/b.jpg\n"
        "2\tVOC2017/c.jpg\n"
        "\n"
        "3\t2\t6\t1\t-0.01\t0.1\t1.01\t0.5\t0\tVOC2017/c.jpg\n"
    )
    records, table = check.check_dataset(lst, settings())
    assert [(p.file, p.problem, p.severity) for p in table] == [
        (f"{lst}:{n}", "lst-invalid", "error") for n in (1, 2, 3, 4)
    ] + [(f"{lst}:6", "box-clipped", "warning")]
    assert [p.message for p in table] == [
        "label value 6 is not a number: 'x'",
        "label value 3 is not a number: 'nan'",
        "6 label values do not fit header width 2 and 6 values per object",
        "expected tab-separated index, 2, 6, objects and image path; got 2 fields",
        "object 1 ('adidas'): box (-0.01, 0.1, 1.01, 0.5) clipped to [0, 1] (normalised coordinates)",
    ]
    assert records[0]["objects"][0]["box"] == pytest.approx([0, 10, 200, 50])


def test_lst_root_and_missing_list(folder, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    lst = write_list(lists / "train.lst", [([], "VOC2017\\a.jpg")])
    records, problems = problems_of(lst, lst_root=str(folder))
    assert problems == {} and records[0]["image"] == str(folder / "VOC2017" / "a.jpg")
    _, problems = problems_of(lst)
    assert (
        problems[("image-missing", "error")].message == f"no image at {lists}/VOC2017/a.jpg (written 'VOC2017\\a.jpg')"
    )
    assert voc.lst_images(lst, folder) == [str(folder / "VOC2017" / "a.jpg")] and voc.lst_images(lst) == []
    with pytest.raises(check.UserError, match="no such list file"):
        check.check_dataset(lists / "gone.lst", settings())


def test_cli_checks_train_and_val_lists_and_split_takes_the_val_list(folder, tmp_path):
    write_list(
        folder / "train.lst",
        [([(0, 0.1, 0.1, 0.4, 0.4, 0)], "VOC2017\\a.jpg"), ([(1, 0.2, 0.2, 0.6, 0.9, 0)], "VOC2017\\b.jpg")],
    )
    write_list(folder / "val.lst", [([(1, 0.3, 0.3, 0.5, 0.5, 0)], "VOC2017\\c.jpg")])
    out = tmp_path / "out"
    out.mkdir()
    datasets = ["--dataset", str(folder / "train.lst"), "--val-dataset", str(folder / "val.lst")]
    command = check_command(out, CLASSES, *datasets) + ["--no-skip-bad-files"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "3 usable images, 3 objects (nike 1, adidas 2); 0 errors" in result.stderr
    command = [
        sys.executable,
        "-m",
        "workflow.split",
        "--annotations",
        str(out / "a.json"),
        "--splits",
        str(out / "splits.json"),
        "--val-fraction",
        "0.15",
        "--seed",
        "0",
        "--train-out",
        str(out / "train.txt"),
        "--val-out",
        str(out / "val.txt"),
        "--train-records",
        str(out / "train.json"),
        "--val-records",
        str(out / "val.json"),
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (out / "val.txt").read_text() == "VOC2017/c\n" and "(val_dataset)" in result.stderr
    assert [r["id"] for r in json.loads((out / "train.json").read_text())] == (out / "train.txt").read_text().split()
