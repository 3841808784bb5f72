"""A full disk during an export: refused before writing when the space is clearly short, and when the disk fills
while writing, one "disk full: N MB free on <dir>, M MB needed" line (engine, Export tab, CLI), no staging folder
left behind, and every earlier export untouched.

The full disk is real where the machine allows it (a small tmpfs, mounted as root; those tests skip when mount is
refused) and otherwise an OS fault: the lowest write the export uses (``os.sendfile`` under shutil's copy,
safetensors' ``serialize_file`` under save_pretrained) raising ENOSPC, as the kernel does.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.disk import check_free_space, disk_full_message, free_bytes, is_disk_full
from core.errors import DiskFullError
from core.events import COMPLETED
from tests.conftest import ASSETS
from tests.test_cli import run_cli
from tests.test_engine import run, small

DISK_FULL = re.compile(r"disk full: [\d.,]+ MB free on \S+, [\d.,]+ MB needed\. Free space or choose another")


@pytest.fixture(scope="module")
def done_run(tiny_llama, tmp_path_factory) -> Path:
    """A finished 2-step LoRA run of the tiny Llama (its B moved, so exports verify)."""
    snap, folder = run(
        small(
            tmp_path_factory.mktemp("runs"),
            model_name_or_path=str(tiny_llama),
            max_steps=2,
            learning_rate=3e-3,
        )
    )
    assert snap.status == COMPLETED, snap.message
    return Path(folder)


@pytest.fixture
def tmpfs(tmp_path) -> Iterator[Path]:
    """A real 6 MB tmpfs (a disk that truly fills); skipped where mounting is not allowed (not root, CI)."""
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the sha256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def leftovers(parent: Path) -> list[str]:
    """Staging folders and partial zips an export may leave next to its destination."""
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name or "zip-partial" in p.name)


def enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# ------------------------------------------------------------------------------------------------ core/disk.py


def test_disk_full_is_recognised_in_every_shape_the_writers_raise(tmp_path):
    from safetensors import SafetensorError

    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    # shutil.copytree collects (src, dst, str(error)) triples into one shutil.Error
    assert is_disk_full(shutil.Error([("a", "b", "[Errno 28] No space left on device: 'a' -> 'b'")]))
    # what safetensors' Rust writer raised on a full tmpfs (measured: SafetensorError, not an OSError)
    assert is_disk_full(
        SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    )
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise RuntimeError("save failed") from exc
    except RuntimeError as wrapped:
        assert is_disk_full(wrapped)  # through __cause__
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(shutil.Error([("a", "b", "[Errno 13] Permission denied")]))
    assert not is_disk_full(None)

    missing = tmp_path / "not" / "yet" / "made"
    assert (
        free_bytes(missing) == shutil.disk_usage(tmp_path).free
        or abs(free_bytes(missing) - shutil.disk_usage(tmp_path).free) < 2**24
    )  # the nearest existing parent is measured (others write to this disk meanwhile)
    message = disk_full_message(missing, 123_456_789)
    assert DISK_FULL.match(message) and f"on {tmp_path}," in message and "124 MB needed" in message
    assert "needed" not in disk_full_message(missing)
    check_free_space(missing, 1, "adapter export")  # fits: no error
    with pytest.raises(DiskFullError, match=r"^checkpoint: disk full: .* MB needed"):
        check_free_space(missing, free_bytes(tmp_path) + 10**12, "checkpoint")


# ------------------------------------------------------------------------------------------ refused up front


def test_exports_are_refused_before_writing_when_the_disk_is_short(done_run, tmp_path, monkeypatch, caplog):
    import logging

    from core.export import export_adapter, export_merged

    first = export_adapter(done_run, out=tmp_path / "first")
    before = digest(tmp_path / "first")
    monkeypatch.setattr("core.disk.free_bytes", lambda _path: 3_000_000)  # 3.0 MB free
    caplog.set_level(logging.INFO, logger="core.export")
    with pytest.raises(DiskFullError) as merged:
        export_merged(done_run, out=tmp_path / "merged", dtype="float32")
    message = str(merged.value)
    assert message.startswith("merged export: disk full: 3.0 MB free on ") and DISK_FULL.search(message)
    assert "Merge needs about" in caplog.text  # the memory check ran, and then
    assert "reference logits" not in caplog.text  # no model was loaded: refused before the merge
    needed_mb = float(re.search(r"([\d.,]+) MB needed", message).group(1).replace(",", ""))
    assert 12 < needed_mb < 20  # 3.2 M params x 4 bytes + the 3.5 MB tokenizer files

    monkeypatch.setattr("core.disk.free_bytes", lambda _path: 100_000)
    with pytest.raises(DiskFullError, match=r"^adapter export: disk full: 0\.1 MB free on .*MB needed"):
        export_adapter(done_run, out=tmp_path / "second")
    assert not (tmp_path / "merged").exists() and not (tmp_path / "second").exists()
    assert leftovers(tmp_path) == [] and digest(tmp_path / "first") == before
    assert Path(first.zip_path).is_file()


def test_the_merged_estimate_matches_what_is_written(done_run, tmp_path):
    """merged_export_bytes against a real merged export's folder: within the 1 MB allowance for the card."""
    from core.export import export_merged
    from core.export_files import folder_size, merged_export_bytes
    from core.model import inspect_model, resolve_model_path

    result = export_merged(done_run, out=tmp_path / "merged", dtype="bfloat16")
    spec = inspect_model(_base(done_run))
    estimate = merged_export_bytes(spec.num_params, "bfloat16", resolve_model_path(_base(done_run)))
    written = folder_size(Path(result.path))
    assert written <= estimate <= written + 1_000_000, (written, estimate)


def _base(run_dir: Path) -> str:
    import json

    return json.loads((run_dir / "config.json").read_text())["model_name_or_path"]


# ------------------------------------------------------------------------------- the disk fills while writing


def test_adapter_export_on_a_disk_that_fills_while_copying(done_run, tmp_path, monkeypatch):
    from core.export import export_adapter

    export_adapter(done_run, out=tmp_path / "first")
    before = digest(tmp_path / "first")
    monkeypatch.setattr(os, "sendfile", enospc)  # shutil.copyfile's write on Linux
    with pytest.raises(DiskFullError) as caught:
        export_adapter(done_run, out=tmp_path / "second")
    message = str(caught.value)
    assert message.startswith("adapter export: ") and DISK_FULL.search(message)
    assert "[(" not in message and "Errno" not in message  # never shutil.Error's raw list
    assert not (tmp_path / "second").exists() and leftovers(tmp_path) == []
    assert digest(tmp_path / "first") == before


def test_merged_export_on_a_disk_that_fills_while_saving_the_weights(done_run, tmp_path, monkeypatch):
    import safetensors.torch

    from core.export import export_merged

    def half_then_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 1000)  # the kernel took some bytes before the disk filled
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)

    monkeypatch.setattr(safetensors.torch, "serialize_file", half_then_full)
    with pytest.raises(DiskFullError, match=r"^merged export: disk full: .* MB needed"):
        export_merged(done_run, out=tmp_path / "merged", dtype="float32")
    assert not (tmp_path / "merged").exists() and leftovers(tmp_path) == []


def test_export_tab_shows_the_disk_full_line_not_a_bare_error(done_run, tmp_path, monkeypatch):
    from ui.tabs.export_tab import do_export, os_error_message

    monkeypatch.setattr("core.disk.free_bytes", lambda _path: 2_500_000)
    copy = tmp_path / done_run.name
    shutil.copytree(done_run, copy)
    summary, download, folder = do_export(str(copy), merged=True, progress=lambda *a, **k: None)
    assert summary.startswith("**Export failed.** merged export: disk full: 2.5 MB free on ")
    assert DISK_FULL.search(summary) and download is None and folder == ""
    monkeypatch.undo()
    monkeypatch.setattr(os, "sendfile", enospc)
    summary, download, folder = do_export(str(copy), merged=False, progress=lambda *a, **k: None)
    assert summary.startswith("**Export failed.** adapter export: disk full: ") and download is None
    assert leftovers(copy) == [] and not (copy / "adapter-export").exists()
    # an OS error the engine did not wrap (shutil.Error's list) still reads as one line
    raw = shutil.Error([("a", "b", "[Errno 28] No space left on device: 'a' -> 'b'")])
    line = os_error_message(raw, tmp_path)
    assert line.startswith("disk full: ") and f"MB free on {tmp_path}." in line and "[(" not in line
    denied = os_error_message(PermissionError(errno.EACCES, "Permission denied", "/x/y"), tmp_path)
    assert denied == "Permission denied (/x/y). Check the folder exists and is writable, then retry."


# ------------------------------------------------------------------------------------ a real full disk (tmpfs)


def test_a_real_full_disk_refuses_merged_and_keeps_the_adapter_export(done_run, tmpfs):
    """On a 6 MB tmpfs: the adapter export fits (zip included); the merged export (~10 MB) is refused by the CLI
    in one line on stderr, exit 1, with the disk's real free space; nothing is left on the disk but the adapter."""
    out = run_cli("export", str(done_run), "--adapter", "--out", str(tmpfs / "adapter"))
    assert out.returncode == 0, out.stderr
    before = digest(tmpfs)
    out = run_cli("export", str(done_run), "--merged", "--out", str(tmpfs / "merged"))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("merged export: disk full: "), out.stderr
    assert f"on {tmpfs}," in lines[0] and DISK_FULL.search(lines[0])
    assert "Traceback" not in out.stderr and "[(" not in out.stderr
    assert digest(tmpfs) == before and leftovers(tmpfs) == []


def test_a_real_disk_that_fills_during_the_merged_write(done_run, tmpfs, monkeypatch):
    """The up-front check bypassed (an estimate gone wrong, another program filling the disk meanwhile): the
    kernel's ENOSPC comes from safetensors' own writer, and the export still ends in the one line, clean."""
    from core.export import export_adapter, export_merged

    export_adapter(done_run, out=tmpfs / "adapter")
    before = digest(tmpfs)
    for module in ("core.export", "core.export_files"):
        monkeypatch.setattr(f"{module}.check_free_space", lambda *_a, **_k: None)
    with pytest.raises(DiskFullError) as caught:
        export_merged(done_run, out=tmpfs / "merged", dtype="float32")
    assert DISK_FULL.search(str(caught.value)) and isinstance(caught.value.__cause__, Exception)
    assert "No space left on device" in str(caught.value.__cause__)
    assert not (tmpfs / "merged").exists() and leftovers(tmpfs) == []
    assert digest(tmpfs) == before


def test_a_zip_that_does_not_fit_leaves_the_verified_export_and_says_why(done_run, tmp_path, monkeypatch):
    from ui.tabs.export_tab import do_export

    copy = tmp_path / done_run.name
    shutil.copytree(done_run, copy)
    monkeypatch.setattr("core.export_files.free_bytes", lambda _path: 400_000)  # the zip's own check: 0.4 MB
    summary, download, folder = do_export(str(copy), merged=False, progress=lambda *a, **k: None)
    assert summary.startswith("**Done.** Adapter saved to ") and download is None
    assert re.search(
        r"Not zipped for download \(use the folder\): disk full: [\d.,]+ MB free on .* MB needed", summary
    )
    assert Path(folder).is_dir() and (Path(folder) / "verification.json").is_file()
    assert not list(copy.glob("*.zip")) and leftovers(copy) == []


def test_train_on_a_real_full_disk_prints_one_line_and_leaves_no_folder(tmpfs, tmp_path):
    """``launch.py train`` with its runs folder on a full tmpfs: one line naming the disk, exit 1, no traceback."""
    filler = tmpfs / "filler"
    with open(filler, "wb") as fh:  # fill the disk to the last byte
        with contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {"dataset_name": str(ASSETS / "humaneval_alpaca.jsonl"), "output_dir": str(tmpfs / "runs")}
        )
    )
    out = run_cli("train", str(config))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and "disk full: 0.0 MB free on" in out.stderr, out.stderr
    assert not list(tmpfs.glob("runs/run-*"))  # no folder holding half a config
