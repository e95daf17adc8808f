import shutil
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
