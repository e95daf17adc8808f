"""Which tool's export a dataset is, recognised from its files, and the files the check reads from it.

Standard library only: the Snakefile lists a dataset's files with it (adding or editing one reruns the check) and
checks the config with it before anything runs. The forms and what recognises them:

    voc          a folder with Annotations/ (LabelImg; JPEGImages/ beside it)
    lst          a file ending in .lst (an im2rec detection list, the original project's)
    yolo         a data.yaml (Ultralytics, Roboflow's YOLOv8), or a folder with one or with obj.names (CVAT's YOLO 1.1)
    cvat         annotations.xml, or a folder with one (CVAT for images 1.1)
    coco         a folder with _annotations.coco.json in itself or in train/, valid/, test/ (Roboflow), with
                 annotations/instances_*.json (CVAT's COCO 1.0) or result.json (Label Studio's COCO); or a .json
                 file holding one object (images, annotations, categories)
    labelstudio  a .json file holding a list of tasks (Label Studio's JSON export)
"""

from pathlib import Path

from workflow.lib import voc
from workflow.lib.labelled import IMAGE_SUFFIXES

FORMS = ("voc", "lst", "coco", "yolo", "cvat", "labelstudio")
AUTO = "auto"
# what prelabel writes for each form, and where (LabelImg XML for a .lst; COCO, which CVAT imports, for CVAT)
PRELABEL_FORMS = {"voc": "voc", "lst": "voc", "coco": "coco", "cvat": "coco", "yolo": "yolo"}
PRELABEL_FORMS["labelstudio"] = "labelstudio"
PRELABEL_OUTPUTS = {"voc": "Annotations", "coco": "prelabels.coco.json", "yolo": "obj_train_data"}
PRELABEL_OUTPUTS["labelstudio"] = "predictions.json"
ANNOTATION_SUFFIXES = (".json", ".txt", ".xml", ".yaml", ".yml", ".names", ".data")
ROBOFLOW_COCO = "_annotations.coco.json"
COCO_FILES = (ROBOFLOW_COCO, "*/" + ROBOFLOW_COCO, "annotations/instances_*.json", "result.json")
YOLO_FILES = ("data.yaml", "data.yml", "obj.names")


def recognise(dataset, forced=AUTO):
    """The form of the export at dataset (forced: the config's dataset_format, unless auto); ValueError saying what
    was found otherwise."""
    if forced != AUTO:
        return forced
    path = Path(dataset)
    if path.is_file() or path.suffix.lower() == ".lst":  # a missing .lst: the check says so
        return file_form(path)
    if not path.is_dir():
        raise ValueError(f"'{dataset}' is neither a file nor a folder")
    if (path / "Annotations").is_dir():
        return "voc"
    if any((path / name).is_file() for name in YOLO_FILES):
        return "yolo"
    if (path / "annotations.xml").is_file():
        return "cvat"
    if coco_files(path):
        return "coco"
    raise ValueError(
        f"'{dataset}' holds no export this workflow reads: a VOC folder (Annotations/), a YOLO export (data.yaml or "
        f"obj.names), a CVAT XML (annotations.xml), a COCO export ({ROBOFLOW_COCO}, annotations/instances_*.json, "
        "result.json), or name the .json, .xml, .yaml or .lst file itself"
    )


def prelabel_format(setting, dataset, dataset_format):
    """The form of the pre-labels: prelabel_format, or the dataset's when it is auto."""
    return PRELABEL_FORMS[recognise(dataset, dataset_format)] if setting == AUTO else setting


def file_form(path):
    suffix = path.suffix.lower()
    forms = {".lst": "lst", ".yaml": "yolo", ".yml": "yolo", ".xml": "cvat"}
    if suffix in forms:
        return forms[suffix]
    if suffix == ".json":
        return json_form(path)
    raise ValueError(f"'{path}' is a file of no form this workflow reads (.lst, .json, .xml, .yaml)")


def json_form(path):
    """coco for a JSON object, labelstudio for a list (Label Studio's export holds a list of tasks)."""
    with open(path, "rb") as handle:
        start = handle.read(4096).lstrip()
    if start.startswith(b"["):
        return "labelstudio"
    if start.startswith(b"{"):
        return "coco"
    raise ValueError(f"'{path}' is not JSON holding a COCO object or a Label Studio list of tasks")


def coco_files(folder):
    """The COCO files of an export folder, sorted."""
    return sorted({p for pattern in COCO_FILES for p in Path(folder).glob(pattern) if p.is_file()})


def input_files(dataset, form, images=None, lst_root=None):
    """Every file the check may read from the export, sorted: a .lst and the images it names; a VOC folder's XMLs,
    images and ImageSets; for the other forms the annotation files and images in the export's folder and its
    subfolders (for a file: the file and its folder's), and the images in the folder `images` (dataset_images)."""
    if form == "lst":
        return [str(dataset)] + voc.lst_images(dataset, lst_root)
    if form == "voc":
        return voc_files(Path(dataset))
    path = Path(dataset)
    folder = path if path.is_dir() else path.parent
    files = {str(path)} if path.is_file() else set()
    for file in folder.rglob("*"):
        if file.suffix.lower() in IMAGE_SUFFIXES + ANNOTATION_SUFFIXES and file.is_file():
            files.add(str(file))
    if images:
        files |= {str(p) for p in Path(images).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}
    return sorted(files)


def voc_files(folder):
    files = [str(p) for p in sorted((folder / "Annotations").glob("*.xml"))]
    images = folder / "JPEGImages"
    if images.is_dir():
        files += [str(p) for p in sorted(images.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    return files + [str(p) for p in sorted((folder / "ImageSets" / "Main").glob("*.txt"))]
