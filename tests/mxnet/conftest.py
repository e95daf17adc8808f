import json
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"


@pytest.fixture
def voc(tmp_path):
    """A small VOC folder: the first `n` sample images and XMLs copied to tmp, returned as its path."""

    def make(n=4):
        root = tmp_path / "voc"
        for sub in ("Annotations", "JPEGImages"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        for xml in sorted((SAMPLE / "Annotations").glob("*.xml"))[:n]:
            shutil.copy(xml, root / "Annotations" / xml.name)
            shutil.copy(SAMPLE / "JPEGImages" / f"{xml.stem}.jpg", root / "JPEGImages" / f"{xml.stem}.jpg")
        return root

    return make


def check_command(out, classes, *datasets):
    """`python -m workflow.check` on the --dataset (and --val-dataset) arguments `datasets`, with the default
    settings, writing a.json, t.csv and problems.csv in `out`; add --skip-bad-files or --no-skip-bad-files."""
    outputs = ["--out", str(out / "a.json"), "--table", str(out / "t.csv"), "--problems-log", str(out / "problems.csv")]
    outputs += ["--splits", str(out / "splits.json")]
    settings = ["--class-map", "{}", "--max-image-pixels", "50000000", "--keep-empty-images"]
    settings += ["--unverified-annotations", "warning", "--dataset-format", "auto"]
    return [sys.executable, "-m", "workflow.check", *datasets, "--classes", json.dumps(classes), *outputs, *settings]
