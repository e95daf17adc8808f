"""onnxruntime-web for the browser page (workflow/lib/web_runtime.py): the pinned npm tarball is used only when its
integrity is the lock's, and only the lock's files come out of it, by their base names."""

import io
import tarfile

import pytest

from workflow.lib import web_runtime
from workflow.lib.cli import UserError

REPO_LOCK = web_runtime.read_lock()


def make_tarball(path, members):
    """A .tgz of {name: bytes or ('symlink', target)}."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, content[1]
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


def lock_for(tarball, files, integrity=None):
    return {
        "package": "onnxruntime-web",
        "version": "0.0.0-test",
        "url": tarball.as_uri(),
        "integrity": integrity or web_runtime.integrity_of(tarball),
        "files": files,
    }


def test_the_repositorys_lock_pins_a_sha512_and_the_wasm_backends_files():
    assert REPO_LOCK["integrity"].startswith("sha512-") and REPO_LOCK["url"].endswith(f"-{REPO_LOCK['version']}.tgz")
    names = {f.rsplit("/", 1)[-1] for f in REPO_LOCK["files"]}
    assert {"ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"} == names


def test_a_download_with_another_hash_is_refused_with_a_clear_error(tmp_path):
    tarball = make_tarball(tmp_path / "ort.tgz", {"package/dist/ort.wasm.min.mjs": b"export {};"})
    wrong = "sha512-" + "A" * 86 + "=="
    cache = tmp_path / "cache"
    with pytest.raises(UserError) as error:
        web_runtime.extract(lock_for(tarball, ["package/dist/ort.wasm.min.mjs"], wrong), tmp_path / "out", cache)
    message = str(error.value)
    assert "onnxruntime-web 0.0.0-test" in message and wrong in message and "not used" in message
    assert web_runtime.integrity_of(tarball) in message  # what it found
    assert not (tmp_path / "out" / "ort.wasm.min.mjs").exists() and not list(cache.iterdir())  # nothing kept


def test_only_the_locks_files_come_out_by_base_name_and_links_are_refused(tmp_path):
    members = {
        "package/dist/ort.wasm.min.mjs": b"export {};",
        "package/dist/ort-wasm-simd-threaded.wasm": b"\0asm",
        "../escape.txt": b"outside",
        "/absolute.txt": b"outside",
        "package/dist/link.mjs": ("symlink", "/etc/passwd"),
    }
    tarball = make_tarball(tmp_path / "ort.tgz", members)
    files = ["package/dist/ort.wasm.min.mjs", "package/dist/ort-wasm-simd-threaded.wasm"]
    out = tmp_path / "deep" / "out"
    names = web_runtime.extract(lock_for(tarball, files), out, tmp_path / "cache")
    assert names == ["ort-wasm-simd-threaded.wasm", "ort.wasm.min.mjs"]
    assert sorted(p.name for p in out.iterdir()) == names and (out / "ort.wasm.min.mjs").read_bytes() == b"export {};"
    assert not (tmp_path / "deep" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()
    with pytest.raises(UserError, match="not a regular file"):
        web_runtime.extract(lock_for(tarball, ["package/dist/link.mjs"]), tmp_path / "links", tmp_path / "cache")
    with pytest.raises(UserError, match="no package/dist/missing.mjs"):
        web_runtime.extract(lock_for(tarball, ["package/dist/missing.mjs"]), tmp_path / "m", tmp_path / "cache")


def test_a_cached_tarball_is_checked_again_and_replaced_when_it_changed(tmp_path):
    tarball = make_tarball(tmp_path / "ort.tgz", {"package/dist/a.mjs": b"1"})
    lock = lock_for(tarball, ["package/dist/a.mjs"])
    cache = tmp_path / "cache"
    cached = web_runtime.tarball(lock, cache)
    assert cached.read_bytes() == tarball.read_bytes()
    cached.write_bytes(b"corrupted")
    assert web_runtime.tarball(lock, cache).read_bytes() == tarball.read_bytes()
