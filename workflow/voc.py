"""Reading PASCAL VOC (LabelImg, CVAT, Roboflow ...) annotation folders safely.

Untrusted input stays harmless: XML is parsed with defusedxml (no entity expansion, no external
entities, no DTD retrieval); images are paired with their XML by file stem inside the dataset's
JPEGImages folder, so nothing written inside an XML (<path>, <filename>, <folder>) ever selects a file.
"""
from dataclasses import dataclass, field
from pathlib import Path

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from xml.etree.ElementTree import ParseError

from workflow.plan import IMAGE_SUFFIXES


class AnnotationError(Exception):
    """The XML cannot be used at all (does not parse, or lacks a required field)."""


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
    try:
        root = SafeET.parse(str(xml_path)).getroot()
    except ParseError as error:
        raise AnnotationError(f"XML does not parse: {error}") from None
    except DefusedXmlException as error:
        raise AnnotationError(f"XML refused for safety ({type(error).__name__}: entities or DTDs are not allowed)") from None
    if root.tag != "annotation":
        raise AnnotationError(f"root element is <{root.tag}>, expected <annotation>")
    annotation = VocAnnotation(xml_path=Path(xml_path), filename=_text(root, "filename"))
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
    try:
        return float(text)
    except ValueError:
        raise AnnotationError(f"{context} <{tag}> is not a number: '{text[:40]}'".strip()) from None
