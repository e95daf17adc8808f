"""Label Studio's JSON export, read as entries (workflow/lib/labelled.py), and pre-labels written for its import.

The export is a list of tasks: {"id", "data": {"image": url}, "annotations": [{"result": [{"type":
"rectanglelabels", "original_width", "original_height", "value": {"x", "y", "width", "height", "rotation",
"rectanglelabels": [name]}}], "was_cancelled"}], "predictions": [...]}, the box in percent of the image. The tasks
name images by the server's URLs (/data/upload/1/8c1a2b3c-photo.jpg, where Label Studio put 8 hex digits before the
uploaded name; /data/local-files/?d=folder/photo.jpg; http(s) or s3 addresses): they are paired by file name with
the images of the export's folder, or of dataset_images, the upload prefix taken off when only that matches. A task
without an annotation is unlabelled, left out with a warning; a task with predictions only (pre-labels nobody has
confirmed) is used with them, marked unverified; a rotated rectangle becomes its bounding box with a warning.
"""

import json
import math
import re
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlparse

from workflow.lib.labelled import AnnotationError, Box, Entry, Export, Problem, declared_size, images_in

UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
RECTANGLE = "rectanglelabels"


def read_labelstudio(path, images=None):
    """The entries of a Label Studio JSON export, its images in `images` or beside it."""
    path = Path(path)
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AnnotationError(f"{path} is not JSON: {error}") from None
    if not isinstance(tasks, list):
        raise AnnotationError(f"{path} holds no list of tasks (Label Studio's JSON export)")
    folder = Path(images) if images else path.parent
    by_name = {}
    for image in images_in(folder):
        by_name.setdefault(image.name, image)
    export = Export([])
    for task in tasks:
        entry = entry_of(path, task, by_name, folder)
        if entry.boxes is None:
            message = "no annotation nor prediction (unlabelled): left out"
            export.problems.append(Problem(entry.annotation, "warning", "unlabelled", message))
        else:
            export.entries.append(entry)
    return export


def entry_of(path, task, by_name, folder):
    """The task's entry; its boxes None when the task is unlabelled."""
    where = f"{path}: task {task.get('id')}" if isinstance(task, dict) else f"{path}: a task"
    url = image_url(task)
    if url is None:
        return Entry(where, None, where, problems=[Problem(where, "error", "task-invalid", "names no image")])
    name = file_name(url)
    image = by_name.get(name) or by_name.get(UPLOAD_PREFIX.sub("", name))
    entry = Entry(Path(UPLOAD_PREFIX.sub("", name)).stem if image is None else image.stem, image, where)
    if image is None:
        message = f"names {url}: no {name} or {UPLOAD_PREFIX.sub('', name)} in {folder}"
        entry.problems.append(Problem(where, "error", "image-missing", message))
        return entry
    results = chosen_results(entry, task)
    if results is None:
        entry.boxes = None
        return entry
    for index, result in enumerate(results, start=1):
        add_box(entry, result, f"{where}, result {index}")
    return entry


def image_url(task):
    """The task's image: data's "image", else its first string value."""
    data = task.get("data") if isinstance(task, dict) else None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("image"), str):
        return data["image"]
    return next((value for value in data.values() if isinstance(value, str)), None)


def file_name(url):
    """The file name of an image URL: the d= of a local-files URL, else the last part of its path."""
    parsed = urlparse(url)
    local = parse_qs(parsed.query).get("d")
    return PurePosixPath(unquote(local[0] if local else parsed.path)).name


def chosen_results(entry, task):
    """The results of the task's first annotation not cancelled; of its first prediction when it has none (the
    entry then marked unverified); None for an unlabelled task."""
    annotations = [a for a in listed(task, "annotations") if isinstance(a, dict) and not a.get("was_cancelled")]
    if len(annotations) > 1:
        message = f"{len(annotations)} annotations; the first (id {annotations[0].get('id')}) is used"
        entry.problems.append(Problem(entry.annotation, "warning", "several-annotations", message))
    if annotations:
        return listed(annotations[0], "result")
    predictions = [p for p in listed(task, "predictions") if isinstance(p, dict)]
    if predictions:
        entry.verified = "no"
        return listed(predictions[0], "result")
    return None


def listed(item, key):
    """item[key] when it is a list, else [] (a hand-edited export may hold anything there)."""
    value = item.get(key)
    return value if isinstance(value, list) else []


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def add_box(entry, result, where):
    if not isinstance(result, dict) or result.get("type") != RECTANGLE:
        return
    value = result.get("value") if isinstance(result.get("value"), dict) else {}
    labels = listed(value, RECTANGLE)
    numbers = [value.get(key) for key in ("x", "y", "width", "height", "rotation")]
    numbers[4] = numbers[4] or 0
    if not labels or not all(is_number(v) for v in numbers):
        message = f"a rectangle without label or box: {str(result.get('value'))[:80]}"
        entry.problems.append(Problem(where, "error", "box-invalid", message))
        return
    entry.width = entry.width or declared_size(result.get("original_width"))
    entry.height = entry.height or declared_size(result.get("original_height"))
    x, y, width, height = (v / 100 for v in numbers[:4])
    corners = [x, y, x + width, y + height]
    if value.get("rotation"):
        corners = rotated_bounds(x, y, width, height, value["rotation"], entry.width, entry.height)
        message = f"rotated by {value['rotation']} degrees: its bounding box is used"
        entry.problems.append(Problem(where, "warning", "rotated-box", message))
    if len(labels) > 1:
        entry.problems.append(Problem(where, "warning", "several-labels", f"labels {labels}: the first is used"))
    entry.boxes.append(Box(str(labels[0]), *corners, normalised=True, where=where))


def rotated_bounds(x, y, width, height, degrees, image_width, image_height):
    """The bounding box, normalised, of a rectangle Label Studio rotated clockwise about its top left corner."""
    angle = math.radians(degrees)
    w, h = width * (image_width or 1), height * (image_height or 1)
    corners = [(0, 0), (w, 0), (w, h), (0, h)]
    xs = [x + (cx * math.cos(angle) - cy * math.sin(angle)) / (image_width or 1) for cx, cy in corners]
    ys = [y + (cx * math.sin(angle) + cy * math.cos(angle)) / (image_height or 1) for cx, cy in corners]
    return [min(xs), min(ys), max(xs), max(ys)]


def task(image_url_, width, height, boxes, classes, names, key="annotations", model_version=None):
    """A task of images [(class id, xmin, ymin, xmax, ymax, score or None)] normalised: an annotation, or (key
    "predictions") a prediction with its model_version and scores. names: (from_name, to_name) of the labelling
    config's RectangleLabels and Image tags."""
    from_name, to_name = names
    result = []
    for index, (class_id, xmin, ymin, xmax, ymax, score) in enumerate(boxes):
        value = {"x": xmin * 100, "y": ymin * 100, "width": (xmax - xmin) * 100, "height": (ymax - ymin) * 100}
        item = {
            "id": f"r{index}",
            "type": RECTANGLE,
            "from_name": from_name,
            "to_name": to_name,
            "original_width": width,
            "original_height": height,
            "image_rotation": 0,
            "value": {**value, "rotation": 0, RECTANGLE: [classes[int(class_id)]]},
        }
        result.append(item if score is None else {**item, "score": round(float(score), 4)})
    entry = {"result": result}
    if model_version:
        scores = [item["score"] for item in result if "score" in item]
        entry.update(model_version=model_version, score=round(sum(scores) / len(scores), 4) if scores else 0.0)
    return {"data": {to_name: image_url_}, key: [entry]}
