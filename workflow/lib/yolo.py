"""YOLO txt exports, read as entries (workflow/lib/labelled.py), and label files written (pre-labels).

Read: Ultralytics' layout and Roboflow's YOLOv8 export (data.yaml naming the classes and each split's images, a
folder or a .txt list of them; labels/ beside images/, the label of images/a/b.jpg at labels/a/b.txt), and CVAT's
YOLO 1.1 (obj.names, obj.data naming train.txt, each label beside its image in obj_train_data/). A label file holds
a line per box: class index, x centre, y centre, width, height, the last four in [0, 1] of the image.

Each line's traps, each a problem naming the file and the line: a class index at or above the number of names and
a line that is not 5 numbers are errors; a sixth column (a score: predictions, not labels) is a warning and the
first five are used; a polygon (a segmentation export mixed in: a class and x y pairs) becomes its bounding box
with a warning. Values outside [0, 1] are clipped or refused by the check, as every normalised box is. An image
without a label file is a background image, kept. A data.yaml that names a split folder the export lacks (Roboflow
exports often ship train/ alone) gets a warning: the split stage then draws val by val_fraction.
"""

from pathlib import Path

from workflow.lib.labelled import AnnotationError, Box, Entry, Export, Problem, images_in, inside, split_name, text_of

DATA_YAML = ("data.yaml", "data.yml")
SPLIT_KEYS = ("train", "val", "test")


def read_yolo(dataset, images=None):
    """The entries of a YOLO export: a folder (data.yaml or obj.names in it) or its data.yaml. images: the folder
    of the images of a CVAT YOLO 1.1 export made without them (its labels are then paired by file name)."""
    path = Path(dataset)
    folder = path.parent if path.is_file() else path
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return read_data_yaml(path)
    for name in DATA_YAML:
        if (folder / name).is_file():
            return read_data_yaml(folder / name)
    return read_cvat_yolo(folder, images)


def read_data_yaml(path):
    import yaml  # here: the Snakefile imports workflow.lib modules that import this one without PyYAML

    try:
        data = yaml.safe_load(text_of(path))
    except yaml.YAMLError as error:
        raise AnnotationError(f"{path} is not YAML: {error}") from None
    names = class_names(path, data.get("names") if isinstance(data, dict) else None)
    export = Export([])
    root = data_root(path, data.get("path"), export.problems)
    for key in SPLIT_KEYS:
        for written in [data[key]] if isinstance(data.get(key), str) else data.get(key) or []:
            images = split_images(root, written)
            if images is None:
                message = f"{key}: {written} names images the export lacks" + (
                    "; val is drawn from train by val_fraction" if key == "val" else ""
                )
                export.problems.append(Problem(str(path), "warning", "split-missing", message))
                continue
            export.named_splits.append(key)
            export.entries += [entry_of(image, label_path(image), names, key, f"{path} {key}") for image in images]
    return export


def class_names(path, names):
    """data.yaml's names: a list, or {index: name}, of strings (or numbers: YAML reads a class named 1 so)."""
    if isinstance(names, dict) and all(isinstance(k, int) for k in names):
        names = [names[k] for k in sorted(names)]
    if isinstance(names, list) and names and all(isinstance(n, (str, int, float)) for n in names):
        return [str(name) for name in names]
    raise AnnotationError(f"{path} names no classes: it needs names, a list or {{index: name}} of names")


def data_root(path, written, problems):
    """The folder data.yaml's split paths are relative to: its `path` when that stays inside the export, else the
    data.yaml's own folder."""
    if not written:
        return path.parent
    try:
        return inside(path.parent, written, "path")
    except AnnotationError as error:
        problems.append(Problem(str(path), "warning", "path-outside", f"{error}; the export's own folder is used"))
        return path.parent


def split_images(root, written):
    """The images a split entry of data.yaml names (a folder, or a .txt list of image paths), or None when the
    export lacks them. Roboflow writes ../train/images for train/images beside data.yaml: tried as that too."""
    for candidate in (written, str(written).replace("../", "", 1)):
        try:
            path = inside(root, candidate, "split path")
        except AnnotationError:
            continue
        if path.is_dir():
            return images_in(path)
        if path.is_file() and path.suffix == ".txt":
            return listed_images(root, path)
    return None


def listed_images(root, listing):
    images = []
    for line in text_of(listing).splitlines():
        if line.strip():
            try:
                images.append(inside(root, line.strip()))
            except AnnotationError:
                images.append(inside(root, Path(line.strip()).name))  # an absolute path from another machine
    return images


def label_path(image):
    """Ultralytics' rule: the label of .../images/x/y.jpg is .../labels/x/y.txt; without an images folder in the
    path, the .txt beside the image."""
    parts = list(image.parts)
    if "images" in parts:
        index = len(parts) - 1 - parts[::-1].index("images")
        parts[index] = "labels"
    return Path(*parts).with_suffix(".txt")


def read_cvat_yolo(folder, images=None):
    """CVAT's YOLO 1.1: obj.names (a name a line), obj.data (train = data/train.txt ...), the lists' images with
    their labels beside them; the lists name files under data/, the folder the export is unpacked as. Exported
    without images, the labels are there alone: the images are then taken by file name from `images`."""
    names_file = folder / "obj.names"
    if not names_file.is_file():
        raise AnnotationError(f"{folder} holds neither data.yaml nor obj.names: no YOLO export")
    names = [line.strip() for line in text_of(names_file).splitlines() if line.strip()]
    settings = obj_data(folder / "obj.data")
    export = Export([])
    for key, written in settings.items():
        split = split_name(key)
        if split is None or key in ("names", "backup", "classes"):
            continue
        listing = unpacked(folder, written)
        if listing is None or not listing.is_file():
            export.problems.append(Problem(str(folder / "obj.data"), "warning", "split-missing", f"no {written}"))
            continue
        export.named_splits.append(split)
        for line in text_of(listing).splitlines():
            written = line.strip()
            if not written:
                continue
            image = unpacked(folder, written) or (Path(images) if images else folder) / Path(written).name
            label = unpacked(folder, str(Path(written).with_suffix(".txt"))) or image.with_suffix(".txt")
            export.entries.append(entry_of(image, label, names, split, str(listing)))
    return export


def obj_data(path):
    """obj.data's key = value lines ({} when there is none: then train.txt)."""
    if not path.is_file():
        return {"train": "data/train.txt"}
    pairs = [line.split("=", 1) for line in text_of(path).splitlines() if "=" in line]
    return {key.strip(): value.strip() for key, value in pairs}


def unpacked(folder, written):
    """A path of CVAT's lists (data/obj_train_data/a.jpg) inside the export folder, data/ taken as the folder."""
    for candidate in (written, written[len("data/") :] if written.startswith("data/") else None):
        if candidate:
            try:
                path = inside(folder, candidate)
            except AnnotationError:
                continue
            if path.exists():
                return path
    return None


def entry_of(image, labels, names, split, listed_in):
    entry = Entry(image.stem, image if image.is_file() else None, str(labels), split=split)
    if entry.image is None:
        entry.problems.append(Problem(listed_in, "error", "image-missing", f"no image at {image}"))
    elif labels.is_file():
        read_labels(entry, labels, names)
    return entry


def read_labels(entry, path, names):
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if line.strip():
            box, problem = parse_line(line.split(), names, f"{path}:{number}")
            if problem:
                entry.problems.append(problem)
            if box:
                entry.boxes.append(box)


def parse_line(values, names, where):
    """(Box or None, Problem or None) of a label line's values."""
    numbers = [number(v) for v in values]
    if None in numbers:
        return None, Problem(where, "error", "label-invalid", f"'{values[numbers.index(None)][:20]}' is not a number")
    index, coords = numbers[0], numbers[1:]
    if index != int(index) or not 0 <= index < len(names):
        message = f"class index {values[0]} is not one of the {len(names)} names (0 to {len(names) - 1}: {names})"
        return None, Problem(where, "error", "unknown-class", message)
    problem = None
    if len(coords) == 5:
        message = "a sixth column (a score? predictions, not labels); the first five are used"
        problem = Problem(where, "warning", "score-column", message)
        coords = coords[:4]
    elif len(coords) >= 6 and len(coords) % 2 == 0:
        xs, ys = coords[0::2], coords[1::2]
        message = f"a polygon of {len(xs)} points (a segmentation export?): its bounding box is used"
        problem = Problem(where, "warning", "polygon", message)
        coords = [(min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)]
    elif len(coords) != 4:
        message = f"{len(values)} values; a box is 5: class, x centre, y centre, width, height"
        return None, Problem(where, "error", "label-invalid", message)
    x, y, width, height = coords
    box = Box(names[int(index)], x - width / 2, y - height / 2, x + width / 2, y + height / 2, True, where=where)
    return box, problem


def number(text):
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def write_labels(path, boxes):
    """A label file of boxes [(class id, xmin, ymin, xmax, ymax)] normalised to [0, 1]: five columns a line, each
    number as Python writes a float back exactly."""
    lines = [
        f"{int(c)} {(xmin + xmax) / 2!r} {(ymin + ymax) / 2!r} {xmax - xmin!r} {ymax - ymin!r}"
        for c, xmin, ymin, xmax, ymax in boxes
    ]
    Path(path).write_text("".join(f"{line}\n" for line in lines))
