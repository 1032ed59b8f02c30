"""Exported files that are written atomically and verified when loaded.

In: the files of an exported library (the .so or cubin, metadata .json, .params.npz), its
target string. Out: `<path>.manifest.json` beside them, holding the sha256 of every file that
decides what runs (keyed by its suffix after `path`), the target and the kiln version;
`verify_manifest` checks it on load.
Why: a library is mapped into the process and trusted: a half-written file, another model's
.so copied over this one or an edited metadata file (a smaller workspace, other shapes) would
crash the process or compute garbage. Each file is written to a temporary name and renamed,
the manifest last, so a crash mid-export leaves files that fail the check with a clear error.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np

from ..errors import BuildError
from ..fileio import commit, copy_file, sha256_file, tmp_beside, write_bytes

__all__ = ["copy_file", "manifest_path", "save_npz", "sha256_file", "verify_manifest",
           "write_bytes", "write_manifest"]

MANIFEST_VERSION = 1


def manifest_path(path: str) -> str:
    return path + ".manifest.json"


def save_npz(path: str, arrays: dict) -> None:
    """np.savez to `path` atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    commit(tmp_beside(path), path, write)


def write_manifest(path: str, suffixes: list, target: str) -> None:
    """`<path>.manifest.json`: sha256 of each file `path + suffix` (keyed by the suffix, so
    the set may be renamed together), the target and the kiln version. Written last, after
    every file it lists."""
    from .. import __version__
    entry = {"kiln_manifest": MANIFEST_VERSION, "kiln_version": __version__,
             "target": str(target),
             "files": {sfx: sha256_file(path + sfx) for sfx in suffixes}}
    write_bytes(manifest_path(path), (json.dumps(entry, indent=1) + "\n").encode())


def verify_manifest(path: str, target: str | None = None, required: bool = False) -> dict | None:
    """Check the files listed in `<path>.manifest.json` against their hashes (and the target,
    when given): a BuildError naming the first file that differs. Without a manifest (an
    export of an older kiln): a warning, or a BuildError when `required`."""
    mpath = manifest_path(path)
    if not os.path.exists(mpath):
        if required:
            raise BuildError(f"cannot load {path}: its manifest {mpath} is missing")
        warnings.warn(f"kiln: {path} has no manifest ({os.path.basename(mpath)}; exported by an "
                      "older kiln?): its files are not verified", stacklevel=3)
        return None
    try:
        with open(mpath) as f:
            entry = json.load(f)
        files = dict(entry["files"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise BuildError(f"cannot load {path}: its manifest {mpath} is damaged ({err})") \
            from None
    for suffix, digest in files.items():
        _check_file(path, path + str(suffix), digest, entry)
    if target is not None and str(entry.get("target")) != str(target):
        raise BuildError(f"cannot load {path}: its manifest says target "
                         f"{entry.get('target')!r}, its metadata {target!r}")
    return entry


def _check_file(path: str, file: str, digest: str, entry: dict) -> None:
    if not os.path.exists(file):
        raise BuildError(f"cannot load {path}: {file} is missing")
    if sha256_file(file) != digest:
        raise BuildError(f"cannot load {path}: {file} is not the file exported with it (its "
                         f"content changed since kiln {entry.get('kiln_version', '?')} wrote "
                         "the manifest: damaged, edited or another model's); export it again")
