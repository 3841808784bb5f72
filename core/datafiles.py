"""Read a dataset file (or hub dataset) into a list of row dicts with every value a string, list, dict or None.

Files: CSV, TSV, JSON (array of objects, or object of equal-length column arrays), JSONL, Parquet, XLSX, with the
extension in any case and the content sniffed when the extension is missing or lies. Text may be UTF-8 (with or
without BOM) or UTF-16 (BOM); CRLF line ends and quoted newlines are fine. Header names are cleaned of control
characters and surrounding spaces. Numbers in text columns become text; rows whose fields cannot be split become an
``{ROW_ERROR: reason}`` placeholder so they are reported by row number, never silently shifted.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from core.errors import DataError

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
}
DEFAULT_MAX_BYTES = 2 * 2**30  # the CLI's limit; the UI passes its upload limit


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
    """Rows of a file or hub dataset, and the kind that was read ("csv", "tsv", "json", "jsonl", "parquet", "xlsx",
    "hub").

    Args:
        source: file path or hub dataset id (``owner/name``).
        split / config_name: for hub datasets (``datasets.load_dataset(source, config_name, split=split)``).
        max_bytes: files larger than this are refused with a readable message before reading.

    Raises:
        DataError: missing file, folder, too large, unknown or unparseable content (line / row named).
    """
    if is_hub_id(source):
        return _read_hub(source, split, config_name), "hub"
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"{source}: file not found.")
    if path.is_dir():
        if any(
            p.suffix.lower() in SUFFIX_KIND for p in path.iterdir()
        ):  # a saved dataset folder (split files)
            return _read_hub(str(path), split, config_name), "folder"
        raise DataError(
            f"{source}: is a folder with no data files; choose a CSV, TSV, JSON, JSONL, Parquet or XLSX file."
        )
    size = path.stat().st_size
    if size > max_bytes:
        raise DataError(
            f"{path.name}: {size / 2**20:,.0f} MiB is over the {max_bytes / 2**20:,.0f} MiB limit; split "
            "the file or use the CLI (launch.py train), which reads larger files."
        )
    raw = path.read_bytes()
    try:
        kind = sniff_kind(raw, path.suffix.lower())
    except DataError as exc:
        raise DataError(f"{path.name}: {exc}") from None
    if kind == "parquet":
        return _read_parquet(path), kind
    if kind == "xlsx":
        return _read_xlsx(path), kind
    text = decode_text(raw, path.name)
    if kind in ("csv", "tsv"):
        return _read_delimited(path.name, text, "\t" if kind == "tsv" else ","), kind
    if kind == "json":
        try:
            return _json_rows(path.name, json.loads(text)), kind
        except json.JSONDecodeError as exc:
            if text.lstrip().startswith("["):
                raise DataError(
                    f"{path.name}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})."
                ) from None
            kind = "jsonl"  # one object per line saved as .json
    return _read_jsonl(path.name, text), kind


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


def _read_jsonl(name: str, text: str) -> list[dict[str, Any]]:
    records = []
    for lineno, line in enumerate(text.split("\n"), start=1):
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
        records.append(_clean_row(obj))
    return records


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


def _read_delimited(name: str, text: str, delimiter: str) -> list[dict[str, Any]]:
    """CSV / TSV rows. CSV: quoted fields may hold delimiters and newlines, and the delimiter is the header's most
    frequent of , ; | (European spreadsheets export with ;). TSV: no quoting, as the format defines. A row with the
    wrong number of fields becomes a ROW_ERROR placeholder; an unclosed quote is an error naming its line."""
    header_line = text.split("\n", 1)[0]
    if delimiter == ",":
        delimiter = max(",;|", key=header_line.count) if any(c in header_line for c in ",;|") else ","
    kind = "TSV" if delimiter == "\t" else "CSV"
    csv.field_size_limit(2**31 - 1)  # the default 128 KiB refuses long answers
    stream = io.StringIO(text, newline="")
    if delimiter == "\t":
        reader = csv.reader(stream, delimiter=delimiter, quoting=csv.QUOTE_NONE, strict=True)
    else:
        reader = csv.reader(stream, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL, strict=True)
    rows: list[list[str]] = []
    line = 1
    try:
        for fields in reader:
            line = reader.line_num + 1
            if fields and fields != [""]:  # a blank line is not a row; a row of empty fields is
                rows.append(fields)
    except csv.Error as exc:
        raise DataError(
            f"{name}: cannot parse as {kind} at line {line} ({exc}); a quote is probably opened and "
            'never closed: write a quote inside a quoted field as two quotes ("").'
        ) from None
    if not rows:
        return []
    header = _dedupe([clean_header(h) for h in rows[0]])
    sep = {"\t": "tabs", ",": "commas", ";": "semicolons", "|": "bars"}[delimiter]
    records: list[dict[str, Any]] = []
    for fields in rows[1:]:
        if len(fields) != len(header):
            records.append(
                {
                    ROW_ERROR: f"has {len(fields)} fields but the header has {len(header)}; put text that "
                    f"contains {sep} in double quotes"
                }
            )
        else:
            records.append({h: (f if f != "" else None) for h, f in zip(header, fields)})
    return records


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


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as exc:
        raise DataError(f"{path.name}: cannot read as Parquet ({exc}).") from None
    return [_clean_row(r) for r in frame.to_dict(orient="records")]


def _read_xlsx(path: Path) -> list[dict[str, Any]]:
    import pandas as pd

    try:
        frame = pd.read_excel(path, sheet_name=0, dtype=object)
    except Exception as exc:
        raise DataError(f"{path.name}: cannot read as an Excel workbook ({exc}).") from None
    return [_clean_row(r) for r in frame.to_dict(orient="records")]


def _read_hub(dataset_id: str, split: str, config_name: str | None) -> list[dict[str, Any]]:
    try:
        import datasets

        ds = datasets.load_dataset(dataset_id, config_name, split=split)
    except Exception as exc:
        raise DataError(
            f"{dataset_id}: could not load this hub dataset (split {split!r}"
            f"{', config ' + repr(config_name) if config_name else ''}): {exc}. Check the id, split and "
            "config, your network, or give a file path instead."
        ) from None
    return [_clean_row(dict(r)) for r in ds]
