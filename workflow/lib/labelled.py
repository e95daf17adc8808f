"""What every reader of an annotation export yields, whatever tool wrote it (LabelImg's VOC, an im2rec .lst, COCO
JSON, YOLO txt, CVAT XML, Label Studio JSON), so that the check, the split and the pack never know the form: each
image with its boxes and the size the export declares for it, where they were written, the split the export puts it
in, and the problems the reader found on the way (each naming the file, and the line or the entry).

Untrusted input stays harmless: a path written inside an export is taken relative to the export's image folder and
refused when it is absolute or leads out of it (`inside`).
"""

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val"}
SPLIT_NAMES["test"] = "test"


class AnnotationError(Exception):
    """An annotation that cannot be used at all (does not parse, or lacks a required field)."""


@dataclass
class Problem:
    file: str  # the file, and the line or entry ("labels/a.txt:3", "_annotations.coco.json: annotation 17")
    severity: str  # "error" or "warning"
    problem: str
    message: str


@dataclass
class Box:
    label: str  # the class name as the tool wrote it
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    normalised: bool = False  # coordinates in [0, 1] of the image (YOLO, Label Studio, .lst); else pixels
    difficult: bool = False
    where: str = ""  # the box's place in its file, when it has one of its own ("line 3", "annotation 17")


@dataclass
class Entry:
    """One image as the export describes it."""

    id: str  # the image's file stem: unique in the dataset
    image: Path  # None when the export names no image the reader could find (a problem says which)
    annotation: str  # where its boxes were written, for the problem table
    boxes: list = field(default_factory=list)
    width: int = 0  # the size the export declares (0: none)
    height: int = 0
    split: str = None  # "train", "val" or "test" as the export says; None when it says nothing
    problems: list = field(default_factory=list)
    verified: str = None  # LabelImg's mark: "no" on a pre-label nobody confirmed
    filename: str = ""  # the file name a VOC XML declares (never used to find the image)


@dataclass
class Export:
    entries: list
    problems: list = field(default_factory=list)  # about the export as a whole (a data.yaml naming missing folders)
    named_splits: list = field(default_factory=list)  # the splits the export names, in its words


def declared_size(value):
    """A width or height an export declares, as an int; 0 (none declared) for anything but a positive number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0
    return int(number) if number == number and 0 < number < float("inf") else 0


def split_name(text):
    """train, val or test for a split folder or key as tools name them (Roboflow's valid, CVAT's Train), else None."""
    return SPLIT_NAMES.get(str(text).strip().lower())


def inside(root, written, what="image path"):
    """The file a path written in an export names, inside root: '\\' read as '/' (written on Windows);
    AnnotationError for a path that is empty, absolute or leads out of root."""
    relative = str(written).strip().replace("\\", "/")
    if PurePosixPath(relative).is_absolute() or relative[1:2] == ":":
        raise AnnotationError(f"{what} '{written}' is absolute; it must be relative to the image root {root}")
    normal = os.path.normpath(relative)
    if normal == ".":
        raise AnnotationError(f"{what} is empty")
    if normal == ".." or normal.startswith("../"):
        raise AnnotationError(f"{what} '{written}' leads outside the image root {root}")
    return Path(root) / normal


def text_of(path):
    """The text of an export's file; AnnotationError naming it when it is no UTF-8 text."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise AnnotationError(f"{path} is no UTF-8 text: {error}") from None


def images_in(folder):
    """The image files in a folder and its subfolders, sorted (none when it does not exist)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
