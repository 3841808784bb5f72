"""Read a dataset file (or hub dataset) into a list of row dicts with every value a string, list, dict or None.

Files: CSV, TSV, JSON (array of objects, or object of equal-length column arrays), JSONL, Parquet, XLSX, with the
extension in any case and the content sniffed when the extension is missing or lies; any of them gzip-compressed or
alone in a zip archive (recognised by their first bytes). Other compression (bz2, xz, zstd, tar, 7z, rar) is refused
by name. A header that names a column twice is recorded (``duplicate_columns``) so the caller can refuse or map it. Text may be UTF-8 (with or
without BOM) or UTF-16 (BOM); CRLF line ends and quoted newlines are fine. Header names are cleaned of control
characters and surrounding spaces. Numbers in text columns become text; rows whose fields cannot be split become an
``{ROW_ERROR: reason}`` placeholder so they are reported by row number, never silently shifted.

The rows are read as a stream by core.readers (core.textrows for the text kinds); ``read_records`` gathers them
into a list for training, and validation (core.validation) consumes the stream without keeping it. This module holds
the shared pieces: kind sniffing, header and cell cleaning, compression refusals, XLSX and hub datasets.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import DataError
from core.hub import dataset_unreachable_message, unreachable_reason

ROW_ERROR = "__row_error__"  # key of a placeholder record for a row the reader could not split into fields
TEXT_KINDS = ("csv", "tsv", "json", "jsonl")
KINDS = (*TEXT_KINDS, "parquet", "xlsx")
SUFFIX_KIND = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xlsx": "xlsx",
    ".gz": "gzip",  # any of the kinds above, compressed
    ".zip": "zip",  # an archive holding one data file
}
# First bytes of compressed or archive formats that are not read, and how to name them (bzip2 and tar: _magic_name).
OTHER_COMPRESSION = (
    (b"\xfd7zXZ\x00", "xz (.xz)"),
    (b"\x28\xb5\x2f\xfd", "zstandard (.zst)"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip (.7z)"),
    (b"Rar!\x1a\x07", "RAR (.rar)"),
    (b"\x04\x22\x4d\x18", "LZ4 (.lz4)"),
)
DEFAULT_MAX_BYTES = 2 * 2**30  # the CLI's limit; the UI passes its upload limit
NO_DATASET = "No dataset chosen: upload a file or pick a sample in the Data tab."


def require_dataset(source: str | None) -> str:
    """``source`` without surrounding spaces, checked to name something.

    An empty or blank name (the Data tab emptied by a page reload, a config file without ``dataset_name``) would
    otherwise be read as the current folder ("": is a folder with no data files) or as a missing file named " ".

    Raises:
        DataError: ``source`` is None, empty or only whitespace (NO_DATASET, the same text everywhere).
    """
    name = (source or "").strip()
    if not name:
        raise DataError(NO_DATASET)
    return name


def is_hub_id(source: str) -> bool:
    """``owner/name`` (no file suffix, not a path that exists) looks like a hub dataset id."""
    s = source.strip()
    return (
        s.count("/") == 1
        and not s.startswith((".", "/", "~"))
        and not Path(s).suffix
        and not Path(s).exists()
    )


def read_records(
    source: str, *, split: str = "train", config_name: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[list[dict[str, Any]], str]:
    """Every row of a file or hub dataset as a list, and the kind that was read ("csv", "tsv", "json", "jsonl",
    "parquet", "xlsx", "hub", "folder"). Training needs the whole list; validation streams (core.readers).

    Args:
        source: file path or hub dataset id (``owner/name``).
        split / config_name: for hub datasets (``datasets.load_dataset(source, config_name, split=split)``).
        max_bytes: files larger than this (also once decompressed) are refused with a readable message, in bytes.

    Raises:
        DataError: no dataset named (NO_DATASET), missing file, folder, too large, unknown or unparseable content
            (line / row named).
    """
    from core.readers import open_records

    source = require_dataset(source)
    stream = open_records(source, split=split, config_name=config_name, max_bytes=max_bytes)
    out = _Rows(stream.rows)
    out.duplicates = stream.duplicates
    return out, stream.kind


def duplicate_columns(records: list[dict[str, Any]]) -> dict[str, list[tuple[int, str]]]:
    """Header names a file gives to more than one column: {name: [(1-based column number, column key), ...]}.

    The reader keeps every such column under a distinct key (``output``, ``output.1`` ...); this says which keys share
    one name in the file, so a message can name both and the user can map the one they mean.

    Args:
        records: rows returned by ``read_records``.

    Returns:
        The repeated names (empty when every header name is distinct, or the file kind has no header row).
    """
    return dict(getattr(records, "duplicates", {}))


class _Rows(list):  # type: ignore[type-arg]
    """A list of rows that also carries the header's repeated names (see ``duplicate_columns``)."""

    duplicates: dict[str, list[tuple[int, str]]]


def _magic_name(raw: bytes) -> str | None:
    """The compression or archive format that the first bytes show, when it is one that is not read."""
    if raw[:3] == b"BZh" and raw[3:4].isdigit() and raw[4:10] in (b"1AY&SY", b"\x17rE8P\x90"):
        return "bzip2 (.bz2)"
    for magic, name in OTHER_COMPRESSION:
        if raw.startswith(magic):
            return name
    if raw[257:262] == b"ustar":
        return "a tar archive (.tar)"
    return None


def _refuse_compression(name: str, what: str) -> DataError:
    return DataError(
        f"{name}: is {what}, which is not read; decompress it (or compress it with gzip or zip instead) and "
        "upload the CSV, TSV, JSON, JSONL, Parquet or XLSX file."
    )


def _inner_suffix(name: str) -> str:
    """The data suffix of a file name once a compression suffix is taken off (``a.jsonl.gz`` -> ``.jsonl``)."""
    stem = Path(name)
    while stem.suffix.lower() in (".gz", ".gzip", ".zip"):
        stem = Path(stem.stem)
    return stem.suffix.lower()


def _is_data_member(info: zipfile.ZipInfo) -> bool:
    """A zip member that is a data file: not a folder, not macOS/hidden bookkeeping, with a known data suffix."""
    parts = Path(info.filename).parts
    if info.is_dir() or not parts or "__MACOSX" in parts or parts[-1].startswith("."):
        return False
    return _inner_suffix(parts[-1]) in SUFFIX_KIND and SUFFIX_KIND[_inner_suffix(parts[-1])] in KINDS


def sniff_kind(raw: bytes, suffix: str) -> str:
    """File kind from its first bytes, falling back to the extension: binary signatures win over a wrong suffix."""
    if raw[:4] == b"PAR1":
        return "parquet"
    if raw[:2] == b"PK":
        return "xlsx"
    head = raw[:4096]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16: judge the decoded text
        head = head.decode("utf-16", errors="ignore").encode("utf-8")
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    by_suffix = SUFFIX_KIND.get(suffix)
    if text.startswith(b"["):
        return "json"
    if text.startswith(b"{"):
        first_line = text.split(b"\n", 1)[0].strip()
        return (
            "jsonl"
            if first_line.endswith(b"}") and by_suffix != "json"
            else ("json" if by_suffix == "json" else "jsonl")
        )
    if by_suffix in TEXT_KINDS:
        return by_suffix
    if by_suffix in ("parquet", "xlsx"):
        raise DataError(
            f"file ends in {suffix} but is not a {by_suffix} file (its first bytes do not match)."
        )
    first = text.split(b"\n", 1)[0]
    if b"\t" in first:
        return "tsv"
    if b"," in first:
        return "csv"
    raise DataError(
        f"cannot tell the file type{' of ' + suffix if suffix else ''}: use CSV, TSV, JSON, JSONL, "
        "Parquet or XLSX."
    )


def decode_text(raw: bytes, name: str) -> str:
    """Bytes as text: UTF-16 when it starts with a UTF-16 BOM, else UTF-8 (a BOM is dropped); CRLF becomes LF."""
    try:
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            text = raw.decode("utf-16")
        else:
            text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{name}: not UTF-8 or UTF-16 text (byte {exc.start}); save it as UTF-8 and upload again."
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def clean_header(name: Any) -> str:
    """A column name without control characters, zero-width characters or surrounding spaces."""
    return "".join(ch for ch in str(name) if ch.isprintable() and ch not in "\u200b\ufeff").strip()


def to_text(value: Any) -> Any:
    """Normalise a cell: None / NaN -> None; numbers and booleans -> their text; strings, lists, dicts kept."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)) or hasattr(value, "tolist"):
        return _plain(value)
    return str(value)


def _plain(value: Any) -> Any:
    """Nested numpy arrays / scalars (Parquet list and struct columns) as plain lists, dicts and Python values."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _clean_row(row: dict[str, Any]) -> dict[str, Any]:
    return {clean_header(k): to_text(v) for k, v in row.items()}


def _json_rows(name: str, data: Any) -> list[dict[str, Any]]:
    """Rows from a parsed JSON document: an array of objects, or an object of equal-length arrays (columns)."""
    if isinstance(data, list):
        bad = next((i for i, r in enumerate(data, start=1) if not isinstance(r, dict)), None)
        if bad is not None:
            raise DataError(
                f"{name}: element {bad} of the array is a {type(data[bad - 1]).__name__}, expected an "
                "object (one per row)."
            )
        return [_clean_row(r) for r in data]
    if isinstance(data, dict):
        wrapped = [
            v for v in data.values() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)
        ]
        if len(wrapped) == 1:  # {"data": [...rows...]} and similar wrappers
            return _json_rows(name, wrapped[0])
        columns = {k: v for k, v in data.items() if isinstance(v, list)}
        lengths = {len(v) for v in columns.values()}
        if columns and len(columns) == len(data) and len(lengths) == 1:
            n = lengths.pop()
            return [_clean_row({k: v[i] for k, v in columns.items()}) for i in range(n)]
        raise DataError(
            f"{name}: a JSON object with keys {sorted(data)[:8]}; expected an array of row objects or an "
            "object whose values are equal-length column arrays."
        )
    raise DataError(f"{name}: expected a JSON array of objects (one per row).")


def _dedupe(names: list[str]) -> list[str]:
    """Repeated column names get .1, .2 ... as pandas names them, so no column silently replaces another."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            seen[n] += 1
            out.append(f"{n}.{seen[n]}")
        else:
            seen[n] = 0
            out.append(n)
    return out


def _read_xlsx(name: str, raw: bytes) -> list[dict[str, Any]]:
    import pandas as pd

    try:
        frame = pd.read_excel(io.BytesIO(raw), sheet_name=0, dtype=object)
    except Exception as exc:
        raise DataError(f"{name}: cannot read as an Excel workbook ({exc}).") from None
    return [_clean_row(r) for r in frame.to_dict(orient="records")]


def _read_hub_rows(dataset_id: str, split: str, config_name: str | None) -> Iterator[dict[str, Any]]:
    """Rows of a hub dataset (or saved dataset folder), one at a time from its memory-mapped Arrow table.

    Raises:
        DataError: the dataset cannot be loaded (raised here, before any row is read); when the hub cannot be
            reached the message says so first (core.hub.dataset_unreachable_message).
    """
    try:
        import datasets

        ds = datasets.load_dataset(dataset_id, config_name, split=split)
    except Exception as exc:
        reason = unreachable_reason(exc)
        if reason is not None:  # the hub first, the library's words below
            raise DataError(dataset_unreachable_message(dataset_id, reason, exc)) from None
        raise DataError(
            f"{dataset_id}: could not load this hub dataset (split {split!r}"
            f"{', config ' + repr(config_name) if config_name else ''}): {exc}. Check the id, split and "
            "config, or give a file path instead."
        ) from None
    return (_clean_row(dict(r)) for r in ds)
