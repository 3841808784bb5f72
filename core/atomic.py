"""Atomic JSON writes: a file is either its old self or the new one, never half of one (used by run folders,
core.runs, and process records, core.liveness)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` via a temporary file in the same folder and os.replace; ``path`` is either the old
    file or the new one, never half of one.

    Raises:
        OSError: the folder is not writable or the disk is full (the temporary file is removed first).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_new(path: Path, data: Any) -> None:
    """Write JSON to ``path``, which must not exist: written in full to a temporary file in the same folder,
    then hard-linked into place (atomic, and it fails instead of replacing a file that appeared meanwhile).
    Readable by others like any file the user saves (0644 before the umask).

    Raises:
        FileExistsError: ``path`` exists.
        OSError: the folder is missing or not writable.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.link(tmp, path)
    finally:
        os.unlink(tmp)
