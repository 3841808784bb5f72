"""Dataset formats: detect which one a file is in, propose a column mapping, and turn each row into an Example.

Formats (canonical fields in brackets; a mapping renames the user's columns to them, other columns are ignored):
  alpaca            [instruction, input?, output, system?]          -> system? / user / assistant messages
  prompt_completion [prompt, completion]                             -> user / assistant messages
  messages          [messages: list of {role, content}]              -> messages as given
  sharegpt          [conversations: list of {from, value}]           -> messages, role names mapped
  text              [text]                                           -> raw text (continued pre-training)
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from typing import Any

from core.datafiles import ROW_ERROR
from core.errors import DataError

Message = dict[str, str]
FORMATS = ("alpaca", "prompt_completion", "messages", "sharegpt", "text")
FIELDS: dict[str, tuple[str, ...]] = {
    "alpaca": ("instruction", "input", "output", "system"),
    "prompt_completion": ("prompt", "completion"),
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "text": ("text",),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "alpaca": ("instruction", "output"),
    "prompt_completion": ("prompt", "completion"),
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "text": ("text",),
}
# Column names people use for each canonical field (lower-case), first match wins.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "instruction": ("instruction", "instructions", "question", "query", "task"),
    "input": ("input", "context", "inputs"),
    "output": ("output", "response", "answer", "outputs", "target"),
    "system": ("system", "system_prompt"),
    "prompt": ("prompt",),
    "completion": ("completion", "chosen"),
    "messages": ("messages", "chat", "dialog", "dialogue"),
    "conversations": ("conversations", "conversation", "turns"),
    "text": ("text", "content", "document", "body"),
}
# ShareGPT and other exports name roles differently; these map to system / user / assistant.
ROLE_NAMES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "prompter": "user",
    "customer": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "ai": "assistant",
    "bard": "assistant",
    "claude": "assistant",
}
INSTRUCTION_FORMATS = ("alpaca", "prompt_completion", "messages", "sharegpt")
# Characters that show nothing: zero-width spaces and joiners, word joiner, BOM (also caught by category below).
INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff")
INVISIBLE_CATEGORIES = frozenset({"Cf", "Zs", "Zl", "Zp"})  # format characters and every kind of space


def is_blank(text: str) -> bool:
    """True when ``text`` holds nothing visible: only whitespace and invisible format or space characters.

    Args:
        text: a field's text.

    Returns:
        Whether the text is empty once whitespace, zero-width characters (U+200B-U+200D, U+2060, U+FEFF) and every
        character of Unicode category Cf, Zs, Zl or Zp are removed.
    """
    return all(
        ch.isspace() or ch in INVISIBLE or unicodedata.category(ch) in INVISIBLE_CATEGORIES for ch in text
    )


def empty_reason(name: str, text: str) -> str:
    """The "is empty" reason for a field, saying so when it holds only invisible characters."""
    if text.strip():
        return f"{name} is empty (it holds only invisible characters such as zero-width spaces)"
    return f"{name} is empty"


@dataclass(frozen=True)
class Example:
    """One normalised row: chat ``messages`` (instruction formats) or raw ``text`` (continued pre-training)."""

    messages: tuple[tuple[str, str], ...] = ()
    text: str | None = None

    @classmethod
    def from_messages(cls, messages: list[Message]) -> Example:
        """An Example from [{role, content}, ...]."""
        return cls(messages=tuple((m["role"], m["content"]) for m in messages))

    def as_messages(self) -> list[Message]:
        """Messages as dicts {role, content}."""
        return [{"role": r, "content": c} for r, c in self.messages]


def propose_mapping(columns: list[str], dataset_format: str) -> dict[str, str]:
    """{canonical field: column} for ``dataset_format``, matching column names case-insensitively via SYNONYMS."""
    lower = {c.lower().strip(): c for c in columns}
    mapping: dict[str, str] = {}
    for field_name in FIELDS[dataset_format]:
        for alias in SYNONYMS[field_name]:
            if alias in lower and lower[alias] not in mapping.values():
                mapping[field_name] = lower[alias]
                break
    return mapping


def _looks_like_turns(value: Any, keys: tuple[str, str]) -> bool:
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return False
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and keys[0] in m and keys[1] in m for m in value[:3])
    )


def detect_format(records: list[dict[str, Any]]) -> tuple[str, dict[str, str]]:
    """The format and proposed mapping of ``records`` (looks at column names, then at list-of-turn contents).

    When the columns fit several formats, the one whose required fields most rows hold (present and not null) wins,
    so a few odd rows cannot decide the format of the rest (``odd_rows`` names them).

    Raises:
        DataError: no format fits; the message lists the columns found and the ones expected.
    """
    sample = [r for r in records[:1000] if ROW_ERROR not in r]
    columns = list(dict.fromkeys(k for r in sample for k in r))
    fitting = []  # (rows holding every required field, format, mapping), in order of preference
    for fmt in ("messages", "sharegpt", "alpaca", "prompt_completion"):
        mapping = propose_mapping(columns, fmt)
        if all(f in mapping for f in REQUIRED[fmt]):
            held = sum(all(r.get(mapping[f]) is not None for f in REQUIRED[fmt]) for r in sample)
            fitting.append((held, fmt, mapping))
    if fitting:  # what most rows hold wins: one row's stray "messages": null does not make a file chat
        best = max(held for held, _, _ in fitting)
        _, fmt, mapping = next(f for f in fitting if f[0] == best)
        return fmt, mapping
    for col in columns:  # a chat column under another name
        values = [r.get(col) for r in sample[:20] if r.get(col) is not None]
        if values and all(_looks_like_turns(v, ("role", "content")) for v in values):
            return "messages", {"messages": col}
        if values and all(_looks_like_turns(v, ("from", "value")) for v in values):
            return "sharegpt", {"conversations": col}
    mapping = propose_mapping(columns, "text")
    if "text" in mapping:
        return "text", mapping
    if len(columns) == 1:
        return "text", {"text": columns[0]}
    raise DataError(
        f"Cannot tell the format from the columns {columns}. Use alpaca (instruction / input / output), "
        "prompt / completion, a chat column messages (list of {role, content}) or conversations (list of "
        "{from, value}), or a text column; or map your columns in the Data tab (dataset_column_mapping)."
    )


def odd_rows(records: list[dict[str, Any]], dataset_format: str, mapping: dict[str, str]) -> dict[int, str]:
    """Rows that carry a field of another format which most rows do not carry: {1-based row: why it is odd}.

    Such a row (an alpaca row with a stray ``"messages": null``) is read in the format of the rest; the reason says
    which field was ignored so the report can show it.

    Args:
        records: rows as read.
        dataset_format: the format the file is read as.
        mapping: {canonical field: column} in use.

    Returns:
        {row number: reason} for each odd row (empty when none).
    """
    rows = [r for r in records if ROW_ERROR not in r]
    if not rows:
        return {}
    used = set(mapping.values())
    columns = list(dict.fromkeys(k for r in rows for k in r))
    foreign: dict[str, str] = {}  # column -> the other format it belongs to
    for fmt in FORMATS:
        if fmt == dataset_format:
            continue
        for f, col in propose_mapping(columns, fmt).items():
            if f in REQUIRED[fmt] and col not in used:
                foreign.setdefault(col, fmt)
    out: dict[int, str] = {}
    for col, fmt in foreign.items():
        present = sum(col in r for r in rows)
        held = sum(r.get(col) is not None for r in rows)
        for i, r in enumerate(records, start=1):
            if ROW_ERROR in r or col not in r:
                continue
            value = r[col]
            if (present * 2 <= len(rows)) or (value is not None and held * 2 <= len(rows)):
                shown = "null" if value is None else "a value"
                out.setdefault(
                    i,
                    f"has a {col!r} field ({shown}) of the {fmt} format that most rows do not have; read as "
                    f"{dataset_format} like the other rows, that field is ignored",
                )
    return out


def check_mapping(columns: list[str], dataset_format: str, mapping: dict[str, str]) -> list[str]:
    """Problems with a user's mapping: unknown fields, columns not in the file, required fields missing."""
    problems = [
        f"{f!r} is not a field of {dataset_format} (fields: {', '.join(FIELDS[dataset_format])})"
        for f in mapping
        if f not in FIELDS[dataset_format]
    ]
    problems += [
        f"column {c!r} (for {f}) is not in the file; columns: {columns}"
        for f, c in mapping.items()
        if c and c not in columns
    ]
    problems += [
        f"{dataset_format} needs a column for {f!r}" for f in REQUIRED[dataset_format] if not mapping.get(f)
    ]
    used: dict[str, str] = {}
    for f, c in mapping.items():
        if c and c in used:
            problems.append(
                f"column {c!r} is mapped to both {used[c]} and {f}; give each field its own column"
            )
        used.setdefault(c, f)
    return problems


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _content_text(content: Any, j: int) -> str:
    """Message content as text: a string, or OpenAI-style parts [{"type": "text", "text": ...}] joined."""
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


def _turns(raw: Any, keys: tuple[str, str], field_name: str) -> list[Message]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError(f"{field_name} is text that is not a JSON list") from None
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{field_name} must be a non-empty list of {{{keys[0]}, {keys[1]}}}")
    msgs = []
    other = ("role", "content") if keys == ("from", "value") else ("from", "value")
    for j, m in enumerate(raw, start=1):
        if isinstance(m, dict) and keys[0] not in m and other[0] in m and other[1] in m:
            m = {keys[0]: m[other[0]], keys[1]: m[other[1]]}  # ShareGPT keys under "messages", or the reverse
        if not isinstance(m, dict) or keys[0] not in m or keys[1] not in m:
            raise ValueError(f"message {j} needs {keys[0]} and {keys[1]}")
        name = _text(m[keys[0]]).strip().lower()
        role = ROLE_NAMES.get(name)
        if role is None:
            raise ValueError(
                f"message {j} has role {m[keys[0]]!r}; use system, user or assistant "
                f"(also understood: {', '.join(k for k in ROLE_NAMES if k not in ('system', 'user', 'assistant'))})"
            )
        content = _content_text(m[keys[1]], j)
        if is_blank(content):
            raise ValueError(empty_reason(f"message {j} ({role})", content))
        msgs.append({"role": role, "content": content})
    return msgs


def normalise_row(
    record: dict[str, Any], dataset_format: str, mapping: dict[str, str], fold_system_message: bool = False
) -> Example:
    """One record as an Example. Raises ValueError naming the field at fault (the caller adds the row number)."""
    if ROW_ERROR in record:
        raise ValueError(record[ROW_ERROR])

    def get(field_name: str) -> Any:
        col = mapping.get(field_name)
        return record.get(col) if col else None

    if dataset_format == "text":
        text = _text(get("text"))
        if is_blank(text):
            raise ValueError(empty_reason(mapping.get("text", "text"), text))
        return Example(text=text)
    if dataset_format in ("alpaca", "prompt_completion"):
        user_f, out_f = ("instruction", "output") if dataset_format == "alpaca" else ("prompt", "completion")
        user, out = _text(get(user_f)).strip(), _text(get(out_f))
        inp, system = _text(get("input")).strip(), _text(get("system")).strip()
        inp, system = ("" if is_blank(inp) else inp), ("" if is_blank(system) else system)
        if is_blank(user):
            raise ValueError(empty_reason(mapping.get(user_f, user_f), user))
        if is_blank(out):
            raise ValueError(empty_reason(mapping.get(out_f, out_f), out))
        msgs = [{"role": "system", "content": system}] if system else []
        msgs += [
            {"role": "user", "content": f"{user}\n\n{inp}" if inp else user},
            {"role": "assistant", "content": out},
        ]
    elif dataset_format == "messages":
        msgs = _turns(get("messages"), ("role", "content"), mapping.get("messages", "messages"))
    else:
        msgs = _turns(get("conversations"), ("from", "value"), mapping.get("conversations", "conversations"))
    if (
        fold_system_message
        and msgs
        and msgs[0]["role"] == "system"
        and len(msgs) > 1
        and msgs[1]["role"] == "user"
    ):
        msgs = [{"role": "user", "content": f"{msgs[0]['content']}\n\n{msgs[1]['content']}"}, *msgs[2:]]
    if msgs[0]["role"] == "assistant":
        raise ValueError(
            "the conversation starts with an assistant turn; start with a user (or system) message"
        )
    if not any(m["role"] == "assistant" for m in msgs):
        raise ValueError("no assistant message to learn from")
    return Example(messages=tuple((m["role"], m["content"]) for m in msgs))


def alternation_problem(example: Example) -> str | None:
    """Why the roles of a chat do not alternate (user, assistant, user ... after an optional system), or None."""
    roles = [r for r, _ in example.messages]
    if roles and roles[0] == "system":
        roles = roles[1:]
    for i, role in enumerate(roles):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            return f"roles do not alternate: turn {i + 1} is {role}, expected {expected}"
    return None


def require_usable_format(dataset_format: str, requested: str, columns: list[str]) -> None:
    """Explain, rather than accept, raw text chosen for instruction tuning and vice versa.

    Raises:
        DataError: the file is raw text but an instruction format was requested, or the reverse.
    """
    if requested in INSTRUCTION_FORMATS and dataset_format == "text":
        raise DataError(
            f"This file holds raw text (columns {columns}), not instruction / answer pairs, so "
            f"{requested} cannot be used: there is no answer to learn. Choose format 'text' for "
            "continued pre-training, or a file with instruction and output columns."
        )
