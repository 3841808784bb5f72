"""Where an export is written and whether it fits: the destination folder, the bytes it needs, the staging
folder that is removed on any failure (a full disk included, reported as one "disk full" line), and the zip.

An export is written into a hidden staging folder next to its destination (``.NAME.partial-XXXX``,
core.runs.staging_dir), verified there, then renamed into place (core.runs.publish_dir), so a failure at any
point leaves the destination absent and every earlier export untouched.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
import stat
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.disk import check_free_space, disk_full_message, free_bytes, is_disk_full
from core.errors import DiskFullError, ExportError
from core.runs import staging_dir

log = logging.getLogger(__name__)

ZIP_LIMIT_BYTES = 8 * 2**30
"""Larger exports are offered as a folder only: a browser download of more than 8 GiB is impractical."""

# Files of a Trainer checkpoint that are training state, not the adapter: never copied into an export.
CHECKPOINT_STATE = (
    "optimizer.pt",
    "scheduler.pt",
    "scaler.pt",
    "rng_state*.pth",
    "training_args.bin",
    "trainer_state.json",
)

# What an export writes besides the weights: config.json, generation_config.json, verification.json, the model
# card README.md and loss_curve.svg (measured on SmolLM2-135M: 14 kB in all); 1 MB covers them with room.
EXTRA_BYTES = 1_000_000

# Tokenizer files save_pretrained writes next to merged weights (copied from the base's own).
TOKENIZER_FILES = (
    "tokenizer*",
    "vocab*",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template*",
    "*.model",
)

BYTES_PER_PARAM = {"bfloat16": 2, "float16": 2, "float32": 4}


DELETED_TEMPLATE = (
    "The run folder {folder} was deleted while it was being exported; nothing was exported "
    "(deleted runs cannot be exported)."
)
"""An export whose run folder went away meanwhile (English; ui.tabs.export_tab shows it in the page's language)."""


def deleted_message(folder: Path) -> str:
    """The error of an export whose run folder ``folder`` was deleted while it ran (DELETED_TEMPLATE)."""
    return DELETED_TEMPLATE.format(folder=folder)


def folder_size(folder: Path) -> int:
    """Total bytes of the files under ``folder`` (0 when it does not exist)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def adapter_export_bytes(adapter: Path) -> int:
    """Bytes an adapter export writes: the adapter folder's files minus the checkpoint's training state
    (CHECKPOINT_STATE, never copied), plus EXTRA_BYTES for the verification and model card files."""
    total = 0
    for p in adapter.rglob("*"):
        if p.is_file() and not any(fnmatch.fnmatch(p.name, pat) for pat in CHECKPOINT_STATE):
            total += p.stat().st_size
    return total + EXTRA_BYTES


def merged_export_bytes(num_params: int, dtype: str, base_path: str | Path) -> int:
    """Bytes a merged export writes: every parameter in the saved dtype, the base's tokenizer files, and
    EXTRA_BYTES.

    Args:
        num_params: the base's parameters, tied embeddings counted once (save_pretrained stores them once;
            core.modelspec.ModelSpec.num_params). LoRA adds none: merging folds B A into the existing weights.
        dtype: the saved dtype, "bfloat16", "float16" or "float32" ("auto" resolved by the caller).
        base_path: local folder of the base, whose tokenizer files the export copies.

    Returns:
        Bytes, within the safetensors headers (a few kB per shard) of what is written.
    """
    tokenizer = sum(
        p.stat().st_size
        for p in Path(base_path).iterdir()
        if p.is_file() and any(fnmatch.fnmatch(p.name, pat) for pat in TOKENIZER_FILES)
    )
    return num_params * BYTES_PER_PARAM[dtype] + tokenizer + EXTRA_BYTES


@contextmanager
def staged(final: Path, needed_bytes: int, what: str) -> Iterator[Path]:
    """A staging folder for ``final``, refused up front when the disk cannot hold ``needed_bytes``, removed on
    any failure inside the block.

    Args:
        final: the export folder (must not exist; the caller publishes the staging folder to it).
        needed_bytes: bytes the export writes (adapter_export_bytes / merged_export_bytes).
        what: what is written, for the messages ("merged export", "adapter export").

    Yields:
        The staging folder (``.NAME.partial-XXXX`` next to ``final``).

    Raises:
        ExportError: ``final``'s folder no longer exists (a run folder deleted meanwhile; it is never
            re-created).
        DiskFullError: before anything is written, when the free space is below ``needed_bytes``; or while
            writing, when the disk or quota fills (ENOSPC / EDQUOT from any writer: shutil's copy, safetensors,
            the tokenizer's files), after the staging folder is removed. The message gives MB free and needed.
    """
    if not final.parent.is_dir():  # the run folder deleted meanwhile: staging_dir would re-create it
        raise ExportError(deleted_message(final.parent))
    check_free_space(final.parent, needed_bytes, what)
    tmp: Path | None = None
    try:
        tmp = staging_dir(final)
        yield tmp
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            # the type only: a shutil.Error's text is the whole list of files it could not copy
            log.warning("%s of %s: the disk filled while writing (%s)", what, final, type(exc).__name__)
            raise DiskFullError(f"{what}: {disk_full_message(final.parent, needed_bytes)}") from exc
        raise


def unique_path(path: Path) -> Path:
    """``path`` if free, else ``path-2``, ``path-3``... (exports are never overwritten)."""
    if not path.exists():
        return path
    n = 2
    while path.with_name(f"{path.name}-{n}").exists():
        n += 1
    return path.with_name(f"{path.name}-{n}")


def destination(run_dir: Path, out: str | Path | None, default_name: str) -> Path:
    """The export folder: ``out`` or a free ``RUN_DIR/default_name[-n]``; the parent of ``out`` is created, the
    run folder never is (a run deleted meanwhile is refused, not re-created empty).

    Raises:
        ExportError: it is taken, lies inside the run's adapter folder (which it would copy into itself), the run
            folder no longer exists, or the parent of ``out`` cannot be created (named, with the reason).
        DiskFullError: the parent cannot be created because the disk is full.
    """
    final = Path(out).expanduser().resolve() if out else unique_path(run_dir / default_name)
    if final.exists():
        raise ExportError(f"{final} already exists; exports are never overwritten. Choose another folder.")
    adapter = (run_dir / "adapter").resolve()
    if final == adapter or adapter in final.parents:
        raise ExportError(f"{final} is inside the run's adapter folder; choose a folder outside {adapter}.")
    if final.parent == run_dir.resolve() and not run_dir.is_dir():
        raise ExportError(deleted_message(run_dir))
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(disk_full_message(final.parent)) from None
        raise ExportError(f"Cannot create {final.parent}: {exc.strerror}. Choose another folder.") from None
    return final


ZIP_FILE_MODE = 0o644
"""Every file in an export zip: readable by all, whatever its mode on disk (safetensors and the adapter's weights
are written 0600, which unzipped as unreadable for the group and others)."""
ZIP_DIR_MODE = 0o755


def _zip_readable(zf: zipfile.ZipFile, path: Path, arcname: Path) -> None:
    """Add ``path`` (a file, streamed; or a folder entry) to ``zf`` as ``arcname`` with ZIP_FILE_MODE / ZIP_DIR_MODE
    in the Unix mode bits of ``external_attr`` (what unzip restores), never the file's own mode."""
    info = zipfile.ZipInfo.from_file(path, arcname)
    if info.is_dir():
        info.external_attr = ((stat.S_IFDIR | ZIP_DIR_MODE) << 16) | 0x10  # 0x10: MS-DOS directory flag
        zf.writestr(info, b"")
        return
    info.external_attr = (stat.S_IFREG | ZIP_FILE_MODE) << 16
    info.compress_type = zf.compression
    with path.open("rb") as src, zf.open(info, "w") as dest:
        shutil.copyfileobj(src, dest, 1 << 20)


def zip_export(folder: Path) -> tuple[str, str]:
    """Zip ``folder`` next to itself (``folder.zip``, stored uncompressed: safetensors barely compress), written
    under a temporary name first and hard-linked into place (a user's file of the same name is never replaced).
    Every file in it is mode 0644 and every folder 0755 (ZIP_FILE_MODE, ZIP_DIR_MODE), whatever their modes on disk.

    The export folder is already verified and published, so a zip that cannot be written does not undo it.

    Returns:
        (zip path, "") when written; ("", why) when not: the folder is over ZIP_LIMIT_BYTES, or the disk cannot
        hold the zip (checked first; a disk that fills while zipping removes the partial zip), ``why`` saying so
        with the MB figures and what to do.
    """
    size = folder_size(folder)
    if size > ZIP_LIMIT_BYTES:
        return "", "Too large to zip for a browser download: use the folder."
    needed = size + EXTRA_BYTES  # zip headers: ~100 bytes per file
    not_zipped = "Not zipped for download (use the folder): "
    if free_bytes(folder.parent) < needed:
        return "", not_zipped + disk_full_message(folder.parent, needed)
    partial = folder.with_name(f".{folder.name}.zip-partial-{os.getpid()}")  # pid: remove_stale_staging
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for path in sorted(folder.rglob("*")):
                if path.is_file() or path.is_dir():
                    _zip_readable(zf, path, path.relative_to(folder))
        n = 1
        while True:  # os.link refuses an existing name, so a user's file of the same name is never replaced
            final = folder.with_name(folder.name + (f"-{n}" if n > 1 else "") + ".zip")
            try:
                os.link(partial, final)
                break
            except FileExistsError:
                n += 1
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        return "", not_zipped + disk_full_message(folder.parent, needed)
    finally:
        partial.unlink(missing_ok=True)
    return str(final), ""
