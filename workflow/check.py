"""annotate-check: validate every image and its annotation before anything trains on them.

A dataset is the export of a labelling tool, read as it wrote it (workflow/lib/forms.py recognises the form; one
reader per form yields the same entries, workflow/lib/labelled.py): a VOC folder (LabelImg), an im2rec .lst, COCO
JSON (Roboflow, CVAT, Label Studio), YOLO txt (Ultralytics, Roboflow, CVAT), CVAT for images XML or Label Studio's
JSON. Every form then gets the same checks: the image is there and decodes within the pixel bound; the size the
export declares is the image's (an EXIF-rotated view is named as such); every box names a configured class (or one
class_map maps) and lies inside the image; no two images share a file name (the same name in two splits would leak
into val); duplicate contents are left out. Writes the clean annotations (JSON, boxes in stored-pixel coordinates to
a millionth of a pixel, class ids in config order), the splits the export carries (JSON) and a table of every
problem found (CSV: file, severity, problem, message; the file names the line or the entry). Errors stop the run
unless --skip-bad-files, in which case the images with errors are left out and listed. Reads only; never writes
into the dataset.
"""

import argparse
import csv
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path, PureWindowsPath

from workflow.lib import coco, cvat, forms, labelstudio, voc, yolo
from workflow.lib.cli import UserError, log, run_main
from workflow.lib.images import (
    ROTATING_ORIENTATIONS,
    ImageProblem,
    decode_rgb,
    exif_orientation,
    jpeg_ends_early,
    missing_rows,
    open_image,
)
from workflow.lib.labelled import AnnotationError, Problem

CLIP_TOLERANCE = 0.02  # boxes up to 2% of the image side (at least 2 px) outside are clipped with a warning
SHOWN_ERRORS = 10
DIGITS = 6  # box coordinates in pixels are kept to a millionth of a pixel: the same boxes from any form


@dataclass
class Settings:
    classes: list
    class_map: dict
    max_pixels: int
    keep_empty: bool
    lst_root: str = None  # image root of .lst datasets (None: each list's own folder)
    unverified: str = "warning"  # the severity of an annotation marked verified="no" (warning or error)
    form: str = forms.AUTO  # the dataset's form (dataset_format), recognised from its files when auto
    images: str = None  # the folder a JSON export's images are in when not beside it (dataset_images)


def read_export(dataset, settings):
    """The entries of a dataset in any form; UserError when the form is not recognised or the export unreadable."""
    try:
        form = forms.recognise(dataset, settings.form)
    except ValueError as error:
        raise UserError(f"dataset {dataset}: {error}") from None
    if form == "lst":
        if not Path(dataset).is_file():
            raise UserError(f"{dataset}: no such list file")
        root = voc.lst_root(dataset, settings.lst_root)
        if not root.is_dir():
            raise UserError(f"{root}: the image root of {dataset} is not a folder")
    if form == "voc" and not (Path(dataset) / "Annotations").is_dir():
        message = "no Annotations/ folder; a VOC dataset holds Annotations/*.xml and JPEGImages/*"
        raise UserError(f"{dataset}: {message}")
    readers = {
        "lst": lambda dataset, _images: voc.read_lst(dataset, root, settings.classes),
        "voc": lambda dataset, _images: voc.read_voc(dataset),
        "coco": coco.read_coco,
        "yolo": yolo.read_yolo,
        "cvat": cvat.read_cvat,
        "labelstudio": labelstudio.read_labelstudio,
    }
    try:
        return readers[form](dataset, settings.images)
    except (AnnotationError, OSError) as error:
        raise UserError(f"dataset {dataset}: {error}") from None


def check_dataset(dataset, settings, source="dataset"):
    """Check one dataset in any form; return (records of usable images, problems)."""
    records, problems, _ = check_export(dataset, settings, source)
    return records, problems


def check_export(dataset, settings, source="dataset"):
    """Check one dataset in any form; return (records of usable images, problems, the splits it carries: {"named":
    the splits the export names, "images": {image id: train, val or test}})."""
    export = read_export(dataset, settings)
    records, problems, seen_content, seen_names, splits = [], list(export.problems), {}, {}, {}
    for entry in export.entries:
        record, found = check_entry(entry, settings)
        problems += found
        if record is None or any(p.severity == "error" for p in found):
            continue
        duplicate_of = seen_content.setdefault(record.pop("sha256"), record["image"])
        if duplicate_of != record["image"]:
            message = f"same content as {duplicate_of}; this copy is left out so it cannot leak between train and val"
            problems.append(Problem(record["image"], "warning", "duplicate-image", message))
            continue
        if record["id"] in seen_names:
            problems.append(same_name_problem(record, entry.split, *seen_names[record["id"]]))
            continue
        seen_names[record["id"]] = (record["image"], entry.split)
        if entry.split:
            splits[record["id"]] = entry.split
        record["source"] = source
        records.append(record)
    return records, problems, {"named": sorted(set(export.named_splits)), "images": splits}


def same_name_problem(record, split, other_image, other_split):
    where = f" (in {other_split} and in {split})" if split and other_split and split != other_split else ""
    message = (
        f"the file name of {other_image}{where}: image ids are file names, and one image in two splits would leak "
        "into val; rename one of them"
    )
    return Problem(record["image"], "error", "same-name", message)


def check_entry(entry, settings):
    """(record of a usable image or None, problems) of one entry of an export."""
    problems = list(entry.problems)
    if any(p.severity == "error" for p in problems):
        return None, problems
    if entry.image is None or not Path(entry.image).is_file():
        return None, problems + [Problem(entry.annotation, "error", "image-missing", f"no image at {entry.image}")]
    try:
        stored = _read_image(entry.image, settings)
    except ImageProblem as error:
        return None, problems + [Problem(str(entry.image), "error", "image-unreadable", str(error))]
    problems += (
        _ending_problems(entry.image, stored.ends_early)
        + _verification_problems(entry.annotation, entry.verified, settings)
        + _filename_problems(entry.annotation, entry.filename, entry.image)
        + _size_problems(entry.annotation, entry.width, entry.height, stored.width, stored.height, stored.orientation)
    )
    checked = [
        _check_object(box.where or entry.annotation, index, box, stored.width, stored.height, settings)
        for index, box in enumerate(entry.boxes, start=1)
    ]
    return _record(entry.id, entry.image, entry.annotation, stored, checked, problems, settings)


@dataclass
class StoredImage:
    width: int
    height: int
    orientation: int  # EXIF orientation
    ends_early: bool  # the JPEG data stops before its end marker
    sha256: str


def _read_image(image, settings):
    """What the check needs of an image whose every pixel row decodes; ImageProblem otherwise."""
    opened = open_image(image, settings.max_pixels)  # by path, so that PIL's messages name the file
    data = Path(image).read_bytes()
    orientation = exif_orientation(opened)
    ends_early = opened.format == "JPEG" and jpeg_ends_early(data)
    rgb = decode_rgb(opened, ends_early)
    height, width = rgb.shape[:2]
    lost = missing_rows(rgb) if ends_early else 0
    if lost:
        raise ImageProblem(
            f"the JPEG data ends early: the bottom {lost} of its {height} pixel rows ({lost / height:.0%}) are missing"
        )
    return StoredImage(width, height, orientation, ends_early, hashlib.sha256(data).hexdigest())


def _ending_problems(image, ends_early):
    if not ends_early:
        return []
    return [
        Problem(
            str(image),
            "warning",
            "jpeg-ends-early",
            "the JPEG data stops before its end marker (a download cut short?); every pixel row decodes, "
            "what is missing at the end comes out gray as in any viewer; packed re-encoded",
        )
    ]


def _record(image_id, image, annotation, stored, checked, problems, settings):
    """(record of a usable image or None, problems) from the checked objects [(object or None, problems)]."""
    objects = [obj for obj, _ in checked if obj]
    problems = problems + [p for _, found in checked for p in found]
    if not objects and not settings.keep_empty:
        problems.append(
            Problem(annotation, "warning", "no-objects", "no usable objects; left out (keep_empty_images: false)")
        )
        return None, problems
    record = {
        "id": image_id,
        "image": str(image),
        "annotation": annotation,
        "width": stored.width,
        "height": stored.height,
        "objects": objects,
        "sha256": stored.sha256,
    }
    if stored.ends_early:
        record["jpeg_ends_early"] = True  # only then: the records of complete images stay as they were
    return record, problems


def _verification_problems(where, verified, settings):
    if verified != "no":
        return []
    return [
        Problem(
            str(where),
            settings.unverified,
            "unverified",
            'a pre-label nobody has confirmed yet (LabelImg\'s verified="no", or a score or prediction in the '
            "export): review it in your labelling tool and save it as a label; unverified_annotations: error stops "
            "on such files",
        )
    ]


def _filename_problems(xml, filename, image):
    """A VOC XML's <filename> never selects the image (pairing is by file stem); warn when it names another."""
    named = PureWindowsPath(filename).name  # a Windows or POSIX path, or a bare name
    if named and Path(named).stem.lower() != image.stem.lower():
        return [
            Problem(
                str(xml),
                "warning",
                "filename-differs",
                f"<filename> '{filename}' names another image; this XML is paired with {image.name} "
                "by file stem: check that its boxes belong to that image",
            )
        ]
    return []


def _rotation_problems(file, orientation):
    if orientation not in ROTATING_ORIENTATIONS:
        return []
    return [
        Problem(
            str(file),
            "warning",
            "exif-rotation",
            f"EXIF orientation {orientation}: boxes are taken on the image as stored (as LabelImg shows it); "
            "the image is used unrotated",
        )
    ]


def _size_problems(where, declared_width, declared_height, width, height, orientation):
    """The size an export declares against the image's: the EXIF-rotated view named as such."""
    problems = _rotation_problems(where, orientation)
    declared = (declared_width, declared_height)
    if all(declared) and declared != (width, height):
        if declared == (height, width) and orientation in ROTATING_ORIENTATIONS:
            message = (
                f"the declared size {declared_width}x{declared_height} is the EXIF-rotated view of the "
                f"{width}x{height} stored image: the boxes were drawn on a rotated image; re-save the image without "
                "EXIF rotation and relabel"
            )
        else:
            message = (
                f"the declared size {declared_width}x{declared_height} is not the image's {width}x{height}; the "
                "boxes cannot be trusted"
            )
        problems.append(Problem(str(where), "error", "size-mismatch", message))
    return problems


def _check_object(file, index, obj, width, height, settings):
    """Return ({class, name, box, difficult} or None, problems) for one box; a normalised box (0..1: YOLO, Label
    Studio, .lst) is checked and reported in its own units and recorded in pixels."""
    label, normalised = obj.label, obj.normalised
    name = settings.class_map.get(label, label)
    where = f"object {index} ('{label}')"
    if name is None:
        return None, []
    if name not in settings.classes:
        return None, [
            Problem(
                file,
                "error",
                "unknown-class",
                f"{where}: class '{name}' is not in the configured classes {settings.classes} "
                "(add it to classes, or map or drop it with class_map)",
            )
        ]
    given = [obj.xmin, obj.ymin, obj.xmax, obj.ymax]
    box = [v * side for v, side in zip(given, (width, height, width, height))] if normalised else given
    frame = "[0, 1] (normalised coordinates)" if normalised else f"the {width}x{height} image"
    if box[0] >= box[2] or box[1] >= box[3]:
        return None, [
            Problem(file, "error", "degenerate-box", f"{where}: empty box {_fmt(given)} (xmin >= xmax or ymin >= ymax)")
        ]
    clipped = [
        min(max(box[0], 0), width),
        min(max(box[1], 0), height),
        min(max(box[2], 0), width),
        min(max(box[3], 0), height),
    ]
    problems = []
    if clipped != box:
        overshoot = max(abs(a - b) / side for a, b, side in zip(box, clipped, (width, height, width, height)))
        if max(abs(a - b) for a, b in zip(box, clipped)) > 2 and overshoot > CLIP_TOLERANCE:
            return None, [Problem(file, "error", "box-outside", f"{where}: box {_fmt(given)} lies outside {frame}")]
        problems.append(Problem(file, "warning", "box-clipped", f"{where}: box {_fmt(given)} clipped to {frame}"))
    box = [round(v, DIGITS) + 0.0 for v in clipped]
    checked = {"class": settings.classes.index(name), "name": name, "box": box, "difficult": int(obj.difficult)}
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
    log(
        f"check: {len(records)} usable images, {sum(counts)} objects ("
        + ", ".join(f"{name} {n}" for name, n in zip(classes, counts))
        + f"); {len(errors)} errors, {len(problems) - len(errors)} warnings; table: {table}"
    )
    return errors


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="a labelling tool's export (workflow/lib/forms.py)")
    parser.add_argument("--val-dataset", help="a second export used whole as the validation set")
    parser.add_argument("--dataset-format", choices=(forms.AUTO, *forms.FORMS), required=True)
    parser.add_argument("--dataset-images", help="the folder a JSON or XML export's images are in, when not beside it")
    parser.add_argument(
        "--lst-root", help="folder the image paths of a .lst are relative to (default: the list's folder)"
    )
    parser.add_argument("--classes", required=True, help="JSON list of class names, in class-id order")
    parser.add_argument(
        "--class-map", required=True, help="JSON object: label in the XML -> class name, or null to drop"
    )
    parser.add_argument("--max-image-pixels", type=int, required=True)
    parser.add_argument(
        "--keep-empty-images", action=argparse.BooleanOptionalAction, required=True, help="keep images without objects"
    )
    parser.add_argument(
        "--skip-bad-files",
        action=argparse.BooleanOptionalAction,
        required=True,
        help="leave files with errors out and go on",
    )
    parser.add_argument(
        "--unverified-annotations",
        choices=["warning", "error"],
        required=True,
        help='what an annotation marked verified="no" (a pre-label nobody confirmed) is',
    )
    parser.add_argument("--out", required=True, help="annotations JSON to write")
    parser.add_argument("--splits", required=True, help="JSON to write: the splits the export carries")
    parser.add_argument("--table", required=True, help="problem table CSV to write")
    parser.add_argument(
        "--problems-log",
        required=True,
        help="a copy of the problem table kept where a failed run leaves it (Snakemake deletes the "
        "outputs of a failed job, not its logs)",
    )
    args = parser.parse_args(argv)
    settings = Settings(
        json.loads(args.classes),
        json.loads(args.class_map),
        args.max_image_pixels,
        args.keep_empty_images,
        args.lst_root,
        args.unverified_annotations,
        args.dataset_format,
        args.dataset_images,
    )

    records, problems, splits = check_export(args.dataset, settings)
    if args.val_dataset:
        val_records, val_problems = check_dataset(args.val_dataset, settings, source="val_dataset")
        records, problems = records + val_records, problems + val_problems
    for table in (args.table, args.problems_log):
        write_table(problems, table)
    errors = summarize(records, problems, settings.classes, args.problems_log)
    if errors and not args.skip_bad_files:
        shown = "\n".join(f"  {p.file}: {p.problem}: {p.message}" for p in errors[:SHOWN_ERRORS])
        more = f"\n  ... and {len(errors) - SHOWN_ERRORS} more" if len(errors) > SHOWN_ERRORS else ""
        raise UserError(
            f"{len(errors)} annotation errors (full table: {args.problems_log}; set skip_bad_files: true to "
            f"leave those files out):\n{shown}{more}"
        )
    for p in errors:
        log(f"check: skipped {p.file}: {p.problem}: {p.message}")
    if not records:
        raise UserError(f"no usable images in {args.dataset}")
    Path(args.out).write_text(json.dumps(records, indent=1))
    Path(args.splits).write_text(json.dumps(splits, indent=1))


if __name__ == "__main__":
    run_main(main)
