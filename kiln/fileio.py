"""Atomic file writes and content hashes, for every file kiln writes: the compile caches (C
and NVRTC), the tuner's sources, exported libraries and their manifests.

In: a path and bytes (or a file to copy). Out: the file in place, written to a temporary
name beside it and renamed, so a reader never sees half of it; `sha256_file` for verifying.
Why: one implementation instead of a private copy in each writer.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile

from .errors import BuildError


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tmp_beside(path: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise BuildError(f"cannot write {path}: the folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp")
    os.close(fd)
    return tmp


def commit(tmp: str, path: str, write) -> None:
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_bytes(path: str, data: bytes) -> None:
    """Write `data` to `path` atomically (a temporary file beside it, then a rename)."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
    commit(tmp_beside(path), path, write)


def copy_file(src: str, path: str, mode: int = 0o755) -> None:
    """Copy `src` to `path` atomically."""
    def write(tmp: str) -> None:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, mode)
    commit(tmp_beside(path), path, write)
