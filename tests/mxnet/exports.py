"""A labelled set written out as each labelling tool exports it (the round-trip tests, and examples of each layout).

Each writer takes items [(image path, width, height, [(class name, xmin, ymin, xmax, ymax) in pixels])] and the
class names, copies the images and writes the annotations into a new folder the way the tool does; it returns the
path to give as `dataset`.
"""

import json
import shutil
from pathlib import Path
from xml.sax.saxutils import quoteattr

from workflow.lib import coco, labelstudio, yolo

UPLOAD_PREFIX = "8c1a2b3c-"  # what Label Studio puts before an uploaded file's name


def copy_images(items, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for image, *_ in items:
        shutil.copy(image, folder / Path(image).name)


def coco_images(items, classes):
    return [
        (Path(image).name, width, height, [(classes.index(name), *box, None) for name, *box in boxes])
        for image, width, height, boxes in items
    ]


def roboflow_coco(items, classes, folder):
    """Roboflow's COCO export: train/ (no valid/ or test/ here) with _annotations.coco.json beside the images; its
    placeholder category 0, named after the project, in front of the classes."""
    copy_images(items, folder / "train")
    path = folder / "train" / "_annotations.coco.json"
    coco.write_coco(path, coco_images(items, classes), classes)
    data = json.loads(path.read_text())
    data["categories"].insert(0, {"id": 0, "name": "logos-Ab3d", "supercategory": "none"})
    path.write_text(json.dumps(data))
    return folder


def cvat_coco(items, classes, folder):
    """CVAT's COCO 1.0 with images: annotations/instances_default.json, images/."""
    copy_images(items, folder / "images")
    (folder / "annotations").mkdir(parents=True)
    coco.write_coco(folder / "annotations" / "instances_default.json", coco_images(items, classes), classes)
    return folder


def yolo_items(items, classes):
    """[(image, label boxes [(class id, normalised corners)])]."""
    return [
        (
            image,
            [(classes.index(name), x0 / width, y0 / height, x1 / width, y1 / height) for name, x0, y0, x1, y1 in boxes],
        )
        for image, width, height, boxes in items
    ]


def write_data_yaml(path, classes, splits):
    lines = [f"{name}: {where}" for name, where in splits.items()]
    lines += [
        f"nc: {len(classes)}",
        "names: [" + ", ".join("'" + name.replace("'", "''") + "'" for name in classes) + "]",
    ]
    path.write_text("\n".join(lines) + "\n")


def ultralytics_yolo(items, classes, folder):
    """Ultralytics' layout: data.yaml, images/train/, labels/train/."""
    copy_images(items, folder / "images" / "train")
    (folder / "labels" / "train").mkdir(parents=True)
    for image, boxes in yolo_items(items, classes):
        yolo.write_labels(folder / "labels" / "train" / f"{Path(image).stem}.txt", boxes)
    write_data_yaml(folder / "data.yaml", classes, {"train": "images/train"})
    return folder


def roboflow_yolo(items, classes, folder):
    """Roboflow's YOLOv8 export: data.yaml naming ../train/images and ../valid/images (this one shipped without
    valid/), train/images/, train/labels/."""
    copy_images(items, folder / "train" / "images")
    (folder / "train" / "labels").mkdir(parents=True)
    for image, boxes in yolo_items(items, classes):
        yolo.write_labels(folder / "train" / "labels" / f"{Path(image).stem}.txt", boxes)
    write_data_yaml(folder / "data.yaml", classes, {"train": "../train/images", "val": "../valid/images"})
    return folder


def cvat_yolo(items, classes, folder):
    """CVAT's YOLO 1.1 with images: obj.names, obj.data, train.txt, obj_train_data/ (each label beside its image)."""
    copy_images(items, folder / "obj_train_data")
    for image, boxes in yolo_items(items, classes):
        yolo.write_labels(folder / "obj_train_data" / f"{Path(image).stem}.txt", boxes)
    (folder / "obj.names").write_text("".join(f"{name}\n" for name in classes))
    (folder / "obj.data").write_text(f"classes = {len(classes)}\ntrain = data/train.txt\nnames = data/obj.names\n")
    (folder / "train.txt").write_text("".join(f"data/obj_train_data/{Path(i).name}\n" for i, *_ in items))
    return folder


def cvat_xml(items, classes, folder):
    """CVAT for images 1.1 with images: annotations.xml, images/."""
    copy_images(items, folder / "images")
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<annotations>", "  <version>1.1</version>"]
    for index, (image, width, height, boxes) in enumerate(items):
        lines.append(f'  <image id="{index}" name={quoteattr(Path(image).name)} width="{width}" height="{height}">')
        for name, xmin, ymin, xmax, ymax in boxes:
            corners = f'xtl="{xmin!r}" ytl="{ymin!r}" xbr="{xmax!r}" ybr="{ymax!r}"'
            lines.append(f'    <box label={quoteattr(name)} occluded="0" {corners} z_order="0"></box>')
        lines.append("  </image>")
    (folder / "annotations.xml").write_text("\n".join(lines + ["</annotations>"]) + "\n")
    return folder


def label_studio(items, classes, folder):
    """Label Studio's JSON export: tasks naming the uploaded images by the server's URL (/data/upload/1/<8 hex
    digits>-<name>); the images, under their own names, beside it."""
    copy_images(items, folder)
    tasks = []
    for number, (image, width, height, boxes) in enumerate(items, start=1):
        normalised = [
            (classes.index(n), x0 / width, y0 / height, x1 / width, y1 / height, None) for n, x0, y0, x1, y1 in boxes
        ]
        url = f"/data/upload/1/{UPLOAD_PREFIX}{Path(image).name}"
        task = labelstudio.task(url, width, height, normalised, classes, ("label", "image"))
        tasks.append({"id": number, **task})
    (folder / "project-1-at-2026-12-07.json").write_text(json.dumps(tasks))
    return folder / "project-1-at-2026-12-07.json"


WRITERS = {
    "roboflow_coco": roboflow_coco,
    "cvat_coco": cvat_coco,
    "ultralytics_yolo": ultralytics_yolo,
    "roboflow_yolo": roboflow_yolo,
    "cvat_yolo": cvat_yolo,
    "cvat_xml": cvat_xml,
    "label_studio": label_studio,
}
