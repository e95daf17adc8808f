"""onnxruntime-web for the browser page, without node: the npm tarball pinned in envs/onnxruntime-web.json (URL and
npm integrity, sha512), downloaded once into the environments' folder (DEEPLENS_SSD_ENVS, else .venvs/, as the
Python environments), checked before every use, and only the lock's dist files taken out of it, each written under
its own base name (no path from the archive is ever followed)."""

import base64
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from workflow.lib.cli import UserError, log

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "envs" / "onnxruntime-web.json"
CHUNK = 1 << 20


def read_lock(path=LOCK):
    return json.loads(Path(path).read_text())


def cache_root():
    """Where the tarball is kept: the stage environments' folder (workflow/orchestrator/envs.py's envs_root)."""
    return Path(os.environ.get("DEEPLENS_SSD_ENVS", REPO / ".venvs")).resolve() / "downloads"


def integrity_of(path, algorithm="sha512"):
    """npm's integrity string of a file: 'sha512-' and the base64 digest."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return f"{algorithm}-{base64.b64encode(digest.digest()).decode()}"


def tarball(lock, cache=None):
    """The lock's tarball in the cache, downloaded if missing; UserError unless its integrity is the lock's."""
    algorithm, _, _ = lock["integrity"].partition("-")
    if algorithm not in ("sha512", "sha384", "sha256"):
        raise UserError(f"{lock['package']}: the lock's integrity '{lock['integrity']}' is not sha512/384/256")
    cache = Path(cache) if cache else cache_root()
    target = cache / f"{lock['package']}-{lock['version']}.tgz"
    if target.is_file() and integrity_of(target, algorithm) == lock["integrity"]:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    log(f"{lock['package']} {lock['version']}: downloading {lock['url']}")
    handle, partial = tempfile.mkstemp(dir=cache, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(lock["url"], timeout=60) as response:
                    shutil.copyfileobj(response, out, CHUNK)
            except OSError as error:
                raise UserError(
                    f"{lock['package']} {lock['version']}: cannot download {lock['url']} ({error}); on a machine "
                    f"without network, put the file at {target}"
                ) from None
        found = integrity_of(partial, algorithm)
        if found != lock["integrity"]:
            raise UserError(
                f"{lock['package']} {lock['version']}: {lock['url']} has integrity {found}, but the lock pins "
                f"{lock['integrity']}; the download is not used (corrupted, or not the pinned package)"
            )
        os.chmod(partial, 0o644)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


def extract(lock, out_dir, cache=None):
    """The lock's files from its checked tarball into out_dir, each by its base name; returns their names."""
    archive = tarball(lock, cache)
    wanted = {name: Path(name).name for name in lock["files"]}
    if len(set(wanted.values())) != len(wanted) or any(n in ("", ".", "..") for n in wanted.values()):
        raise UserError(f"{lock['package']}: the lock's files must have distinct plain base names: {lock['files']}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    found = set()
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if member.name not in wanted:
                continue
            if not member.isfile():  # a link or a device would point elsewhere: never followed
                raise UserError(f"{archive}: {member.name} is not a regular file")
            with tar.extractfile(member) as source, open(out_dir / wanted[member.name], "wb") as target:
                shutil.copyfileobj(source, target, CHUNK)
            found.add(member.name)
    missing = sorted(set(wanted) - found)
    if missing:
        raise UserError(f"{archive}: no {', '.join(missing)} in {lock['package']} {lock['version']}")
    return sorted(wanted.values())
