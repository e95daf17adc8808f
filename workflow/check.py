"""annotate-check: validate every XML/image pair of a VOC folder before anything trains on it.

Writes the clean annotations (JSON, boxes in stored-pixel coordinates, class ids in config order) and a
table of every problem found (CSV: file, severity, problem, message). Errors stop the run unless
--skip-bad-files, in which case the files with errors are left out and listed. Reads only; never writes
into the dataset folder.
"""
import argparse
import csv
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from workflow import voc
from workflow.cli import UserError, log, run_main
from workflow.images import ROTATING_ORIENTATIONS, ImageProblem, exif_orientation, load_rgb, open_image

CLIP_TOLERANCE = 0.02  # boxes up to 2% of the image side (at least 2 px) outside are clipped with a warning
SHOWN_ERRORS = 10


@dataclass
class Problem:
    file: str
    severity: str  # "error" or "warning"
    problem: str
    message: str


@dataclass
class Settings:
    classes: list
    class_map: dict
    max_pixels: int
    keep_empty: bool


def check_dataset(dataset, settings, source="dataset"):
    """Check one VOC folder; return (records of usable images, problems)."""
    dataset = Path(dataset)
    if not (dataset / "Annotations").is_dir():
        raise UserError(f"{dataset}: no Annotations/ folder; a VOC dataset holds Annotations/*.xml and JPEGImages/*")
    records, problems, seen_content = [], [], {}
    for stem, (xml, image) in voc.find_pairs(dataset).items():
        record, found = check_pair(stem, xml, image, settings)
        problems += found
        if record is None or any(p.severity == "error" for p in found):
            continue
        duplicate_of = seen_content.setdefault(record.pop("sha256"), record["image"])
        if duplicate_of != record["image"]:
            problems.append(Problem(record["image"], "warning", "duplicate-image",
                                    f"same content as {duplicate_of}; this copy is left out so it cannot leak between train and val"))
            continue
        record["source"] = source
        records.append(record)
    return records, problems


def check_pair(stem, xml, image, settings):
    if image is None:
        return None, [Problem(str(xml), "error", "image-missing", f"no image named {stem}.* in JPEGImages/")]
    if xml is None:
        return None, [Problem(str(image), "warning", "xml-missing", "image has no Annotations/*.xml; left out")]
    try:
        annotation = voc.parse_annotation(xml)
    except voc.AnnotationError as error:
        return None, [Problem(str(xml), "error", "xml-invalid", str(error))]
    try:
        pixels = load_rgb(image, settings.max_pixels)
        orientation = exif_orientation(open_image(image, settings.max_pixels))
    except ImageProblem as error:
        return None, [Problem(str(image), "error", "image-unreadable", str(error))]
    height, width = pixels.shape[:2]
    problems = _size_problems(xml, annotation, width, height, orientation)
    objects = []
    for index, obj in enumerate(annotation.objects, start=1):
        checked, found = _check_object(xml, index, obj, width, height, settings)
        problems += found
        if checked:
            objects.append(checked)
    if not objects and not settings.keep_empty:
        problems.append(Problem(str(xml), "warning", "no-objects", "no usable objects; left out (keep_empty_images: false)"))
        return None, problems
    record = {"id": stem, "image": str(image), "xml": str(xml), "width": width, "height": height,
              "objects": objects, "sha256": hashlib.sha256(Path(image).read_bytes()).hexdigest()}
    return record, problems


def _size_problems(xml, annotation, width, height, orientation):
    problems = []
    if orientation in ROTATING_ORIENTATIONS:
        problems.append(Problem(str(xml), "warning", "exif-rotation",
                                f"EXIF orientation {orientation}: boxes are taken on the image as stored (as LabelImg shows it); "
                                "the image is used unrotated"))
    if annotation.width and annotation.height and (annotation.width, annotation.height) != (width, height):
        if (annotation.width, annotation.height) == (height, width) and orientation in ROTATING_ORIENTATIONS:
            message = (f"<size> {annotation.width}x{annotation.height} is the EXIF-rotated view of the {width}x{height} "
                       "stored image: the boxes were drawn on a rotated image; re-save the image without EXIF rotation and relabel")
        else:
            message = f"<size> says {annotation.width}x{annotation.height} but the image is {width}x{height}; the boxes cannot be trusted"
        problems.append(Problem(str(xml), "error", "size-mismatch", message))
    return problems


def _check_object(xml, index, obj, width, height, settings):
    """Return ({class, name, box, difficult} or None, problems) for one <object>."""
    label = obj.name
    name = settings.class_map.get(label, label)
    where = f"object {index} ('{label}')"
    if name is None:
        return None, []
    if name not in settings.classes:
        return None, [Problem(str(xml), "error", "unknown-class",
                              f"{where}: class '{name}' is not in the configured classes {settings.classes} "
                              "(add it to classes, or map or drop it with class_map)")]
    box = [obj.xmin, obj.ymin, obj.xmax, obj.ymax]
    if box[0] >= box[2] or box[1] >= box[3]:
        return None, [Problem(str(xml), "error", "degenerate-box", f"{where}: empty box {_fmt(box)} (xmin >= xmax or ymin >= ymax)")]
    clipped = [min(max(box[0], 0), width), min(max(box[1], 0), height), min(max(box[2], 0), width), min(max(box[3], 0), height)]
    problems = []
    if clipped != box:
        overshoot = max(abs(a - b) / side for a, b, side in zip(box, clipped, (width, height, width, height)))
        if max(abs(a - b) for a, b in zip(box, clipped)) > 2 and overshoot > CLIP_TOLERANCE:
            return None, [Problem(str(xml), "error", "box-outside",
                                  f"{where}: box {_fmt(box)} lies outside the {width}x{height} image")]
        problems.append(Problem(str(xml), "warning", "box-clipped", f"{where}: box {_fmt(box)} clipped to the {width}x{height} image"))
    checked = {"class": settings.classes.index(name), "name": name, "box": clipped, "difficult": int(obj.difficult)}
    return checked, problems


def _fmt(box):
    return "(" + ", ".join(f"{v:g}" for v in box) + ")"


def write_table(problems, path):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "severity", "problem", "message"])
        writer.writeheader()
        writer.writerows(asdict(p) for p in problems)


def summarize(records, problems, classes, table):
    errors = [p for p in problems if p.severity == "error"]
    counts = [sum(o["class"] == c for r in records for o in r["objects"]) for c in range(len(classes))]
    log(f"check: {len(records)} usable images, {sum(counts)} objects ("
        + ", ".join(f"{name} {n}" for name, n in zip(classes, counts))
        + f"); {len(errors)} errors, {len(problems) - len(errors)} warnings; table: {table}")
    return errors


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--val-dataset", help="a second VOC folder used whole as the validation set")
    parser.add_argument("--classes", required=True, help="JSON list of class names, in class-id order")
    parser.add_argument("--class-map", default="{}", help="JSON object: label in the XML -> class name, or null to drop")
    parser.add_argument("--max-image-pixels", type=int, default=50_000_000)
    parser.add_argument("--keep-empty-images", choices=["yes", "no"], default="yes")
    parser.add_argument("--skip-bad-files", choices=["yes", "no"], default="no")
    parser.add_argument("--out", required=True, help="annotations JSON to write")
    parser.add_argument("--table", required=True, help="problem table CSV to write")
    args = parser.parse_args(argv)
    settings = Settings(json.loads(args.classes), json.loads(args.class_map), args.max_image_pixels, args.keep_empty_images == "yes")

    records, problems = check_dataset(args.dataset, settings)
    if args.val_dataset:
        val_records, val_problems = check_dataset(args.val_dataset, settings, source="val_dataset")
        records, problems = records + val_records, problems + val_problems
    write_table(problems, args.table)
    errors = summarize(records, problems, settings.classes, args.table)
    if errors and args.skip_bad_files == "no":
        shown = "\n".join(f"  {p.file}: {p.problem}: {p.message}" for p in errors[:SHOWN_ERRORS])
        more = f"\n  ... and {len(errors) - SHOWN_ERRORS} more" if len(errors) > SHOWN_ERRORS else ""
        raise UserError(f"{len(errors)} annotation errors (full table: {args.table}; set skip_bad_files: true to "
                        f"leave those files out):\n{shown}{more}")
    for p in errors:
        log(f"check: skipped {p.file}: {p.problem}: {p.message}")
    if not records:
        raise UserError(f"no usable images in {args.dataset}")
    Path(args.out).write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    run_main(main)
