"""COCO JSON exports, read as entries (workflow/lib/labelled.py) and written (pre-labels).

Read: Roboflow's export (train/, valid/, test/, each with _annotations.coco.json beside its images), CVAT's COCO 1.0
(annotations/instances_<subset>.json, the images in images/ or images/<subset>/), Label Studio's COCO export
(result.json, file names under images/), or one .json file whose images lie beside it (or in dataset_images).
A file holds {"images": [{id, file_name, width, height}], "annotations": [{id, image_id, category_id, bbox,
iscrowd}], "categories": [{id, name}]}; a bbox is [x, y, width, height] in pixels from the image's top left corner.

Each file's traps, each a problem naming the file and the entry: categories are matched by name, never by id (ids
have gaps, Roboflow adds a placeholder id 0 named after the project, which stays unused); an iscrowd region is no
single object (left out with a warning); an annotation whose image_id names no image, a category id the file does
not list, a bbox that is not four numbers, and an id used twice are errors; an image without annotations is kept
(a background image). An annotation with a score is a pre-label nobody confirmed (verified="no" in LabelImg's
words).
"""

import json
import math
from pathlib import Path

from workflow.lib.forms import ROBOFLOW_COCO, coco_files
from workflow.lib.labelled import AnnotationError, Box, Entry, Export, Problem, declared_size, inside, split_name


def read_coco(dataset, images=None):
    """The entries of a COCO export (a folder, or one file whose images are in `images` or beside it)."""
    path = Path(dataset)
    sources = [(path, None, Path(images) if images else path.parent)] if path.is_file() else sources_of(path)
    export = Export([])
    for json_path, split, folder in sources:
        read_file(json_path, split, folder, export)
        if split:
            export.named_splits.append(split)
    return export


def sources_of(folder):
    """[(file, its split or None, the folder its file names are relative to)] of an export folder."""
    sources = []
    for path in coco_files(folder):
        if path.name == ROBOFLOW_COCO:
            sources.append((path, split_name(path.parent.name) if path.parent != folder else None, path.parent))
        elif path.parent.name == "annotations":
            subset = path.stem[len("instances_") :]
            images = folder / "images" / subset if (folder / "images" / subset).is_dir() else folder / "images"
            sources.append((path, split_name(subset), images))
        else:  # Label Studio's result.json: its file names start with images/
            sources.append((path, None, folder))
    return sources


def load(path):
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise AnnotationError(f"{path} is not JSON: {error}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(key), list) for key in ("images", "annotations")):
        raise AnnotationError(f"{path} is no COCO file: it needs the lists images and annotations (and categories)")
    return data


def read_file(path, split, folder, export):
    data = load(path)
    categories = by_id(path, data.get("categories", []), "category", export.problems)
    entries = {}
    for image_id, image in by_id(path, data["images"], "image", export.problems).items():
        entries[image_id] = entry_of(path, image_id, image, split, folder)
    seen = set()
    for annotation in data["annotations"]:
        if not isinstance(annotation, dict):
            message = f"an annotation that is no object: {str(annotation)[:80]}"
            export.problems.append(Problem(str(path), "error", "annotation-invalid", message))
            continue
        where = f"{path}: annotation {annotation.get('id')}"
        if not is_id(annotation.get("id")):
            message = f"an annotation whose id is no number or string: {str(annotation)[:80]}"
            export.problems.append(Problem(str(path), "error", "annotation-invalid", message))
            continue
        if annotation["id"] in seen:
            export.problems.append(Problem(where, "error", "duplicate-id", "this annotation id is used twice"))
            continue
        seen.add(annotation["id"])
        entry = entries.get(annotation.get("image_id")) if is_id(annotation.get("image_id")) else None
        if entry is None:
            message = f"names image id {annotation.get('image_id')!r}, which the file lists no image for"
            export.problems.append(Problem(where, "error", "image-unknown", message))
            continue
        add_box(entry, annotation, categories, where)
    export.entries += list(entries.values())


def by_id(path, items, kind, problems):
    """{id: item} of a file's images or categories; an id used twice is an error, and the first one is kept."""
    found = {}
    for item in items:
        if not isinstance(item, dict) or not is_id(item.get("id")):
            problems.append(
                Problem(
                    str(path),
                    "error",
                    f"{kind}-invalid",
                    f"a {kind} without an id (a number or a string): {str(item)[:60]}",
                )
            )
        elif item["id"] in found:
            message = f"{kind} id {item['id']!r} is used twice"
            problems.append(Problem(f"{path}: {kind} {item['id']}", "error", "duplicate-id", message))
        else:
            found[item["id"]] = item
    return found


def entry_of(path, image_id, image, split, folder):
    written = str(image.get("file_name", ""))
    entry = Entry(Path(written).stem, None, f"{path}: image {image_id} ({written})", split=split)
    entry.width, entry.height = (declared_size(image.get(key)) for key in ("width", "height"))
    try:
        entry.image = inside(folder, written, "file_name")
    except AnnotationError as error:
        entry.problems.append(Problem(entry.annotation, "error", "image-path-invalid", str(error)))
    return entry


def add_box(entry, annotation, categories, where):
    category = categories.get(annotation.get("category_id")) if is_id(annotation.get("category_id")) else None
    bbox = annotation.get("bbox")
    if category is None:
        message = f"category id {annotation.get('category_id')!r} is none of the file's categories"
        entry.problems.append(Problem(where, "error", "unknown-category", message))
    elif not isinstance(bbox, list) or len(bbox) != 4 or not all(is_number(v) for v in bbox):
        message = f"bbox {str(bbox)[:60]} is not [x, y, width, height] in pixels"
        entry.problems.append(Problem(where, "error", "box-invalid", message))
    elif annotation.get("iscrowd"):
        message = f"'{category.get('name')}' is a crowd region (iscrowd 1), not one object; left out"
        entry.problems.append(Problem(where, "warning", "crowd-region", message))
    else:
        x, y, width, height = bbox
        entry.boxes.append(Box(str(category.get("name")), x, y, x + width, y + height, where=where))
        if "score" in annotation:
            entry.verified = "no"


def is_id(value):
    """An id a COCO file may use: a number or a string (a list or an object would not even compare)."""
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def write_coco(path, images, classes):
    """A COCO file of images [(file name, width, height, [(class id, xmin, ymin, xmax, ymax, score or None)])]:
    category ids from 1 in the order of classes, a pre-label's score kept on its annotation."""
    annotations = []
    for image_id, (_, _, _, boxes) in enumerate(images, start=1):
        for class_id, xmin, ymin, xmax, ymax, score in boxes:
            annotation = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": int(class_id) + 1,
                "bbox": [xmin, ymin, xmax - xmin, ymax - ymin],
                "area": (xmax - xmin) * (ymax - ymin),
                "iscrowd": 0,
            }
            annotations.append(annotation if score is None else {**annotation, "score": round(float(score), 4)})
    data = {
        "images": [
            {"id": i, "file_name": name, "width": width, "height": height}
            for i, (name, width, height, _) in enumerate(images, start=1)
        ],
        "annotations": annotations,
        "categories": [{"id": i, "name": name, "supercategory": "none"} for i, name in enumerate(classes, start=1)],
    }
    Path(path).write_text(json.dumps(data, indent=1))
