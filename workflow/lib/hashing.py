"""sha256 of a file, read in chunks, and of a set of files."""

import hashlib
from pathlib import Path


CHUNK = 1 << 20


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def files_sha256(paths, root):
    """sha256 over files, each by its path relative to root and its content's sha256, in path order: it changes
    when a file is added, removed, renamed or edited."""
    digest = hashlib.sha256()
    for path in sorted(map(Path, paths)):
        digest.update(f"{path.relative_to(root).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()
