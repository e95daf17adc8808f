import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from conftest import SAMPLE
from test_evaluate import CLASSES, make_tiny_deploy
from workflow import demo
from workflow.lib import drawing

GREY = 90


def test_render_draws_outlines_beside_the_ground_truth_and_leaves_the_rest():
    rgb = np.full((100, 200, 3), GREY, np.uint8)
    box = [0.2, 0.3, 0.6, 0.8]  # pixels x 40..120, y 30..80
    picture = drawing.render(rgb, [[1, 0.9, *box]], [[0, 1.0, *box]], CLASSES)
    top = drawing.CAPTION_HEIGHT
    assert picture.shape == (100 + top, 2 * 200 + 4, 3)
    left, right = picture[top:, :200], picture[top:, 204:]
    for half, cls in ((left, 1), (right, 0)):
        outline = np.concatenate([half[40:80, 40], half[40:80, 120], half[80, 40:121]])
        assert (outline == drawing.class_colour(cls)).all()  # both sides of the box and its bottom edge
        assert (half[45:75, 45:115] == GREY).all() and (half[85:, :] == GREY).all()  # inside and below: untouched
    assert not (picture[:top] == 255).all()  # the captions


def test_cli_on_a_folder_prints_a_json_line_per_image_and_draws_it(tmp_path, capsys):
    deploy = make_tiny_deploy(tmp_path / "deploy")
    folder = tmp_path / "photos"
    folder.mkdir()
    originals = sorted((SAMPLE / "JPEGImages").glob("*.jpg"))[:3]
    for path in originals:
        shutil.copy(path, folder)
    (folder / "notes.txt").write_text("not an image")

    demo.main(
        ["--deploy", str(deploy), "--images", str(folder), "--threshold", "0.5", "--out-dir", str(tmp_path / "out")]
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(line["image"]).name for line in lines] == [p.name for p in originals]
    for line in lines:
        assert line["detections"] and all(d["score"] >= 0.5 and d["class"] in CLASSES for d in line["detections"])
        original = cv2.imread(line["image"]).astype(int)
        drawn = cv2.imread(line["output"]).astype(int)[drawing.CAPTION_HEIGHT :]
        assert drawn.shape == original.shape  # no ground truth: the detections only
        height, width = original.shape[:2]
        best = max(line["detections"], key=lambda d: d["score"])
        x1, y1, x2, y2 = (int(round(v * s)) for v, s in zip(best["box"], (width, height, width, height)))
        edge = (slice(max(y1, 0), min(y2, height)), min(max(x1, 0), width - 1))  # its left side
        assert np.abs(drawn[edge] - original[edge]).mean() > 20
