"""Stream the rows of a dataset file one at a time, so memory does not grow with the file.

``open_records`` checks the file (exists, size, compression, kind) at once and returns a ``RecordStream`` whose rows
are read lazily: JSONL line by line, a JSON array element by element (``json.JSONDecoder.raw_decode`` on a sliding
buffer), CSV / TSV through ``csv.reader`` over a line iterator, Parquet by record batches (pyarrow), hub datasets row
by row from their memory-mapped Arrow table. gzip and one-file zip archives are decompressed as a stream. An XLSX
workbook (small by construction) and a JSON object of columns are the only kinds read whole. Messages and row
semantics are those of ``core.datafiles`` (which gathers a stream into a list for training).
"""

from __future__ import annotations

import gzip
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from core.datafiles import (
    DEFAULT_MAX_BYTES,
    SUFFIX_KIND,
    _clean_row,
    _inner_suffix,
    _is_data_member,
    _magic_name,
    _read_hub_rows,
    _read_xlsx,
    _refuse_compression,
    is_hub_id,
    sniff_kind,
)
from core.errors import DataError
from core.textrows import (
    CHUNK_BYTES,
    Chunks,
    _delimited_rows,
    _json_document_rows,
    _jsonl_rows,
    _lines,
    _text_chunks,
)

SNIFF_BYTES = 4096  # what sniff_kind judges the kind by


@dataclass
class RecordStream:
    """A dataset being read: its name, kind and a one-pass iterator over its rows.

    Attributes:
        name: the file name (or hub id) used in messages.
        kind: "csv", "tsv", "json", "jsonl", "parquet", "xlsx", "hub" or "folder".
        rows: every data row as a dict (values str / list / dict / None) or a ``{ROW_ERROR: reason}`` placeholder.
        duplicates: header names given to several columns, {name: [(column number, key), ...]}; filled once the
            header has been read (CSV / TSV only).
    """

    name: str
    kind: str
    rows: Iterator[dict[str, Any]]
    duplicates: dict[str, list[tuple[int, str]]] = field(default_factory=dict)


def open_records(
    source: str, *, split: str = "train", config_name: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> RecordStream:
    """Check ``source`` and return a stream of its rows (read as they are iterated).

    Args:
        source: file path or hub dataset id (``owner/name``).
        split / config_name: for hub datasets and saved dataset folders.
        max_bytes: files larger than this (also once decompressed) are refused, in bytes.

    Returns:
        The stream; iterating ``rows`` may still raise DataError naming the line or element at fault.

    Raises:
        DataError: missing file, an empty folder, too large, other compression, unknown kind, hub load failure.
    """
    if is_hub_id(source):
        return RecordStream(source, "hub", _read_hub_rows(source, split, config_name))
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"{source}: file not found.")
    if path.is_dir():
        if any(
            p.suffix.lower() in SUFFIX_KIND for p in path.iterdir()
        ):  # a saved dataset folder (split files)
            return RecordStream(source, "folder", _read_hub_rows(str(path), split, config_name))
        raise DataError(
            f"{source}: is a folder with no data files; choose a CSV, TSV, JSON, JSONL, Parquet or XLSX file."
        )
    size = path.stat().st_size
    if size > max_bytes:
        raise DataError(
            f"{path.name}: {size / 2**20:,.0f} MiB is over the {max_bytes / 2**20:,.0f} MiB limit; split "
            "the file or use the CLI (launch.py train), which reads larger files."
        )
    name = path.name
    chunks, suffix, plain = _byte_chunks(path, max_bytes)
    head = _head(chunks(), SNIFF_BYTES)
    if suffix == ".xlsx" or (plain and head[:2] == b"PK"):
        return RecordStream(name, "xlsx", iter(_read_xlsx(name, path.read_bytes())))
    try:
        kind = sniff_kind(head, suffix)
    except DataError as exc:
        raise DataError(f"{name}: {exc}") from None
    if kind == "xlsx":
        return RecordStream(name, kind, iter(_read_xlsx(name, b"".join(chunks()))))
    if kind == "parquet":
        return RecordStream(name, kind, _parquet_rows(name, path if plain else None, chunks))
    stream = RecordStream(name, kind, iter(()))
    if kind in ("csv", "tsv"):
        stream.rows = _delimited_rows(stream, chunks, "\t" if kind == "tsv" else ",")
    elif kind == "json":
        stream.rows = _json_document_rows(stream, chunks)
    else:
        stream.rows = _jsonl_rows(name, _lines(_text_chunks(chunks(), name)))
    return stream


def _head(chunks: Iterator[bytes], n: int) -> bytes:
    """The first ``n`` bytes of a chunk stream (fewer when it is shorter)."""
    out = b""
    for chunk in chunks:
        out += chunk
        if len(out) >= n:
            break
    if hasattr(chunks, "close"):
        chunks.close()
    return out[:n]


def _byte_chunks(path: Path, max_bytes: int) -> tuple[Chunks, str, bool]:
    """A factory of the file's data bytes in chunks (decompressed from gzip or a one-file zip), the data suffix, and
    whether the file is read as it is (no compression).

    Raises:
        DataError: other compression, a damaged archive, a zip with no data file or several, a member over
            ``max_bytes``; data over ``max_bytes`` once decompressed is refused while it is read.
    """
    name = path.name
    with open(path, "rb") as fh:
        raw = fh.read(512)
    suffix = _inner_suffix(name)
    if raw[:2] == b"\x1f\x8b":
        inner = _gunzip_chunks(lambda: open(path, "rb"), name, max_bytes)
        head = _head(inner(), 512)
        if what := _magic_name(head):
            raise _refuse_compression(name, f"{what} inside gzip")
        if head[:2] == b"\x1f\x8b" or head[:4] == b"PK\x03\x04":
            raise _refuse_compression(name, "an archive inside gzip")
        return inner, suffix, False
    if raw[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _zip_chunks(path, max_bytes)
    if what := _magic_name(raw):
        raise _refuse_compression(name, what)

    def plain() -> Iterator[bytes]:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                yield chunk

    return plain, suffix, True


def _gunzip_chunks(opener: Callable[[], Any], name: str, max_bytes: int) -> Chunks:
    def chunks() -> Iterator[bytes]:
        total = 0
        with opener() as f, gzip.GzipFile(fileobj=f) as g:
            while True:
                try:
                    chunk = g.read(CHUNK_BYTES)
                except (OSError, EOFError, zlib.error) as exc:
                    raise DataError(
                        f"{name}: is gzip-compressed but cannot be decompressed ({exc})."
                    ) from None
                if not chunk:
                    return
                total += len(chunk)
                if total > max_bytes:
                    raise DataError(
                        f"{name}: over the {max_bytes / 2**20:,.0f} MiB limit once decompressed; split the file "
                        "or use the CLI (launch.py train), which reads larger files."
                    )
                yield chunk

    return chunks


def _zip_chunks(path: Path, max_bytes: int) -> tuple[Chunks, str, bool]:
    name = path.name
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{name}: is a zip archive that cannot be opened ({exc}).") from None
    with archive:
        names = archive.namelist()
        if "[Content_Types].xml" in names and any(n.startswith("xl/") for n in names):
            return lambda: iter([path.read_bytes()]), ".xlsx", True  # an Excel workbook
        members = [i for i in archive.infolist() if _is_data_member(i)]
    if len(members) != 1:
        shown = [n for n in names if not n.endswith("/")][:8]
        more = len([n for n in names if not n.endswith("/")]) - len(shown)
        holds = ", ".join(shown) + (f" and {more} more" if more > 0 else "") if shown else "nothing"
        count = "no data file" if not members else f"{len(members)} data files"
        raise DataError(
            f"{name}: the zip archive holds {count} ({holds}); put exactly one CSV, TSV, JSON, JSONL, "
            "Parquet or XLSX file in it, or upload that file itself."
        )
    member = members[0]
    if member.file_size > max_bytes:
        raise DataError(
            f"{name}: {member.filename} is {member.file_size / 2**20:,.0f} MiB once unzipped, over the "
            f"{max_bytes / 2**20:,.0f} MiB limit; split the file or use the CLI (launch.py train)."
        )

    def opener() -> _ClosingMember:
        archive = zipfile.ZipFile(path)
        try:
            return _ClosingMember(archive.open(member), archive)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, zlib.error) as exc:
            archive.close()
            raise DataError(f"{name}: cannot unzip {member.filename} ({exc}).") from None

    inner = member.filename.rsplit("/", 1)[-1]
    if inner.lower().endswith((".gz", ".gzip")):
        return _gunzip_chunks(opener, inner, max_bytes), _inner_suffix(inner), False

    def chunks() -> Iterator[bytes]:
        with opener() as f:
            while True:
                try:
                    chunk = f.read(CHUNK_BYTES)
                except (zipfile.BadZipFile, NotImplementedError, RuntimeError, zlib.error, EOFError) as exc:
                    raise DataError(f"{name}: cannot unzip {member.filename} ({exc}).") from None
                if not chunk:
                    return
                yield chunk

    return chunks, _inner_suffix(inner), False


class _ClosingMember:
    """A zip member's file object that also closes its archive."""

    def __init__(self, member: IO[bytes], archive: zipfile.ZipFile) -> None:
        self.member, self.archive = member, archive

    def read(self, n: int = -1) -> bytes:
        return self.member.read(n)

    def __enter__(self) -> _ClosingMember:
        return self

    def __exit__(self, *exc: object) -> None:
        self.member.close()
        self.archive.close()


def _parquet_rows(name: str, path: Path | None, chunks: Chunks) -> Iterator[dict[str, Any]]:
    """Parquet rows by record batch; a compressed file is first written to a temporary file (Parquet needs to seek).

    Raises:
        DataError: the file cannot be read as Parquet.
    """
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="lora-studio-parquet-") as tmp:
        if path is None:
            path = Path(tmp) / "data.parquet"
            with open(path, "wb") as out:
                for chunk in chunks():
                    out.write(chunk)
        try:
            batches = pq.ParquetFile(path).iter_batches(batch_size=2048)
        except Exception as exc:
            raise DataError(f"{name}: cannot read as Parquet ({exc}).") from None
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except Exception as exc:
                raise DataError(f"{name}: cannot read as Parquet ({exc}).") from None
            for row in batch.to_pylist():
                yield _clean_row(row)
