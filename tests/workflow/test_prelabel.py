"""prelabel on the finished tiny run: LabelImg files marked unreviewed whose boxes are the deployed IR's
detections, read back by our check, ranked, cached, and nothing written into the user's folders."""

import csv
import hashlib
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import NEW_IMAGE_RERUNS, copy_sample, in_env, planned, snakemake, write_config

THRESHOLD = 0.05  # the untrained-for-long tiny model scores low
DETECT = """
import json, sys
import cv2
from workflow.device import infer
from workflow.prelabel import pixel_box
compiled, contract = infer.load(sys.argv[1])
boxes = {}
for path in sys.argv[3:]:
    image = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    height, width = image.shape[:2]
    found = [(int(c), pixel_box(box, width, height)) for c, _, *box in infer.detect(compiled, image, contract,
                                                                                   float(sys.argv[2]))]
    boxes[path] = [[c, *box] for c, box in found if box]
print(json.dumps(boxes))
"""

LABELIMG_SESSION = """
import json, os, sys, tempfile
os.environ["QT_QPA_PLATFORM"] = "offscreen"
os.environ["HOME"] = tempfile.mkdtemp()  # LabelImg keeps its settings in ~/.labelImgSettings.pkl
from labelImg.labelImg import get_main_app
from libs.pascal_voc_io import PascalVocReader
app, window = get_main_app(["labelImg", *sys.argv[1:]])
app.processEvents()  # LabelImg's queued start: it opens the first image and its XML from the save dir
session = {}
for index in range(window.img_count):
    if index:
        window.open_next_image()
    app.processEvents()
    xml = os.path.join(sys.argv[3], os.path.splitext(os.path.basename(window.file_path))[0] + ".xml")
    reader = PascalVocReader(xml)  # it swallows parse errors: a file it cannot read gives no shapes
    read = [[label, *points[0], *points[2]] for label, points, *_ in reader.get_shapes()]
    shown = [[s.label, *(int(v) for corner in (s.points[0], s.points[2]) for v in (corner.x(), corner.y()))]
             for s in window.canvas.shapes]
    session[xml] = [reader.verified, window.canvas.verified, read, shown]
    window.verify_image()  # the Verify key (space): LabelImg saves the file marked verified="yes"
print(json.dumps({"classes": window.label_hist, "files": session}))
"""


def xml_boxes(path, classes):
    root = ET.parse(path).getroot()
    return root.get("verified"), [
        [classes.index(obj.find("name").text)]
        + [int(obj.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")]
        for obj in root.findall("object")
    ]


def folder_hashes(folder):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def prelabelled(finished_run, tmp_path):
    """A copy of the finished tiny run with 6 sample images it never saw in `unlabelled`, pre-labelled."""
    snakefile, finished, config = finished_run
    workdir = tmp_path / "work"
    shutil.copytree(finished, workdir, symlinks=True)
    unlabelled = copy_sample(tmp_path / "new", 20, 6) / "JPEGImages"
    config = write_config(workdir, unlabelled=str(unlabelled), prelabel_threshold=THRESHOLD)
    before = folder_hashes(tmp_path / "new")
    result = snakemake(workdir, "prelabel", "--cores", "2", snakefile=snakefile)
    assert folder_hashes(tmp_path / "new") == before  # only read
    return snakefile, workdir, config, unlabelled, result


def test_prelabels_are_the_deployed_detections_in_labelimg_files_marked_unreviewed(prelabelled):
    snakefile, workdir, config, unlabelled, _ = prelabelled
    out = workdir / "results" / "tiny" / "prelabel"
    images = sorted(unlabelled.iterdir())
    expected = in_env("optimizer", DETECT, workdir / "results/tiny/optimize/model.xml", THRESHOLD, *images)
    total = 0
    for image in images:
        verified, boxes = xml_boxes(out / "Annotations" / f"{image.stem}.xml", config["classes"])
        assert verified == "no" and boxes == expected[str(image)]
        total += len(boxes)
    assert total > 0
    assert (out / "classes.txt").read_text().split() == config["classes"]
    command = (out / "labelimg_command.txt").read_text().split()
    assert command[0] == "labelImg" and command[1] == str(unlabelled) and command[3] == str(out / "Annotations")
    with open(out / "ranking.csv") as handle:
        ranking = list(csv.DictReader(handle))
    assert sorted(row["image"] for row in ranking) == [str(p) for p in images]
    scores = [int(row["review_score"]) for row in ranking]
    assert scores == sorted(scores, reverse=True) and [row["rank"] for row in ranking] == [str(i) for i in range(1, 7)]
    assert (out / "index.html").read_text().count("<figure>") == 6
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["threshold"] == THRESHOLD and len(manifest["images"]) == 6 and manifest["errors"] == {}


CHECK = """
import json, sys
from workflow import check
settings = check.Settings(json.loads(sys.argv[2]), {}, 10**8, True)
records, problems = check.check_dataset(sys.argv[1], settings)
print(json.dumps([[[r["id"], [[o["class"], *o["box"]] for o in r["objects"]]] for r in records],
                  sorted({p.problem for p in problems})]))
"""


def checked(images, annotations, classes, voc):
    """Our check on a VOC folder `voc` made of the two folders: ({image id: boxes}, the kinds of problem)."""
    shutil.copytree(annotations, voc / "Annotations")
    shutil.copytree(images, voc / "JPEGImages")
    records, problems = in_env("mxnet", CHECK, voc, json.dumps(classes))
    return dict(records), problems


def test_our_check_reads_the_prelabels_back_with_their_boxes_and_warns_they_are_unverified(prelabelled, tmp_path):
    _, workdir, config, unlabelled, _ = prelabelled
    annotations = workdir / "results/tiny/prelabel/Annotations"
    records, problems = checked(unlabelled, annotations, config["classes"], tmp_path / "reviewed")
    assert problems in (["unverified"], ["no-objects", "unverified"])
    assert records == {path.stem: xml_boxes(path, config["classes"])[1] for path in annotations.glob("*.xml")}


def test_labelimg_opens_the_prelabels_unverified_with_their_boxes_and_its_verify_key_confirms_them(prelabelled):
    """LabelImg itself, headless, started with the command prelabel wrote: its reader and its window show our
    boxes as unverified; after its Verify key on every image our check reads them as verified, boxes unchanged."""
    _, workdir, config, unlabelled, _ = prelabelled
    out = workdir / "results/tiny/prelabel"
    command = (out / "labelimg_command.txt").read_text().split()
    written = {str(path): xml_boxes(path, config["classes"])[1] for path in sorted((out / "Annotations").glob("*.xml"))}
    session = in_env("labelimg", LABELIMG_SESSION, *command[1:])
    assert session["classes"] == config["classes"] and sorted(session["files"]) == sorted(written)
    for path, (read_verified, shown_verified, read, shown) in session["files"].items():
        boxes = [[config["classes"].index(label), *corners] for label, *corners in read]
        assert read_verified is shown_verified is False and read == shown and boxes == written[path]
    assert sum(map(len, written.values())) > 0
    records, problems = checked(unlabelled, out / "Annotations", config["classes"], workdir / "reviewed")
    assert "unverified" not in problems
    assert records == {Path(path).stem: boxes for path, boxes in written.items()}


def test_a_prelabelled_image_moved_into_the_dataset_reruns_the_check_and_what_follows(prelabelled):
    snakefile, workdir, _, unlabelled, _ = prelabelled
    image = sorted(unlabelled.iterdir())[0]
    shutil.copy(workdir / "results/tiny/prelabel/Annotations" / f"{image.stem}.xml", workdir / "voc/Annotations")
    shutil.copy(image, workdir / "voc/JPEGImages")
    assert planned(snakefile, workdir) == NEW_IMAGE_RERUNS


def test_new_images_are_the_only_ones_detected_again(prelabelled, tmp_path):
    snakefile, workdir, config, unlabelled, _ = prelabelled
    cache = next((workdir / "results/tiny/prelabel_cache").iterdir())  # one folder per model
    cached = set(cache.iterdir())
    copy_sample(tmp_path / "new", 26, 1)
    snakemake(workdir, "prelabel", "--cores", "2", snakefile=snakefile)
    assert len(set(cache.iterdir()) - cached) == 1 and len(list(cache.iterdir())) == 7
    assert len(list((workdir / "results/tiny/prelabel/Annotations").glob("*.xml"))) == 7


def test_a_new_threshold_detects_nothing_again_and_val_f1_is_the_score_that_maximised_f1_on_val(prelabelled):
    snakefile, workdir, config, unlabelled, _ = prelabelled
    cache = next((workdir / "results/tiny/prelabel_cache").iterdir())
    cached = {path: path.stat().st_mtime_ns for path in cache.iterdir()}
    config = write_config(workdir, unlabelled=str(unlabelled), prelabel_threshold="val-f1")
    snakemake(workdir, "prelabel", "--cores", "2", snakefile=snakefile)
    assert {path: path.stat().st_mtime_ns for path in cache.iterdir()} == cached
    metrics = json.loads((workdir / "results/tiny/evaluate/metrics.json").read_text())
    best = metrics["score_threshold"]["overall"]["threshold"]
    manifest = json.loads((workdir / "results/tiny/prelabel/manifest.json").read_text())
    assert manifest["threshold_setting"] == "val-f1" and manifest["threshold"] == (0.5 if best is None else best)
    images = sorted(unlabelled.iterdir())
    expected = in_env("optimizer", DETECT, workdir / "results/tiny/optimize/model.xml", manifest["threshold"], *images)
    for image in images:
        path = workdir / "results/tiny/prelabel/Annotations" / f"{image.stem}.xml"
        assert xml_boxes(path, config["classes"])[1] == expected[str(image)]


def test_without_an_unlabelled_folder_prelabel_says_what_to_set(tiny_run):
    workdir, _ = tiny_run()
    result = snakemake(workdir, "-n", "prelabel", "--cores", "1", check=False)
    assert result.returncode != 0
    assert "prelabel: set unlabelled to a folder of images to pre-label" in result.stdout + result.stderr


CHECK_EXPORT = """
import json, sys
from workflow import check
settings = check.Settings(json.loads(sys.argv[2]), {}, 10**8, True, images=sys.argv[3])
records, problems = check.check_dataset(sys.argv[1], settings)
print(json.dumps([{r["id"]: [[o["class"], *o["box"]] for o in r["objects"]] for r in records},
                  sorted({(p.problem, p.severity) for p in problems})]))
"""

# readers independent of ours (envs/readers.txt): each box as [class name, xmin, ymin, xmax, ymax] in pixels
READ_INDEPENDENTLY = """
import json, sys
from pathlib import Path
form, path, images = sys.argv[1:4]
if form == "coco":
    from pycocotools.coco import COCO
    coco = COCO(path)
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    boxes = {}
    for image in coco.loadImgs(coco.getImgIds()):
        found = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        boxes[Path(image["file_name"]).stem] = [[names[a["category_id"]], x, y, x + w, y + h]
                                                for a in found for x, y, w, h in [a["bbox"]]]
else:
    import globox
    names = Path(path, "obj.names").read_text().splitlines()
    annotations = globox.AnnotationSet.from_yolo_darknet(Path(path, "obj_train_data"), image_folder=images)
    boxes = {Path(a.image_id).stem: [[names[int(b.label)], *b.ltrb] for b in a.boxes] for a in annotations}
print(json.dumps(boxes))
"""


@pytest.mark.parametrize(
    "form, dataset", [("coco", "prelabels.coco.json"), ("yolo", "."), ("labelstudio", "predictions.json")]
)
def test_the_prelabels_in_each_tools_form_read_back_with_the_boxes_labelimgs_files_hold(prelabelled, form, dataset):
    """prelabel_format coco, yolo or labelstudio: the same boxes as the LabelImg files (which hold them in whole
    pixels: to a pixel), read back by our check as that tool's export, unverified where the form can say so; the
    folder holds that form alone (the LabelImg files written before are gone, so the check recognises the form);
    COCO and YOLO load in pycocotools and globox with the boxes our check reads, to a thousandth of a pixel."""
    snakefile, workdir, config, unlabelled, _ = prelabelled
    out = workdir / "results" / "tiny" / "prelabel"
    voc_boxes = {path.stem: xml_boxes(path, config["classes"])[1] for path in (out / "Annotations").glob("*.xml")}
    write_config(workdir, unlabelled=str(unlabelled), prelabel_threshold=THRESHOLD, prelabel_format=form)
    snakemake(workdir, "prelabel", "--cores", "2", snakefile=snakefile)
    assert json.loads((out / "manifest.json").read_text())["format"] == form
    assert not (out / "Annotations").exists() and not (out / "classes.txt").exists()  # the voc run's: one form
    records, problems = in_env("mxnet", CHECK_EXPORT, out / dataset, json.dumps(config["classes"]), unlabelled)
    assert not [problem for problem in problems if problem[1] == "error"], problems
    if form != "yolo":  # a YOLO label file has no place for a score: its scores are in scores/, beside
        assert ["unverified", "warning"] in problems
    assert records.keys() == voc_boxes.keys()
    for stem, boxes in records.items():
        assert [box[0] for box in boxes] == [box[0] for box in voc_boxes[stem]]
        for box, pixels in zip(boxes, voc_boxes[stem]):
            assert max(abs(a - b) for a, b in zip(box[1:], pixels[1:])) <= 1.0
    if form != "labelstudio":  # no light reader of Label Studio's predictions exists (its converter: 250 MB)
        theirs = in_env("readers", READ_INDEPENDENTLY, form, out / dataset, unlabelled)
        ours = {stem: [[config["classes"][box[0]], *box[1:]] for box in boxes] for stem, boxes in records.items()}
        assert theirs.keys() == ours.keys() and any(ours.values())
        for stem, boxes in ours.items():
            assert len(theirs[stem]) == len(boxes)
            for mine, read in zip(sorted(boxes), sorted(theirs[stem])):
                assert mine[0] == read[0] and max(abs(a - b) for a, b in zip(mine[1:], read[1:])) < 1e-3, (mine, read)
    if form == "labelstudio":
        task = json.loads((out / dataset).read_text())[0]
        prediction = task["predictions"][0]
        assert prediction["model_version"].startswith("deeplens-ssd ") and task["data"]["image"].startswith(
            f"/data/local-files/?d={unlabelled.name}/"
        )
        assert {(r["from_name"], r["to_name"]) for r in prediction["result"]} <= {("label", "image")}
