"""Run folders and atomic file writes: nothing a user made is overwritten or left half-written."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any


def new_run_dir(output_dir: str | Path, prefix: str = "run") -> Path:
    """Create and return a fresh run folder ``output_dir/run-YYYYmmdd-HHMMSS[-n]``; never reuses one.

    ``os.mkdir`` without exist_ok is atomic, so two jobs started in the same second get different folders.
    """
    base = Path(output_dir).expanduser().resolve()
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        candidate = base / (f"{prefix}-{stamp}" + (f"-{n}" if n else ""))
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"{base}: could not create a new run folder")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` via a temporary file in the same folder and os.replace."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=False)
        fh.write("\n")
    os.replace(tmp, path)


def publish_dir(tmp: Path, final: Path) -> Path:
    """Move a fully written folder ``tmp`` to ``final``, which must not exist yet (never overwrites).

    Raises:
        FileExistsError: ``final`` exists; ``tmp`` is removed.
    """
    if final.exists():
        shutil.rmtree(tmp, ignore_errors=True)
        raise FileExistsError(f"{final} already exists; choose another folder or remove it first.")
    os.rename(tmp, final)
    return final


def staging_dir(final: Path) -> Path:
    """A temporary folder next to ``final`` (same file system, so publish_dir's rename is atomic)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))


def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    """Every line of ``metrics.jsonl`` (one dict per logging step); [] if none."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
