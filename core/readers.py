"""Stream the rows of a dataset file one at a time, so memory does not grow with the file.

``open_records`` checks the file (exists, size, compression, kind) at once and returns a ``RecordStream`` whose rows
are read lazily: JSONL line by line, a JSON array element by element (``json.JSONDecoder.raw_decode`` on a sliding
buffer), CSV / TSV through ``csv.reader`` over a line iterator, Parquet by record batches (pyarrow), hub datasets row
by row from their memory-mapped Arrow table. gzip and one-file zip archives are decompressed as a stream. An XLSX
workbook (small by construction) and a JSON object of columns are the only kinds read whole. Messages and row
semantics are those of ``core.datafiles`` (which gathers a stream into a list for training).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from core.datafiles import (
    DEFAULT_MAX_BYTES,
    ROW_ERROR,
    SUFFIX_KIND,
    _clean_row,
    _dedupe,
    _inner_suffix,
    _is_data_member,
    _json_rows,
    _magic_name,
    _read_hub_rows,
    _read_xlsx,
    _refuse_compression,
    clean_header,
    is_hub_id,
    sniff_kind,
)
from core.errors import DataError

CHUNK_BYTES = 1 << 20  # bytes read at a time from the (decompressed) file
SNIFF_BYTES = 4096  # what sniff_kind judges the kind by
Chunks = Callable[[], Iterator[bytes]]


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


def _gunzip_chunks(opener: Callable[[], IO[bytes]], name: str, max_bytes: int) -> Chunks:
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

    def opener() -> IO[bytes]:
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


def _text_chunks(chunks: Iterator[bytes], name: str) -> Iterator[str]:
    """Decoded text in chunks: UTF-16 after a UTF-16 BOM, else UTF-8 (BOM dropped); CRLF and CR become LF.

    Raises:
        DataError: bytes that are not valid UTF-8 / UTF-16, naming the byte offset.
    """
    first = next(chunks, b"")
    decoder = codecs.getincrementaldecoder(
        "utf-16" if first.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    )()
    offset, cr = 0, False

    def decode(chunk: bytes, final: bool = False) -> str:
        try:
            return str(decoder.decode(chunk, final))
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{name}: not UTF-8 or UTF-16 text (byte {offset + exc.start}); save it as UTF-8 and upload again."
            ) from None

    for chunk in _chain_first(first, chunks):
        text = decode(chunk)
        offset += len(chunk)
        if cr:
            text = "\r" + text
        cr = text.endswith("\r")  # a CR at a chunk's end may be the first half of a CRLF
        if cr:
            text = text[:-1]
        if text:
            yield text.replace("\r\n", "\n").replace("\r", "\n")
    tail = decode(b"", final=True) + ("\n" if cr else "")
    if tail:
        yield tail.replace("\r\n", "\n").replace("\r", "\n")


def _chain_first(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def _lines(texts: Iterable[str]) -> Iterator[str]:
    """Lines of a text stream, each with its "\\n" (the last one without, possibly empty), in linear time."""
    pending: list[str] = []
    for text in texts:
        if "\n" not in text:
            pending.append(text)  # a long line: joined once its end arrives, never re-copied per chunk
            continue
        pending.append(text)
        lines = "".join(pending).split("\n")
        pending = [lines.pop()]
        for line in lines:
            yield line + "\n"
    yield "".join(pending)


def _jsonl_rows(name: str, lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{name}: line {lineno} is not valid JSON ({exc.msg}, column {exc.colno})."
            ) from None
        if not isinstance(obj, dict):
            raise DataError(f"{name}: line {lineno} is a {type(obj).__name__}, expected a JSON object.")
        yield _clean_row(obj)


def _delimited_rows(stream: RecordStream, chunks: Chunks, delimiter: str) -> Iterator[dict[str, Any]]:
    """CSV / TSV rows, as core.datafiles describes: the CSV delimiter is the header's most frequent of , ; | and a
    row with the wrong number of fields becomes a ROW_ERROR placeholder."""
    name = stream.name
    lines = _lines(_text_chunks(chunks(), name))
    header_line = next(lines, "")
    if delimiter == ",":
        delimiter = max(",;|", key=header_line.count) if any(c in header_line for c in ",;|") else ","
    kind = "TSV" if delimiter == "\t" else "CSV"
    csv.field_size_limit(2**31 - 1)  # the default 128 KiB refuses long answers
    source = _chain_lines(header_line, lines)
    if delimiter == "\t":
        reader = csv.reader(source, delimiter=delimiter, quoting=csv.QUOTE_NONE, strict=True)
    else:
        reader = csv.reader(source, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL, strict=True)
    sep = {"\t": "tabs", ",": "commas", ";": "semicolons", "|": "bars"}[delimiter]
    header: list[str] | None = None
    line = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(
                f"{name}: cannot parse as {kind} at line {line} ({exc}); a quote is probably opened and "
                'never closed: write a quote inside a quoted field as two quotes ("").'
            ) from None
        line = reader.line_num + 1
        if not fields or fields == [""]:  # a blank line is not a row; a row of empty fields is
            continue
        if header is None:
            names = [clean_header(h) for h in fields]
            header = _dedupe(names)
            groups: dict[str, list[tuple[int, str]]] = {}
            for number, (n, k) in enumerate(zip(names, header), start=1):
                groups.setdefault(n, []).append((number, k))
            stream.duplicates = {n: g for n, g in groups.items() if len(g) > 1}
            continue
        if len(fields) != len(header):
            yield {
                ROW_ERROR: f"has {len(fields)} fields but the header has {len(header)}; put text that "
                f"contains {sep} in double quotes"
            }
        else:
            yield {h: (f if f != "" else None) for h, f in zip(header, fields)}


def _chain_lines(first: str, rest: Iterator[str]) -> Iterator[str]:
    if first:
        yield first
    yield from rest


class _JsonBuffer:
    """A sliding window over a text stream for ``raw_decode``, which keeps the line and column of its start."""

    def __init__(self, texts: Iterator[str], name: str) -> None:
        self.texts, self.name = texts, name
        self.buf, self.pos, self.eof = "", 0, False
        self.line, self.col = 1, 1  # of buf[0] in the file
        self.want = CHUNK_BYTES

    def more(self) -> bool:
        """Append text until at least ``want`` more characters arrived (doubling ``want`` each time)."""
        if self.eof:
            return False
        got: list[str] = []
        n = 0
        for text in self.texts:
            got.append(text)
            n += len(text)
            if n >= self.want:
                break
        else:
            self.eof = True
        if self.pos > CHUNK_BYTES:  # drop what was consumed, remembering where the window now starts
            done = self.buf[: self.pos]
            newlines = done.count("\n")
            self.line += newlines
            self.col = (self.col if not newlines else 1) + len(done) - (done.rfind("\n") + 1)
            self.buf, self.pos = self.buf[self.pos :], 0
        self.buf += "".join(got)
        return n > 0

    def skip_space(self) -> str:
        """The next non-space character ("" at the end), with ``pos`` on it."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\n\r":
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def error(self, msg: str, at: int) -> DataError:
        before = self.buf[:at]
        line = self.line + before.count("\n")
        col = (self.col if "\n" not in before else 1) + len(before) - (before.rfind("\n") + 1)
        return DataError(f"{self.name}: not valid JSON ({msg} at line {line}, column {col}).")

    def value(self, decoder: json.JSONDecoder) -> Any:
        """The JSON value at ``pos``, reading more text while it is cut off by the window's end."""
        self.want = CHUNK_BYTES
        while True:
            try:
                obj, end = decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if self.more():
                    self.want *= 2  # a long value: read in growing steps, so retries stay linear overall
                    continue
                raise self.error(exc.msg, exc.pos) from None
            if end == len(self.buf) and not self.eof and not isinstance(obj, (dict, list, str)):
                self.more()  # a number or literal may continue past the window
                continue
            self.pos = end
            return obj


def _json_document_rows(stream: RecordStream, chunks: Chunks) -> Iterator[dict[str, Any]]:
    """Rows of a JSON array, one element at a time; an object (columns, or a wrapper) is read whole; a file of
    several objects (JSONL saved as .json) is read again as JSONL."""
    name = stream.name
    buf = _JsonBuffer(_text_chunks(chunks(), name), name)
    decoder = json.JSONDecoder()
    first = buf.skip_space()
    if first != "[":
        try:
            doc = buf.value(decoder)
            rest = buf.skip_space()
        except DataError:
            doc, rest = None, "x"
        if rest:  # not one JSON document: one object per line
            stream.kind = "jsonl"
            yield from _jsonl_rows(name, _lines(_text_chunks(chunks(), name)))
            return
        yield from _json_rows(name, doc)
        return
    buf.pos += 1
    number = 0
    if buf.skip_space() == "]":
        buf.pos += 1
    else:
        while True:
            buf.skip_space()
            element = buf.value(decoder)
            number += 1
            if not isinstance(element, dict):
                raise DataError(
                    f"{name}: element {number} of the array is a {type(element).__name__}, expected an "
                    "object (one per row)."
                )
            yield _clean_row(element)
            del element
            nxt = buf.skip_space()
            if nxt == ",":
                buf.pos += 1
                continue
            if nxt == "]":
                buf.pos += 1
                break
            raise buf.error("Expecting ',' delimiter", buf.pos)
    if buf.skip_space():
        raise buf.error("Extra data", buf.pos)


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
