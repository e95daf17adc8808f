"""The export_web page in headless Chromium (make test-browser): a tiny run to export_web, then page_check.py on
its val images (the proof: model.onnx's network in the page computes MXNet's, its post-processing keeps MXNet's
detections on synthetic network outputs; through the file input, where the browser resizes the image itself, the
detections pair with onnxruntime's at IoU 0.5)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "workflow"))
from conftest import copy_sample, snakemake, write_config  # noqa: E402  (the workflow tests' tiny run)


@pytest.fixture(scope="module")
def web_run(tmp_path_factory):
    """The tiny run (tests/workflow/conftest.py's config) through export_web only: (work folder, results)."""
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        pytest.fail("no tests/browser/node_modules: run make test-browser (it runs npm ci there)")
    workdir = tmp_path_factory.mktemp("web")
    copy_sample(workdir / "voc", 0, 12)
    write_config(workdir)
    snakemake(workdir, "export_web", "--cores", "2")
    return workdir, workdir / "results" / "tiny"


def test_the_folder_holds_the_page_the_model_and_the_pinned_runtime(web_run):
    _, results = web_run
    web = results / "export_web"
    lock = json.loads((REPO / "envs" / "onnxruntime-web.json").read_text())
    names = {p.name for p in web.iterdir()}
    assert {"index.html", "app.js", "model.onnx", "model.onnx.contract.json", "web.json", "README.md"} <= names
    assert {Path(f).name for f in lock["files"]} <= names
    info = json.loads((web / "web.json").read_text())
    assert info["runtime"]["integrity"] == lock["integrity"] and info["execution_provider"] == "wasm"
    contract = json.loads((web / "model.onnx.contract.json").read_text())
    assert contract["model"] == "model.onnx" and "score_threshold" in contract
    page = (web / "index.html").read_text() + (web / "app.js").read_text()
    assert "http://" not in page.replace("http://localhost:8000/", "") and "https://" not in page  # nothing remote


def test_the_page_in_chromium_computes_what_mxnet_computes(web_run, tmp_path):
    workdir, results = web_run
    out = tmp_path / "page_check.json"
    command = [sys.executable, str(HERE / "page_check.py"), "--run", str(results), "--root", str(workdir)]
    command += ["--repeat", "1", "--out", str(out)]
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    command += ["--chromium", chromium] if chromium else []
    finished = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    result = json.loads(out.read_text())
    summary = result["summary"]
    assert summary["images"] == len(result["images"]) > 0 and summary["problems"] == []
    checked = result["proof"]
    assert checked["network"]["images"] == summary["images"] and checked["network"]["problems"] == []
    assert checked["postprocessing"]["mxnet_detections"] > 0 and checked["postprocessing"]["problems"] == []
    assert 0 <= summary["tensor_equal_images"] <= summary["images"] and summary["threads"] == 1  # reported
    assert summary["file_pairing"] >= 0.8 and summary["ms_median_per_image"] > 0
