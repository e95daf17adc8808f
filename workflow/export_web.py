"""export_web: a browser page that runs model.onnx with onnxruntime-web's wasm backend, in one folder that loads
nothing from the network.

index.html and app.js (workflow/web/), model.onnx and its contract with the score threshold chosen on val (as
shipped in the artifacts), and the onnxruntime-web files its wasm backend loads, taken from the npm tarball pinned in
envs/onnxruntime-web.json (workflow/lib/web_runtime.py: fetched once, checked against its sha512 integrity). Serve
the folder over http (`python3 -m http.server` in it): browsers load neither modules nor wasm from file://.
"""

import argparse
import json
import shutil
from pathlib import Path

from workflow.lib import web_runtime
from workflow.lib.cli import log, run_main
from workflow.lib.contracts import shipped_contract

PAGE_FILES = [Path(__file__).resolve().parent / "web" / name for name in ("index.html", "app.js")]


def readme(contract, lock):
    threshold = contract.get("score_threshold")
    shown = f"{threshold:.3f} (chosen on val)" if threshold is not None else "0.5 (none was chosen on val)"
    return f"""# The detector in a browser

Serve this folder and open it; nothing is loaded from the network:

    python3 -m http.server 8000      # in this folder, then open http://localhost:8000/

Drop an image on the page, pick one, or start the camera (the camera needs localhost or https). The page runs
{contract["model"]} with {lock["package"]} {lock["version"]} (its wasm backend: the WebGPU backend has no
NonMaxSuppression) and draws the detections scoring at least {shown}. Without cross-origin isolation (the
COOP/COEP headers, which http.server does not send) it runs on one thread.

Classes: {", ".join(contract["labels"])}. Input: {contract["input_shape"]} {contract["color_order"]} float32 0-255,
the image stretched to the input size; the mean, box decoding and NMS are inside the model.
"""


def export(args):
    out = Path(args.out_dir)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    lock = web_runtime.read_lock()
    runtime = web_runtime.extract(lock, out)
    for source in PAGE_FILES:
        shutil.copy2(source, out / source.name)
    model = Path(args.onnx)
    shutil.copy2(model, out / "model.onnx")
    contract = json.loads(Path(args.contract).read_text())
    contract = shipped_contract({**contract, "model": "model.onnx"}, json.loads(Path(args.metrics).read_text()))
    (out / "model.onnx.contract.json").write_text(json.dumps(contract, indent=2) + "\n")
    (out / "README.md").write_text(readme(contract, lock))
    info = {
        "page": "index.html",
        "model": "model.onnx",
        "contract": "model.onnx.contract.json",
        "runtime": {k: lock[k] for k in ("package", "version", "license", "url", "integrity")} | {"files": runtime},
        "execution_provider": "wasm",
    }
    (out / "web.json").write_text(json.dumps(info, indent=2) + "\n")
    log(f"export_web: {out}/index.html, {lock['package']} {lock['version']} ({', '.join(runtime)})")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.export_web", description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", required=True, help="model.onnx (workflow.export_onnx)")
    parser.add_argument("--contract", required=True, help="its contract (model.onnx.contract.json)")
    parser.add_argument("--metrics", required=True, help="evaluate's metrics.json (the score threshold)")
    parser.add_argument("--out-dir", required=True)
    export(parser.parse_args(argv))


if __name__ == "__main__":
    run_main(main)
