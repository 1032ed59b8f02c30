"""tvm.contrib.utils: a temporary directory for scripts that save and load libraries."""

from __future__ import annotations

import os
import shutil
import tempfile

__all__ = ["TempDirectory", "tempdir"]


class TempDirectory:
    """A fresh directory, removed with remove() (or when the object is collected, unless
    keep_for_debug)."""

    def __init__(self, custom_path: str | None = None, keep_for_debug: bool = False):
        if custom_path:
            os.makedirs(custom_path, exist_ok=True)
            self.temp_dir = os.path.abspath(custom_path)
        else:
            self.temp_dir = tempfile.mkdtemp(prefix="kiln_")
        self._keep = keep_for_debug or bool(custom_path)

    @property
    def path(self) -> str:
        return self.temp_dir

    def relpath(self, name: str) -> str:
        return os.path.join(self.temp_dir, name)

    def listdir(self) -> list:
        return os.listdir(self.temp_dir)

    def remove(self) -> None:
        if not self._keep and self.temp_dir and os.path.isdir(self.temp_dir):
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.temp_dir = ""

    def __del__(self):
        try:
            self.remove()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown: nothing left to clean
            pass


def tempdir(custom_path: str | None = None, keep_for_debug: bool = False) -> TempDirectory:
    return TempDirectory(custom_path, keep_for_debug)
