"""prelabel: the deployed model labels new photos for the labelling tool the dataset came from, marked unreviewed,
and ranks what to check first.

Runs the IR through its contract with workflow/device/infer.py, the code the device runs (NMS as deployed), on
every image of a folder and writes, in the output folder, the pre-labels in the form --format names (the dataset's:
docs/datasets.md says how each tool loads them):
    voc          Annotations/<stem>.xml in LabelImg's PASCAL VOC layout with verified="no" on <annotation> (LabelImg's
                 mark for a file nobody has confirmed; its Verify key sets "yes"), classes.txt (LabelImg's predefined
                 classes), labelimg_command.txt (the command that opens the images with these annotations)
    coco         prelabels.coco.json (category ids from 1 in the order of the classes, each box's score kept) for
                 CVAT and Roboflow
    yolo         CVAT's YOLO 1.1 layout: obj.names, obj.data, train.txt, obj_train_data/<stem>.txt (five columns),
                 scores/<stem>.txt (each box's score, a line each, beside)
    labelstudio  predictions.json, Label Studio tasks with predictions (model_version, scores, values in percent,
                 from_name and to_name as --label-studio-names gives them), the images by local-files URL
and in every form ranking.csv and index.html (the images a person's labelling helps most first), and manifest.json
(the model's sha256, the thresholds, every image's sha256). Every detection the deployed graph keeps is cached by
model and image sha256 in the cache folder and cut at the threshold when used (cutting before or after the NMS
gives the same boxes, see infer.detect), so new images are the only ones run again until the model changes, and
a new threshold runs nothing again. Reads the image folder only.

The threshold: a score, or val-f1 for the one that maximised F1 on the val images (evaluate's metrics.json, the
threshold the device uses by default).
"""

import argparse
import base64
import csv
import hashlib
import html
import json
import shlex
import shutil
from pathlib import Path
from xml.sax.saxutils import escape

import cv2
import numpy as np

from workflow.device import infer
from workflow.lib import coco, forms, labelstudio, yolo
from workflow.lib.cli import Progress, UserError, log, run_main
from workflow.lib.hashing import files_sha256
from workflow.lib.metrics import above

OUTPUTS = forms.PRELABEL_OUTPUTS
# every file each form writes: a run in one form removes them all first, so that the folder a person hands to a
# tool holds one form, of this run
FORM_FILES = {
    "voc": ("Annotations", "classes.txt", "labelimg_command.txt"),
    "coco": (OUTPUTS["coco"],),
    "yolo": ("obj_train_data", "scores", "obj.names", "obj.data", "train.txt"),
    "labelstudio": (OUTPUTS["labelstudio"],),
}
MIRROR_IOU = 0.5
NEAR_THRESHOLD = 0.2  # a detection within this of the threshold could as well have gone the other way
VAL_F1 = "val-f1"
THUMBNAIL_SIDE = 320


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def model_sha256(xml_path):
    """The IR's identity for the detection cache: its .xml, .bin and contract."""
    files = (xml_path, xml_path.with_suffix(".bin"), xml_path.with_suffix(".contract.json"))
    return files_sha256(files, xml_path.parent)


def decode_image(data):
    """The stored pixels of an image file's bytes (EXIF orientation ignored, as the check and LabelImg see them), or
    an error message. The rule bounds the pixels OpenCV decodes with OPENCV_IO_MAX_IMAGE_PIXELS (max_image_pixels)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        return None, "not a readable image (or more pixels than max_image_pixels)"
    return image, None


def mirrored_detections(compiled, image, contract, threshold):
    """Detections on the mirror image, mapped back onto the image."""
    rows = infer.detect(compiled, image[:, ::-1].copy(), contract, threshold)
    return [[cls, score, 1 - xmax, ymin, 1 - xmin, ymax] for cls, score, xmin, ymin, xmax, ymax in rows]


def disagreements(rows, mirrored):
    """Detections of either view with no detection of the same class at IoU >= MIRROR_IOU in the other."""

    def unmatched(these, those):
        if not len(those):
            return len(these)
        overlap = infer.iou(these[:, 2:], those[:, 2:]) * (these[:, :1] == those[:, 0])
        return int((overlap.max(axis=1) < MIRROR_IOU).sum())

    return unmatched(rows, mirrored) + unmatched(mirrored, rows)


def as_array(rows):
    """Detection rows of the device runner (lists) as an (n, 6) array."""
    return np.asarray(rows, dtype=float).reshape(-1, 6)


def review_score(found, threshold, weak_classes):
    """How much a person's labelling of this image is expected to help: detections (of the image and of its mirror
    image) within NEAR_THRESHOLD of the threshold on either side, the kept detections the image and its mirror image
    disagree on, and the kept detections of the classes the val set finds weakest."""
    scores = np.concatenate([found["detections"][:, 1], found["mirrored"][:, 1]])
    near = int((np.abs(scores - threshold) <= NEAR_THRESHOLD).sum())
    rows, mirrored = above(found["detections"], threshold), above(found["mirrored"], threshold)
    weak = sum(int(cls) in weak_classes for cls in rows[:, 0])
    return near + disagreements(rows, mirrored) + weak, near


def chosen_threshold(setting, metrics):
    """The threshold setting as a score: val-f1 is the F1-optimal score on val (0.5 when val had no detections)."""
    if setting != VAL_F1:
        return setting
    best = metrics["score_threshold"]["overall"]["threshold"]
    return infer.FALLBACK_THRESHOLD if best is None else best


def threshold_setting(text):
    """argparse type of --threshold: val-f1, or a score in [0, 1]."""
    if text == VAL_F1:
        return text
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is neither {VAL_F1} nor a score between 0 and 1")
    return value


def weak_classes(metrics):
    """The class ids whose val AP (VOC07) is below the val mAP."""
    return {
        c
        for c, row in enumerate(metrics["per_class"])
        if row["ap_voc07"] is not None and metrics["map_voc07"] is not None and row["ap_voc07"] < metrics["map_voc07"]
    }


def pixel_box(box, width, height):
    """LabelImg's integer convention: int() of each corner, inside the image (from 1 to its width and height); None
    for a box with no area in whole pixels, which the check would refuse (e.g. one above the image's top edge)."""
    xmin, xmax = (min(max(int(v * width), 1), width) for v in box[0::2])
    ymin, ymax = (min(max(int(v * height), 1), height) for v in box[1::2])
    return (xmin, ymin, xmax, ymax) if xmin < xmax and ymin < ymax else None


def labelimg_xml(image_path, width, height, objects):
    """The XML LabelImg writes for an image (its PascalVocWriter layout), marked unreviewed."""
    parts = [
        '<annotation verified="no">',
        f"\t<folder>{escape(image_path.parent.name)}</folder>",
        f"\t<filename>{escape(image_path.name)}</filename>",
        f"\t<path>{escape(str(image_path))}</path>",
        "\t<source>\n\t\t<database>Unknown</database>\n\t</source>",
        f"\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n\t\t<depth>3</depth>\n\t</size>",
        "\t<segmented>0</segmented>",
    ]
    for name, (xmin, ymin, xmax, ymax) in objects:
        truncated = int(xmin == 1 or ymin == 1 or xmax == width or ymax == height)
        parts.append(
            f"\t<object>\n\t\t<name>{escape(name)}</name>\n\t\t<pose>Unspecified</pose>\n"
            f"\t\t<truncated>{truncated}</truncated>\n\t\t<difficult>0</difficult>\n\t\t<bndbox>\n"
            f"\t\t\t<xmin>{xmin}</xmin>\n\t\t\t<ymin>{ymin}</ymin>\n\t\t\t<xmax>{xmax}</xmax>\n"
            f"\t\t\t<ymax>{ymax}</ymax>\n\t\t</bndbox>\n\t</object>"
        )
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def image_paths(folder):
    if not Path(folder).is_dir():
        raise UserError(f"unlabelled: {folder} is not a folder of images")
    return infer.image_paths([folder])


def label_image(path, compiled, contract, cache):
    """Every detection of one image and of its mirror image: (entry for the ranking, stored pixels or None)."""
    data = path.read_bytes()
    entry = {"image": str(path), "sha256": sha256_bytes(data)}
    image, error = decode_image(data)
    if error:
        return {**entry, "error": error}, None
    cached = cache / f"{entry['sha256']}.json"
    if cached.is_file():
        found = json.loads(cached.read_text())
    else:
        found = {
            "detections": infer.detect(compiled, image, contract, 0.0),
            "mirrored": mirrored_detections(compiled, image, contract, 0.0),
        }
        cached.write_text(json.dumps(found))
    height, width = image.shape[:2]
    return {**entry, "width": width, "height": height, "found": found}, image


def thumbnail(image, rows, classes):
    scale = THUMBNAIL_SIDE / max(image.shape[:2])
    small = cv2.resize(image, (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))))
    ok, jpeg = cv2.imencode(".jpg", infer.draw(small, rows, classes), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return base64.b64encode(jpeg.tobytes()).decode()


def write_index(path, ranked, thumbnails):
    cells = []
    for entry in ranked:
        if "error" in entry:
            body = f"<p>{html.escape(entry['error'])}</p>"
        else:
            body = f'<img src="data:image/jpeg;base64,{thumbnails[entry["image"]]}">'
        caption = f"{entry['rank']}. {html.escape(Path(entry['image']).name)} (score {entry.get('review_score', '-')})"
        cells.append(f"<figure>{body}<figcaption>{caption}</figcaption></figure>")
    path.write_text(
        "<!doctype html><html><head><meta charset=utf-8><title>pre-labels, most useful to check first</title>"
        "<style>body{font-family:system-ui,sans-serif}figure{display:inline-block;margin:6px;vertical-align:top}"
        "figcaption{font-size:.9em}</style></head><body><h1>Pre-labels, most useful to check first</h1>"
        + "".join(cells)
        + "</body></html>"
    )


def write_ranking(path, ranked, classes):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "image", "review_score", "near_threshold", "detections", "labels", "error"])
        for entry in ranked:
            rows = entry.get("detections", [])
            labels = " ".join(f"{classes[int(cls)]}:{score:.2f}" for cls, score, *_ in rows)
            writer.writerow(
                [
                    entry["rank"],
                    entry["image"],
                    entry.get("review_score", ""),
                    entry.get("near_threshold", ""),
                    len(rows),
                    labels,
                    entry.get("error", ""),
                ]
            )


def prelabel(args):
    classes = args.classes
    metrics = json.loads(Path(args.metrics).read_text())
    weak, threshold = weak_classes(metrics), chosen_threshold(args.threshold, metrics)
    model = model_sha256(Path(args.ir))
    out, cache = Path(args.out_dir), Path(args.cache) / f"{model}-every-detection"
    out.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    compiled, contract = infer.load(args.ir)
    paths = image_paths(args.images)
    entries, thumbnails, labelled = [], {}, []
    progress = Progress("prelabel", len(paths))
    for done, path in enumerate(paths, start=1):
        entry, image = label_image(path, compiled, contract, cache)
        if image is not None:
            found = {view: as_array(rows) for view, rows in entry.pop("found").items()}
            boxed = [
                ([int(row[0]), *row[1:]], pixel_box(row[2:], entry["width"], entry["height"]))
                for row in above(found["detections"], threshold).tolist()
            ]
            rows = entry["detections"] = [row for row, box in boxed if box]
            entry["set_aside"] = len(boxed) - len(rows)
            entry["review_score"], entry["near_threshold"] = review_score(found, threshold, weak)
            labelled.append((path, entry["width"], entry["height"], [(row, box) for row, box in boxed if box]))
            thumbnails[entry["image"]] = thumbnail(image, rows, classes)
        else:
            log(f"prelabel: {path}: {entry['error']}")
        entries.append(entry)
        progress.update(done)
    ranked = sorted(entries, key=lambda e: (-e.get("review_score", -1), e["image"]))
    for rank, entry in enumerate(ranked, start=1):
        entry["rank"] = rank
    write_ranking(out / "ranking.csv", ranked, classes)
    write_index(out / "index.html", ranked, thumbnails)
    remove_written_labels(out)
    writers = {"voc": write_voc, "coco": write_coco, "yolo": write_yolo, "labelstudio": write_labelstudio}
    opening = writers[args.format](out, labelled, classes, Path(args.images), args, model)
    manifest = {
        "format": args.format,
        "labels": OUTPUTS[args.format],
        "model_sha256": model,
        "threshold": threshold,
        "threshold_setting": args.threshold,
        "force_nms": contract["force_nms"],
        "nms_threshold": contract["nms_threshold"],
        "inference_precision": infer.precision_ran(compiled),
        "images": {e["image"]: e["sha256"] for e in entries},
        "errors": {e["image"]: e["error"] for e in entries if "error" in e},
        "boxes_set_aside": {e["image"]: e["set_aside"] for e in entries if e.get("set_aside")},
    }
    Path(args.manifest).write_text(json.dumps(manifest, indent=1))
    boxes = sum(len(e.get("detections", [])) for e in entries)
    set_aside = sum(manifest["boxes_set_aside"].values())
    log(
        f"prelabel: {len(entries) - len(manifest['errors'])} images labelled ({boxes} boxes at score >= "
        f"{threshold:.3f}; {set_aside} with no area in whole pixels set aside), {len(manifest['errors'])} "
        f"unreadable; check them first: {out / 'index.html'}; {opening}"
    )


def remove_written_labels(out):
    for name in (name for names in FORM_FILES.values() for name in names):
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def write_voc(out, labelled, classes, images, args, model):
    """LabelImg's XML files, its classes.txt and the command that opens them: how to open them, in words."""
    (out / "Annotations").mkdir(exist_ok=True)
    for path, width, height, boxed in labelled:
        objects = [(classes[int(row[0])], box) for row, box in boxed]
        (out / "Annotations" / f"{path.stem}.xml").write_text(labelimg_xml(path.resolve(), width, height, objects))
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in classes))
    command = ["labelImg", str(images.resolve()), str((out / "classes.txt").resolve())]
    command.append(str((out / "Annotations").resolve()))
    (out / "labelimg_command.txt").write_text(shlex.join(command) + "\n")
    return f"open them in LabelImg with: {shlex.join(command)}"


def normalised_boxes(boxed):
    """[(class id, xmin, ymin, xmax, ymax, score)] of the kept detections, clipped to the image."""
    return [(int(row[0]), *(min(max(v, 0.0), 1.0) for v in row[2:]), row[1]) for row, _ in boxed]


def write_coco(out, labelled, classes, images, args, model):
    coco_images = []
    for path, width, height, boxed in labelled:
        boxes = [
            (c, xmin * width, ymin * height, xmax * width, ymax * height, score)
            for c, xmin, ymin, xmax, ymax, score in normalised_boxes(boxed)
        ]
        coco_images.append((path.relative_to(images).as_posix(), width, height, boxes))
    coco.write_coco(out / OUTPUTS["coco"], coco_images, classes)
    return f"import {out / OUTPUTS['coco']} as COCO 1.0 annotations (CVAT) or with the images (Roboflow)"


def write_yolo(out, labelled, classes, images, args, model):
    """CVAT's YOLO 1.1 layout (its "Upload annotations", zipped): obj.names, obj.data, train.txt, a label file a
    image in obj_train_data/ (five columns), and each box's score in scores/, beside."""
    for folder in ("obj_train_data", "scores"):
        (out / folder).mkdir(exist_ok=True)
    listed = []
    for path, _, _, boxed in labelled:
        boxes = normalised_boxes(boxed)
        yolo.write_labels(out / "obj_train_data" / f"{path.stem}.txt", [box[:5] for box in boxes])
        (out / "scores" / f"{path.stem}.txt").write_text("".join(f"{box[5]:.4f}\n" for box in boxes))
        listed.append(f"data/obj_train_data/{path.name}")
    (out / "obj.names").write_text("".join(f"{name}\n" for name in classes))
    obj_data = f"classes = {len(classes)}\ntrain = data/train.txt\nnames = data/obj.names\nbackup = backup/\n"
    (out / "obj.data").write_text(obj_data)
    (out / "train.txt").write_text("".join(f"{line}\n" for line in listed))
    return f"zip {out} (obj.names, obj.data, train.txt, obj_train_data/) and upload it as YOLO 1.1 annotations"


def write_labelstudio(out, labelled, classes, images, args, model):
    """Label Studio tasks with predictions, each image by a local-files URL relative to the images' parent folder."""
    names = (args.label_studio_names["from_name"], args.label_studio_names["to_name"])
    tasks = []
    for path, width, height, boxed in labelled:
        url = "/data/local-files/?d=" + path.relative_to(images.parent).as_posix()
        version = f"deeplens-ssd {model[:12]}"
        tasks.append(
            labelstudio.task(url, width, height, normalised_boxes(boxed), classes, names, "predictions", version)
        )
    (out / OUTPUTS["labelstudio"]).write_text(json.dumps(tasks, indent=1))
    return f"import {out / OUTPUTS['labelstudio']} into your Label Studio project (docs/datasets.md)"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.prelabel", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ir", required=True, help="the IR's .xml (its .bin and .contract.json beside it)")
    parser.add_argument("--images", required=True, help="the folder of unlabelled images (only read)")
    parser.add_argument("--classes", required=True, type=json.loads, help="JSON list of class names, in class-id order")
    parser.add_argument(
        "--threshold", type=threshold_setting, required=True, help=f"keep boxes scoring at least this, or {VAL_F1}"
    )
    parser.add_argument("--metrics", required=True, help="evaluate's metrics.json: the classes val finds weak")
    parser.add_argument("--format", choices=tuple(OUTPUTS), required=True, help="the form of the pre-labels")
    parser.add_argument(
        "--label-studio-names",
        type=json.loads,
        required=True,
        help="JSON {from_name, to_name}: the Label Studio config's RectangleLabels and Image tags",
    )
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--cache", required=True, help="detections by model and image sha256, kept between runs")
    parser.add_argument("--manifest", required=True)
    prelabel(parser.parse_args(argv))


if __name__ == "__main__":
    run_main(main)
