"""Read a dataset file, detect its format, normalise rows to chat messages, and tokenize with a label mask.

Formats: alpaca (``instruction`` / optional ``input`` / ``output``, optional ``system``) and chat ``messages``
(a list of ``{"role", "content"}``). Every row becomes a list of messages; tokenization renders it through the
model's chat template and trains only on assistant turns (their end-of-turn token included).
Row numbers in messages are 1-based data rows (the CSV header and JSON brackets are not rows).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

Message = dict[str, str]
ROLES = ("system", "user", "assistant")
SUPPORTED_SUFFIXES = (".csv", ".json", ".jsonl")
ROW_ERROR = "__row_error__"  # key of a placeholder record for a row the reader could not split into fields
# Used only when a tokenizer has no chat template (base models): the Alpaca prompt format (Taori et al. 2023).
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}### Instruction:\n{{ m['content'] }}\n\n"
    "{% else %}### Response:\n{{ m['content'] }}{{ eos_token }}\n\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}### Response:\n{% endif %}"
)


@dataclass
class DatasetReport:
    """A loaded, normalised dataset and what happened to each row.

    Attributes:
        source: file path or hub id.
        dataset_format: "alpaca" or "messages".
        rows_read: rows in the file.
        conversations: usable rows, each a list of messages.
        row_numbers: the 1-based file row of each usable conversation.
        dropped: (row number, reason) for each row left out.
        preview: pandas DataFrame of the first normalised rows (for the UI table).
    """

    source: str
    dataset_format: str
    rows_read: int
    conversations: list[list[Message]]
    row_numbers: list[int]
    dropped: list[tuple[int, str]] = field(default_factory=list)
    preview: Any = None

    def summary(self) -> str:
        """One paragraph: format, counts, and the first few dropped rows with reasons."""
        text = (
            f"{self.source}: {self.dataset_format} format, {self.rows_read} rows read, "
            f"{len(self.conversations)} usable, {len(self.dropped)} dropped."
        )
        for row, reason in self.dropped[:5]:
            text += f"\n  row {row}: {reason}"
        if len(self.dropped) > 5:
            text += f"\n  ... and {len(self.dropped) - 5} more."
        return text


def read_records(source: str) -> list[dict[str, Any]]:
    """Read a CSV, JSON (array of objects) or JSONL file, or a hub dataset id, into a list of dicts.

    Raises:
        DataError: missing file, unsupported extension, or a line / row that cannot be parsed (named).
    """
    path = Path(source).expanduser()
    if not path.exists():
        if source.count("/") == 1 and not source.startswith((".", "/", "~")) and not path.suffix:
            return _read_hub(source)
        raise DataError(f"{source}: file not found.")
    if path.is_dir():
        raise DataError(f"{source}: is a folder; choose a CSV, JSON or JSONL file.")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataError(f"{path.name}: unsupported file type {suffix or '(none)'}; use CSV, JSON or JSONL.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path.name}: not UTF-8 text (byte {exc.start}); save it as UTF-8 and upload again."
        ) from None
    if suffix == ".csv":
        return _read_csv(path, text)
    if suffix == ".json":
        try:
            return _json_rows(path, json.loads(text))
        except json.JSONDecodeError as exc:
            if text.lstrip().startswith("["):
                raise DataError(
                    f"{path.name}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})."
                ) from None
            # not one JSON document: maybe JSON Lines saved as .json
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path.name}: line {lineno} is not valid JSON ({exc.msg}, column {exc.colno})."
            ) from None
        if not isinstance(obj, dict):
            raise DataError(f"{path.name}: line {lineno} is a {type(obj).__name__}, expected a JSON object.")
        records.append(obj)
    return records


def _json_rows(path: Path, data: Any) -> list[dict[str, Any]]:
    """Rows from a parsed JSON document: an array of objects, or an object of equal-length arrays (columns)."""
    if isinstance(data, list):
        bad = next((i for i, r in enumerate(data, start=1) if not isinstance(r, dict)), None)
        if bad is not None:
            raise DataError(
                f"{path.name}: element {bad} of the array is a {type(data[bad - 1]).__name__}, "
                "expected an object (one per row)."
            )
        return data
    if isinstance(data, dict):
        columns = {k: v for k, v in data.items() if isinstance(v, list)}
        lengths = {len(v) for v in columns.values()}
        if columns and len(columns) == len(data) and len(lengths) == 1:
            n = lengths.pop()
            return [{k: v[i] for k, v in columns.items()} for i in range(n)]
        raise DataError(
            f"{path.name}: a JSON object with keys {sorted(data)[:8]}; expected an array of row objects "
            "or an object whose values are equal-length column arrays."
        )
    raise DataError(f"{path.name}: expected a JSON array of objects (one per row).")


def _read_csv(path: Path, text: str) -> list[dict[str, Any]]:
    """Rows of a CSV (quoted fields may hold commas and newlines). A row with the wrong number of fields becomes
    an ``{ROW_ERROR: reason}`` placeholder, so it is reported by row number instead of shifting columns."""
    import csv
    import io

    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise DataError(f"{path.name}: cannot parse as CSV ({exc}).") from None
    rows = [r for r in rows if any(f.strip() for f in r)]
    if not rows:
        return []
    header = ["".join(ch for ch in h if ch.isprintable()).strip() for h in rows[0]]
    records: list[dict[str, Any]] = []
    for fields in rows[1:]:
        if len(fields) != len(header):
            records.append(
                {
                    ROW_ERROR: f"has {len(fields)} fields but the header has {len(header)}; put text that "
                    "contains commas in double quotes"
                }
            )
        else:
            records.append(dict(zip(header, fields)))
    return records


def _read_hub(dataset_id: str) -> list[dict[str, Any]]:
    try:
        import datasets

        ds = datasets.load_dataset(dataset_id, split="train")
    except Exception as exc:
        raise DataError(
            f"{dataset_id}: could not load this hub dataset ({exc}). Give a file path instead."
        ) from None
    return [dict(r) for r in ds]


def detect_format(records: list[dict[str, Any]]) -> str:
    """ "messages" if rows have a ``messages`` list, "alpaca" if they have instruction + output; else DataError."""
    keys = set().union(*(r.keys() for r in records[:100] if ROW_ERROR not in r)) if records else set()
    if "messages" in keys:
        return "messages"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    raise DataError(
        f"Cannot tell the format from the columns {sorted(keys)}. Use alpaca columns instruction / input / output "
        "or a chat column messages (a list of {role, content})."
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from pandas
        return ""
    return str(value)


def _content_text(content: Any, j: int) -> str:
    """Message content as text: a string, or OpenAI-style parts [{"type": "text", "text": ...}] joined.
    Raises ValueError for non-text parts (images, audio) or other structures."""
    if isinstance(content, (dict, list)):
        parts = content if isinstance(content, list) else [content]
        texts = []
        for part in parts:
            if isinstance(part, str):
                texts.append(part)
            elif (
                isinstance(part, dict)
                and part.get("type", "text") == "text"
                and isinstance(part.get("text"), str)
            ):
                texts.append(part["text"])
            else:
                kind = part.get("type", "unknown") if isinstance(part, dict) else type(part).__name__
                raise ValueError(f"message {j} has a {kind!r} part; only text can be trained on")
        return "\n".join(texts)
    return _text(content)


def normalise_row(record: dict[str, Any], dataset_format: str) -> list[Message]:
    """One record as a list of messages. Raises ValueError with the field at fault."""
    if ROW_ERROR in record:
        raise ValueError(record[ROW_ERROR])
    if dataset_format == "alpaca":
        instruction, inp, out = (_text(record.get(k)).strip() for k in ("instruction", "input", "output"))
        if not instruction:
            raise ValueError("instruction is empty")
        if not out:
            raise ValueError("output is empty")
        msgs: list[Message] = []
        if _text(record.get("system")).strip():
            msgs.append({"role": "system", "content": _text(record["system"]).strip()})
        msgs.append({"role": "user", "content": f"{instruction}\n\n{inp}" if inp else instruction})
        msgs.append({"role": "assistant", "content": out})
        return msgs
    raw = record.get("messages")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError("messages is text that is not a JSON list") from None
    if not isinstance(raw, list) or not raw:
        raise ValueError("messages must be a non-empty list of {role, content}")
    msgs = []
    for j, m in enumerate(raw, start=1):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"message {j} needs role and content")
        role = _text(m["role"]).strip().lower()
        if role not in ROLES:
            raise ValueError(f"message {j} has role {m['role']!r}; use system, user or assistant")
        content = _content_text(m["content"], j)
        if not content.strip():
            raise ValueError(f"message {j} ({role}) is empty")
        msgs.append({"role": role, "content": content})
    if msgs[0]["role"] == "assistant":
        raise ValueError(
            "the conversation starts with an assistant turn; start with a user (or system) message"
        )
    if not any(m["role"] == "assistant" for m in msgs):
        raise ValueError("no assistant message to learn from")
    return msgs


def load_conversations(source: str, dataset_format: str = "auto") -> DatasetReport:
    """Read ``source`` and normalise every row; rows that cannot be used are listed, not fatal.

    Raises:
        DataError: unreadable file, unknown format, or zero usable rows (with the first reasons).
    """
    records = read_records(source)
    if not records:
        raise DataError(f"{source}: the file has no rows.")
    fmt = detect_format(records) if dataset_format == "auto" else dataset_format
    convs, numbers, dropped = [], [], []
    for i, rec in enumerate(records, start=1):
        try:
            convs.append(normalise_row(rec, fmt))
            numbers.append(i)
        except ValueError as exc:
            dropped.append((i, str(exc)))
    report = DatasetReport(
        Path(source).name if Path(source).exists() else source, fmt, len(records), convs, numbers, dropped
    )
    if not convs:
        raise DataError(f"No usable rows. {report.summary()}")
    report.preview = preview_frame(convs, numbers)
    return report


def preview_frame(convs: list[list[Message]], numbers: list[int], limit: int = 50) -> pd.DataFrame:
    """Table of the first ``limit`` normalised rows: row, system, user, assistant (turns joined)."""
    import pandas as pd

    def join(msgs: list[Message], role: str) -> str:
        return "\n---\n".join(m["content"] for m in msgs if m["role"] == role)

    return pd.DataFrame(
        [
            {
                "row": n,
                "system": join(c, "system"),
                "user": join(c, "user"),
                "assistant": join(c, "assistant"),
                "turns": len(c),
            }
            for c, n in zip(convs[:limit], numbers[:limit])
        ]
    )


def ensure_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Give a template-less tokenizer the Alpaca-style fallback. Returns True when it had its own."""
    if getattr(tokenizer, "chat_template", None):
        return True
    tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return False


def tokenize_conversation(
    tokenizer: PreTrainedTokenizerBase, messages: list[Message], max_length: int
) -> tuple[list[int], list[int]]:
    """Token ids and labels for one conversation; labels are -100 outside assistant turns.

    Each assistant turn's span is the text between the prompt rendered with ``add_generation_prompt=True`` and
    the conversation rendered through that turn, so the template's end-of-turn token (EOS for SmolLM2) is a label
    even when it doubles as the pad token. Truncates to ``max_length`` tokens.

    Returns:
        (input_ids, labels), each of length <= max_length.

    Raises:
        ValueError: the chat template rewrites earlier turns, so spans cannot be located.
    """

    def render(msgs: list[Message], **kwargs: Any) -> str:
        return str(tokenizer.apply_chat_template(msgs, tokenize=False, **kwargs))

    full = render(messages)
    spans = []
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render(messages[:k], add_generation_prompt=True) if k else ""
        through = render(messages[: k + 1])
        if not through.startswith(before) or not full.startswith(through):
            raise ValueError("the chat template changes earlier turns; cannot locate the answer tokens")
        spans.append((len(before), len(through)))
    enc = tokenizer(
        full, add_special_tokens=False, return_offsets_mapping=True, truncation=True, max_length=max_length
    )
    labels = [
        tok if any(s <= start < e for s, e in spans) else -100
        for tok, (start, _end) in zip(enc["input_ids"], enc["offset_mapping"])
    ]
    return list(enc["input_ids"]), labels


def tokenize_report(
    report: DatasetReport, tokenizer: PreTrainedTokenizerBase, max_length: int
) -> tuple[list[dict[str, list[int]]], list[tuple[int, str]]]:
    """Tokenize every usable conversation; rows whose answer is truncated away are dropped and listed.

    Returns:
        (features, dropped): features are {"input_ids", "attention_mask", "labels"} dicts; dropped is
        [(row number, reason)].

    Raises:
        DataError: no row keeps a supervised token.
    """
    ensure_chat_template(tokenizer)
    features, dropped = [], []
    for conv, row in zip(report.conversations, report.row_numbers):
        try:
            ids, labels = tokenize_conversation(tokenizer, conv, max_length)
        except ValueError as exc:
            dropped.append((row, str(exc)))
            continue
        if all(lab == -100 for lab in labels):
            dropped.append((row, f"the answer starts after max_length={max_length} tokens; raise max_length"))
            continue
        features.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    if not features:
        raise DataError(
            "No row has answer tokens within max_length. "
            + "; ".join(f"row {r}: {why}" for r, why in dropped[:3])
        )
    return features, dropped
