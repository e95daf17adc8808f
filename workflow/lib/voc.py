"""Reading annotated datasets safely: PASCAL VOC folders (LabelImg, CVAT, Roboflow ...) and the original
project's im2rec detection lists (.lst), as the entries every reader yields (workflow/lib/labelled.py).

Untrusted input stays harmless: XML is parsed with defusedxml (no entity expansion, no external
entities, no DTD retrieval); images are paired with their XML by file stem inside the dataset's
JPEGImages folder, so nothing written inside an XML (<path>, <filename>, <folder>) ever selects a file.
A .lst names its images by relative path; a path that is absolute or leads out of the image root is refused.

The .lst helpers use the standard library only: the Snakefile lists a .lst's images with them.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree.ElementTree import ParseError

from workflow.lib.labelled import IMAGE_SUFFIXES, AnnotationError, Box, Entry, Export, Problem, inside, text_of


@dataclass
class VocObject:
    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: bool = False


@dataclass
class VocAnnotation:
    xml_path: Path
    filename: str = ""
    width: int = 0
    height: int = 0
    objects: list = field(default_factory=list)
    verified: str = None  # LabelImg's mark on <annotation>: "yes", "no" (a pre-label nobody confirmed) or absent


def read_voc(dataset):
    """The entries of a VOC folder (an XML paired with each image by file stem), the split its
    ImageSets/Main/{train,val}.txt give."""
    splits, problems = image_sets(Path(dataset))
    entries = []
    for stem, (xml, image) in find_pairs(dataset).items():
        if xml is None:
            problems.append(Problem(str(image), "warning", "xml-missing", "image has no Annotations/*.xml; left out"))
            continue
        entry = Entry(stem, image, str(xml), split=splits.get(stem))
        if image is None:
            entry.problems.append(
                Problem(str(xml), "error", "image-missing", f"no image named {stem}.* in JPEGImages/")
            )
        else:
            try:
                annotation = parse_annotation(xml)
            except AnnotationError as error:
                entry.problems.append(Problem(str(xml), "error", "xml-invalid", str(error)))
            else:
                entry.width, entry.height = annotation.width, annotation.height
                entry.verified, entry.filename = annotation.verified, annotation.filename
                entry.boxes = [
                    Box(o.name, o.xmin, o.ymin, o.xmax, o.ymax, difficult=o.difficult) for o in annotation.objects
                ]
        entries.append(entry)
    return Export(entries, problems, sorted(set(splits.values())))


def image_sets(dataset):
    """({image id: train or val}, problems) from ImageSets/Main/train.txt and val.txt, when both are there; an id in
    both is an error (the image would leak into val). AnnotationError when a list is no text."""
    folder = dataset / "ImageSets" / "Main"
    if not ((folder / "train.txt").is_file() and (folder / "val.txt").is_file()):
        return {}, []
    listed = {name: listed_ids(folder / f"{name}.txt") for name in ("train", "val")}
    splits = {**{i: "train" for i in listed["train"]}, **{i: "val" for i in listed["val"]}}
    problems = [
        Problem(str(folder / "val.txt"), "error", "in-two-splits", f"image {i} is in train.txt and in val.txt")
        for i in sorted(set(listed["train"]) & set(listed["val"]))
    ]
    return splits, problems


def listed_ids(path):
    """The image ids of an ImageSets list: the first word of each line."""
    return [line.split()[0] for line in text_of(path).splitlines() if line.strip()]


def read_lst(lst, root, classes):
    """The entries of an im2rec .lst (class ids index `classes`; boxes normalised), its images under root."""
    entries = []
    for number, line in lst_lines(lst):
        where = f"{lst}:{number}"
        try:
            item = parse_lst_line(line)
        except AnnotationError as error:
            entries.append(Entry(where, None, where, problems=[Problem(where, "error", "lst-invalid", str(error))]))
            continue
        try:
            image = lst_image_path(root, item.path)
        except AnnotationError as error:
            problem = Problem(where, "error", "image-path-invalid", str(error))
            entries.append(Entry(where, None, where, problems=[problem]))
            continue
        entry = Entry(image.relative_to(root).with_suffix("").as_posix(), image, where)
        if not image.is_file():
            entry.problems.append(
                Problem(where, "error", "image-missing", f"no image at {image} (written '{item.path}')")
            )
        for index, (class_id, *box, difficult) in enumerate(item.objects, start=1):
            if class_id != int(class_id) or not 0 <= class_id < len(classes):
                message = (
                    f"object {index}: class id {class_id:g} is not one of the {len(classes)} configured classes "
                    f"(ids 0 to {len(classes) - 1}: {classes})"
                )
                entry.problems.append(Problem(where, "error", "unknown-class", message))
                continue
            entry.boxes.append(Box(classes[int(class_id)], *box, normalised=True, difficult=difficult >= 1))
        entries.append(entry)
    return Export(entries)


def find_pairs(dataset):
    """Map every image stem to (xml path or None, image path or None) in a VOC folder."""
    dataset = Path(dataset)
    pairs = {}
    for xml in sorted((dataset / "Annotations").glob("*.xml")):
        pairs[xml.stem] = [xml, None]
    images_dir = dataset / "JPEGImages"
    for image in sorted(images_dir.iterdir()) if images_dir.is_dir() else []:
        if image.suffix.lower() in IMAGE_SUFFIXES and image.is_file():
            pairs.setdefault(image.stem, [None, None])[1] = image
    return {stem: tuple(pair) for stem, pair in sorted(pairs.items())}


def parse_annotation(xml_path):
    """Parse one VOC XML; float and integer coordinates both accepted, <size> and <difficult> optional."""
    import defusedxml.ElementTree as SafeET  # here, not at the top: the Snakefile imports this module without it
    from defusedxml import DefusedXmlException

    try:
        root = SafeET.parse(str(xml_path)).getroot()
    except ParseError as error:
        raise AnnotationError(f"XML does not parse: {error}") from None
    except DefusedXmlException as error:
        raise AnnotationError(
            f"XML refused for safety ({type(error).__name__}: entities or DTDs are not allowed)"
        ) from None
    if root.tag != "annotation":
        raise AnnotationError(f"root element is <{root.tag}>, expected <annotation>")
    annotation = VocAnnotation(xml_path=Path(xml_path), filename=_text(root, "filename"), verified=root.get("verified"))
    size = root.find("size")
    if size is not None:
        annotation.width = int(_number(size, "width", default=0))
        annotation.height = int(_number(size, "height", default=0))
    for index, node in enumerate(root.findall("object"), start=1):
        annotation.objects.append(_parse_object(node, index))
    return annotation


def _parse_object(node, index):
    name = _text(node, "name")
    if not name:
        raise AnnotationError(f"object {index} has no <name>")
    box = node.find("bndbox")
    if box is None:
        raise AnnotationError(f"object {index} ('{name}') has no <bndbox>")
    coords = [_number(box, key, context=f"object {index} ('{name}')") for key in ("xmin", "ymin", "xmax", "ymax")]
    difficult = _number(node, "difficult", default=0) >= 1
    return VocObject(name, *coords, difficult=difficult)


def _text(node, tag):
    child = node.find(tag)
    return (child.text or "").strip() if child is not None else ""


def _number(node, tag, default=None, context=""):
    text = _text(node, tag)
    if not text:
        if default is not None:
            return default
        raise AnnotationError(f"{context} has no <{tag}>".strip())
    value = _finite(text)
    if value is None:
        raise AnnotationError(f"{context} <{tag}> is not a number: '{text[:40]}'".strip())
    return value


def _finite(text):
    """The number written in text, or None (also for nan and inf, which float() would accept)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# --- im2rec detection lists (.lst), as the original project shipped them ---------------------------------


@dataclass
class LstEntry:
    path: str  # as written in the list
    objects: list  # [class id, xmin, ymin, xmax, ymax, difficult] with coordinates normalised to [0, 1]


def is_lst(dataset):
    return str(dataset).lower().endswith(".lst")


def lst_root(lst, root=None):
    """The folder a list's image paths are relative to: `root` (config lst_root) or the list's own folder."""
    return Path(root) if root else Path(lst).parent


def lst_lines(lst):
    """(line number, text) of every non-empty line of a list."""
    lines = text_of(lst).splitlines()
    return [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]


def parse_lst_line(line):
    """`index \\t A \\t B \\t (A-2 more header values) \\t objects of B values \\t image path`, tab separated:
    A is the header width (2), B the values per object (6: class id, xmin, ymin, xmax, ymax, difficult)."""
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) < 4:
        raise AnnotationError(f"expected tab-separated index, 2, 6, objects and image path; got {len(fields)} fields")
    values = [_finite(v) for v in fields[1:-1]]
    if None in values:
        raise AnnotationError(
            f"label value {values.index(None) + 1} is not a number: '{fields[1 + values.index(None)][:40]}'"
        )
    header, width = int(values[0]), int(values[1])
    if header < 2 or width < 5 or header > len(values) or (len(values) - header) % width:
        raise AnnotationError(
            f"{len(values)} label values do not fit header width {values[0]:g} and {values[1]:g} values per object"
        )
    body = values[header:]
    objects = [body[i : i + width] for i in range(0, len(body), width)]
    return LstEntry(fields[-1], [o[:5] + [o[5] if width > 5 else 0.0] for o in objects])


def lst_image_path(root, written):
    """The image a list names, inside `root` (labelled.inside: never absolute, never out of it)."""
    return inside(root, written, "image path")


def lst_images(lst, root=None):
    """The existing image files a list names (for the Snakefile: editing one reruns the check)."""
    if not Path(lst).is_file():
        return []  # the check names the missing list
    root = lst_root(lst, root)
    paths = set()
    for _, line in lst_lines(lst):
        try:
            path = lst_image_path(root, parse_lst_line(line).path)
        except AnnotationError:
            continue
        if path.is_file():
            paths.add(str(path))
    return sorted(paths)
