"""annotate-check: validate every image and its annotation before anything trains on them.

A dataset is a VOC folder (Annotations/*.xml paired by file stem with JPEGImages/*) or an im2rec detection
list (.lst, the original project's format) whose image paths are relative to an image root. Writes the clean
annotations (JSON, boxes in stored-pixel coordinates, class ids in config order) and a table of every
problem found (CSV: file, severity, problem, message). Errors stop the run unless --skip-bad-files, in which
case the files with errors are left out and listed. Reads only; never writes into the dataset.
"""

import argparse
import csv
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path, PureWindowsPath

from workflow.lib import voc
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
    lst_root: str = None  # image root of .lst datasets (None: each list's own folder)
    unverified: str = "warning"  # the severity of an annotation marked verified="no" (warning or error)


def check_dataset(dataset, settings, source="dataset"):
    """Check one dataset, a VOC folder or a .lst list; return (records of usable images, problems)."""
    dataset = Path(dataset)
    checked = _check_lst(dataset, settings) if voc.is_lst(dataset) else _check_voc(dataset, settings)
    records, problems, seen_content = [], [], {}
    for record, found in checked:
        problems += found
        if record is None or any(p.severity == "error" for p in found):
            continue
        duplicate_of = seen_content.setdefault(record.pop("sha256"), record["image"])
        if duplicate_of != record["image"]:
            problems.append(
                Problem(
                    record["image"],
                    "warning",
                    "duplicate-image",
                    f"same content as {duplicate_of}; this copy is left out so it cannot leak between train and val",
                )
            )
            continue
        record["source"] = source
        records.append(record)
    return records, problems


def _check_voc(dataset, settings):
    if not (dataset / "Annotations").is_dir():
        raise UserError(f"{dataset}: no Annotations/ folder; a VOC dataset holds Annotations/*.xml and JPEGImages/*")
    return [check_pair(stem, xml, image, settings) for stem, (xml, image) in voc.find_pairs(dataset).items()]


def _check_lst(lst, settings):
    if not lst.is_file():
        raise UserError(f"{lst}: no such list file")
    root = voc.lst_root(lst, settings.lst_root)
    if not root.is_dir():
        raise UserError(f"{root}: the image root of {lst} is not a folder")
    return [check_lst_line(f"{lst}:{number}", line, root, settings) for number, line in voc.lst_lines(lst)]


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
        stored = _read_image(image, settings)
    except ImageProblem as error:
        return None, [Problem(str(image), "error", "image-unreadable", str(error))]
    problems = (
        _ending_problems(image, stored.ends_early)
        + _verification_problems(xml, annotation, settings)
        + _filename_problems(xml, annotation, image)
        + _size_problems(xml, annotation, stored.width, stored.height, stored.orientation)
    )
    checked = [
        _check_object(str(xml), index, obj, stored.width, stored.height, settings)
        for index, obj in enumerate(annotation.objects, start=1)
    ]
    return _record(stem, image, str(xml), stored, checked, problems, settings)


def check_lst_line(where, line, root, settings):
    """Check one line of a .lst (`where` is 'list:line'); the same checks as a VOC pair, boxes normalised."""
    try:
        entry = voc.parse_lst_line(line)
    except voc.AnnotationError as error:
        return None, [Problem(where, "error", "lst-invalid", str(error))]
    try:
        image = voc.lst_image_path(root, entry.path)
    except voc.AnnotationError as error:
        return None, [Problem(where, "error", "image-path-invalid", str(error))]
    if not image.is_file():
        return None, [Problem(where, "error", "image-missing", f"no image at {image} (written '{entry.path}')")]
    try:
        stored = _read_image(image, settings)
    except ImageProblem as error:
        return None, [Problem(str(image), "error", "image-unreadable", str(error))]
    checked = [
        _check_lst_object(where, index, values, stored.width, stored.height, settings)
        for index, values in enumerate(entry.objects, start=1)
    ]
    image_id = image.relative_to(root).with_suffix("").as_posix()
    problems = _ending_problems(image, stored.ends_early) + _rotation_problems(where, stored.orientation)
    return _record(image_id, image, where, stored, checked, problems, settings)


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


def _verification_problems(xml, annotation, settings):
    if annotation.verified != "no":
        return []
    return [
        Problem(
            str(xml),
            settings.unverified,
            "unverified",
            'marked verified="no": a pre-label nobody has confirmed yet (open it in LabelImg, correct the boxes and '
            "press Verify; unverified_annotations: error stops on such files)",
        )
    ]


def _filename_problems(xml, annotation, image):
    """<filename> never selects the image (pairing is by file stem); warn when it names another image."""
    named = PureWindowsPath(annotation.filename).name  # a Windows or POSIX path, or a bare name
    if named and Path(named).stem.lower() != image.stem.lower():
        return [
            Problem(
                str(xml),
                "warning",
                "filename-differs",
                f"<filename> '{annotation.filename}' names another image; this XML is paired with {image.name} "
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


def _size_problems(xml, annotation, width, height, orientation):
    problems = _rotation_problems(xml, orientation)
    if annotation.width and annotation.height and (annotation.width, annotation.height) != (width, height):
        if (annotation.width, annotation.height) == (height, width) and orientation in ROTATING_ORIENTATIONS:
            message = (
                f"<size> {annotation.width}x{annotation.height} is the EXIF-rotated view of the {width}x{height} "
                "stored image: the boxes were drawn on a rotated image; re-save the image without EXIF rotation "
                "and relabel"
            )
        else:
            message = (
                f"<size> says {annotation.width}x{annotation.height} but the image is {width}x{height}; "
                "the boxes cannot be trusted"
            )
        problems.append(Problem(str(xml), "error", "size-mismatch", message))
    return problems


def _check_lst_object(where, index, values, width, height, settings):
    """A .lst object [class id, normalised box, difficult]: the class id must index the configured classes."""
    class_id, *box, difficult = values
    count = len(settings.classes)
    if class_id != int(class_id) or not 0 <= class_id < count:
        return None, [
            Problem(
                where,
                "error",
                "unknown-class",
                f"object {index}: class id {class_id:g} is not one of the {count} configured classes "
                f"(ids 0 to {count - 1}: {settings.classes})",
            )
        ]
    obj = voc.VocObject(settings.classes[int(class_id)], *box, difficult=difficult >= 1)
    return _check_object(where, index, obj, width, height, settings, normalised=True)


def _check_object(file, index, obj, width, height, settings, normalised=False):
    """Return ({class, name, box, difficult} or None, problems) for one object; a normalised box (0..1, as in a
    .lst) is checked and reported in its own units and recorded in pixels."""
    label = obj.name
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
    log(
        f"check: {len(records)} usable images, {sum(counts)} objects ("
        + ", ".join(f"{name} {n}" for name, n in zip(classes, counts))
        + f"); {len(errors)} errors, {len(problems) - len(errors)} warnings; table: {table}"
    )
    return errors


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="a VOC folder, or an im2rec detection list (.lst)")
    parser.add_argument("--val-dataset", help="a second dataset (VOC folder or .lst) used whole as the validation set")
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
    )

    records, problems = check_dataset(args.dataset, settings)
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


if __name__ == "__main__":
    run_main(main)
