"""The exports a run folder holds (the Runs tab lists them with the run, and counts them when it deletes one)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_EXPORT_DIR = re.compile(r"^(merged|adapter-export)(-\d+)?$")
_EXPORT_ZIP = re.compile(r"^(merged|adapter-export)(-\d+)*\.zip$")


@dataclass(frozen=True)
class RunExport:
    """One export found in a run folder.

    Attributes:
        kind: "merged" or "adapter".
        path: the export folder (absolute).
        zip_path: its zip next to it (``<folder>.zip``), "" when there is none.
        size_bytes: bytes of the folder's files (the zip not counted).
        verified: the folder holds verification.json (written last, before the folder is published).
    """

    kind: str
    path: str
    zip_path: str
    size_bytes: int
    verified: bool


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (links not followed; unreadable entries skipped)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if not os.path.islink(os.path.join(root, name)):
                total += st.st_size
    return total


def list_exports(run_dir: str | Path) -> list[RunExport]:
    """The exports the app wrote into ``run_dir`` (core.export's defaults: ``merged[-n]/`` and
    ``adapter-export[-n]/``, each with an optional ``<folder>.zip``; zips whose folder is gone are listed on
    their own, with path ""), in name order. Exports written elsewhere (the CLI's ``--out``) are not found."""
    run = Path(run_dir)
    try:
        entries = sorted(run.iterdir())
    except OSError:
        return []
    names = {e.name for e in entries}
    found: list[RunExport] = []
    used_zips: set[str] = set()
    for entry in entries:
        match = _EXPORT_DIR.match(entry.name)
        if not match or entry.is_symlink() or not entry.is_dir():
            continue
        zip_name = entry.name + ".zip"
        zip_path = str(run / zip_name) if zip_name in names else ""
        if zip_path:
            used_zips.add(zip_name)
        kind = "merged" if match.group(1) == "merged" else "adapter"
        verified = (entry / "verification.json").is_file()
        found.append(RunExport(kind, str(entry), zip_path, folder_bytes(entry), verified))
    for entry in entries:
        match = _EXPORT_ZIP.match(entry.name)
        if match and entry.name not in used_zips and entry.is_file() and not entry.is_symlink():
            kind = "merged" if match.group(1) == "merged" else "adapter"
            found.append(RunExport(kind, "", str(entry), 0, False))
    return found
