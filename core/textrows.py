"""Rows out of decoded text, one at a time: JSONL lines, CSV / TSV records, JSON array elements.

The text comes in chunks (``_text_chunks`` decodes UTF-8 / UTF-16 and turns CRLF and CR into LF as it goes), so a
200 MB file never sits in memory whole. A JSON array is read element by element with ``json.JSONDecoder.raw_decode``
on a sliding window (``_JsonBuffer``) that remembers the line and column where it starts, so an error still names
them as ``json.loads`` would for the whole file. Used by core.readers.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from core.datafiles import ROW_ERROR, _clean_row, _dedupe, _json_rows, clean_header
from core.errors import DataError

if TYPE_CHECKING:
    from core.readers import RecordStream

CHUNK_BYTES = 1 << 20  # bytes read at a time from the (decompressed) file
Chunks = Callable[[], Iterator[bytes]]


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
        # one broken line is that row's problem, reported by number, not the whole file's (a 200 MB upload with
        # one bad line used to be refused entirely)
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            what = exc.msg.removesuffix(" at").removesuffix(":")  # "Invalid control character at"
            yield {
                ROW_ERROR: f"line {lineno} is not valid JSON at column {exc.colno} ({what}); fix or remove it"
            }
            continue
        if not isinstance(obj, dict):
            yield {
                ROW_ERROR: f"line {lineno} is a JSON {type(obj).__name__}, not an object; fix or remove it"
            }
            continue
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
