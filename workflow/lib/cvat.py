"""CVAT for images 1.1 XML exports, read as entries (workflow/lib/labelled.py).

annotations.xml holds <image id name width height [subset]> elements with <box label xtl ytl xbr ybr> in pixels; the
images are in images/ beside it when the task was exported with them (Save images), else in dataset_images. Parsed
with defusedxml (no entities, no DTDs). A polygon, polyline or points shape becomes its bounding box with a warning;
a video task's <track> elements are refused (CVAT for video: export as CVAT for images 1.1).
"""

import math
from pathlib import Path
from xml.etree.ElementTree import ParseError

from workflow.lib.labelled import AnnotationError, Box, Entry, Export, Problem, declared_size, inside, split_name

POINT_SHAPES = ("polygon", "polyline", "points")


def read_cvat(dataset, images=None):
    """The entries of a CVAT for images export: a folder with annotations.xml, or the XML itself."""
    import defusedxml.ElementTree as SafeET  # here: the Snakefile imports workflow.lib without defusedxml
    from defusedxml import DefusedXmlException

    path = Path(dataset)
    xml = path if path.is_file() else path / "annotations.xml"
    folder = Path(images) if images else xml.parent / "images" if (xml.parent / "images").is_dir() else xml.parent
    try:
        root = SafeET.parse(str(xml)).getroot()
    except ParseError as error:
        raise AnnotationError(f"{xml}: XML does not parse: {error}") from None
    except DefusedXmlException as error:
        raise AnnotationError(f"{xml}: XML refused for safety ({type(error).__name__}: entities or DTDs)") from None
    if root.tag != "annotations":
        raise AnnotationError(f"{xml}: root element is <{root.tag}>, not CVAT's <annotations>")
    if root.find("track") is not None:
        raise AnnotationError(f"{xml} is CVAT for video (tracks): export the task as CVAT for images 1.1")
    export = Export([entry_of(xml, image, folder) for image in root.findall("image")])
    export.named_splits = sorted({entry.split for entry in export.entries if entry.split})
    return export


def entry_of(xml, image, folder):
    name = image.get("name", "")
    where = f"{xml}: image {image.get('id')} ({name})"
    entry = Entry(Path(name).stem, None, where, split=split_name(image.get("subset", "")))
    entry.width, entry.height = (declared_size(image.get(key)) for key in ("width", "height"))
    try:
        entry.image = inside(folder, name, "image name")
    except AnnotationError as error:
        entry.problems.append(Problem(where, "error", "image-path-invalid", str(error)))
    for index, shape in enumerate(image, start=1):
        box_of(entry, shape, f"{where}, shape {index}")
    return entry


def box_of(entry, shape, where):
    label = shape.get("label", "")
    try:
        if shape.tag == "box":
            corners = [coordinate(shape.get(key)) for key in ("xtl", "ytl", "xbr", "ybr")]
        elif shape.tag in POINT_SHAPES:
            points = [[coordinate(v) for v in point.split(",")] for point in shape.get("points", "").split(";")]
            xs, ys = [x for x, _ in points], [y for _, y in points]
            corners = [min(xs), min(ys), max(xs), max(ys)]
            message = f"a {shape.tag} of {len(points)} points is not a box: its bounding box is used"
            entry.problems.append(Problem(where, "warning", "polygon", message))
        else:
            return
    except (TypeError, ValueError):
        entry.problems.append(
            Problem(where, "error", "box-invalid", f"<{shape.tag}> has no finite numeric coordinates")
        )
        return
    entry.boxes.append(Box(label, *corners, where=where))


def coordinate(text):
    """A coordinate CVAT wrote; ValueError unless it is a finite number (TypeError when missing)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not finite")
    return value
