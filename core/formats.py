"""Dataset formats: detect which one a file is in, propose a column mapping, and turn each row into an Example.

Formats (canonical fields in brackets; a mapping renames the user's columns to them, other columns are ignored):
  alpaca            [instruction, input?, output, system?]          -> system? / user / assistant messages
  prompt_completion [prompt, completion]                             -> user / assistant messages
  messages          [messages: list of {role, content}, tools?]      -> messages as given
  sharegpt          [conversations: list of {from, value}, tools?]   -> messages, role names mapped
  text              [text]                                           -> raw text (continued pre-training)

Chat turns may carry tool calls, tool results and reasoning (core.chat_turns reads them); ``tools`` is a row's list of
tool schemas. Whether the model's chat template renders them is checked when rows are tokenized (core.tokenization).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from core.chat_turns import Turn, as_text, empty_reason, is_blank, parse_turns, tool_schemas
from core.datafiles import ROW_ERROR
from core.errors import DataError

Message = dict[str, Any]
FORMATS = ("alpaca", "prompt_completion", "messages", "sharegpt", "text")
FIELDS: dict[str, tuple[str, ...]] = {
    "alpaca": ("instruction", "input", "output", "system"),
    "prompt_completion": ("prompt", "completion"),
    "messages": ("messages", "tools"),
    "sharegpt": ("conversations", "tools"),
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
    "tools": ("tools", "functions"),
}
INSTRUCTION_FORMATS = ("alpaca", "prompt_completion", "messages", "sharegpt")


@dataclass(frozen=True)
class Example:
    """One normalised row: chat ``messages`` (instruction formats) or raw ``text`` (continued pre-training).

    Attributes:
        messages: (role, text) per turn; role is system, user, assistant or tool.
        text: the raw text of a continued pre-training row (None for chat rows).
        extras: per turn, a JSON object of what it carries beyond its text (``tool_calls``, ``reasoning_content``,
            ``tool_call_id``, ``name``; "" for nothing); empty when no turn carries anything.
        tools: JSON list of the tool schemas the row offers the model ("" for none).
    """

    messages: tuple[tuple[str, str], ...] = ()
    text: str | None = None
    extras: tuple[str, ...] = ()
    tools: str = ""

    @classmethod
    def from_messages(cls, messages: list[Message], tools: list[Turn] | None = None) -> Example:
        """An Example from [{role, content, tool_calls?, reasoning_content?, ...}, ...] and the row's tool schemas."""
        extra = [{k: v for k, v in m.items() if k not in ("role", "content")} for m in messages]
        return cls(
            messages=tuple((m["role"], m["content"]) for m in messages),
            extras=tuple(json.dumps(e, ensure_ascii=False) if e else "" for e in extra) if any(extra) else (),
            tools=json.dumps(tools, ensure_ascii=False) if tools else "",
        )

    def as_messages(self) -> list[Message]:
        """Messages as dicts {role, content, ...and what each turn carries (tool_calls, reasoning_content ...)}."""
        out: list[Message] = [{"role": r, "content": c} for r, c in self.messages]
        for message, extra in zip(out, self.extras):
            if extra:
                message.update(json.loads(extra))
        return out

    def tool_schemas(self) -> list[Turn] | None:
        """The row's tool schemas, or None when it offers none."""
        return json.loads(self.tools) if self.tools else None

    def shown_messages(self) -> list[tuple[str, str]]:
        """(role, text) per turn for people to read: tool calls as ``-> name({arguments})`` after the text, a tool's
        result as ``<- result``, and reasoning before the text in ``<think>`` tags, so a preview shows every part."""
        shown = []
        for m in self.as_messages():
            parts = [f"<think>{m['reasoning_content']}</think>"] if m.get("reasoning_content") else []
            parts += [f"<- {m['content']}" if m["role"] == "tool" else m["content"]] if m["content"] else []
            parts += [
                f"-> {c['function']['name']}({json.dumps(c['function']['arguments'], ensure_ascii=False)})"
                for c in m.get("tool_calls", ())
            ]
            shown.append((str(m["role"]), "\n".join(parts)))
        return shown


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
        and all(
            isinstance(m, dict) and keys[0] in m and (keys[1] in m or "tool_calls" in m) for m in value[:3]
        )
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
        text = as_text(get("text"))
        if is_blank(text):
            raise ValueError(empty_reason(mapping.get("text", "text"), text))
        return Example(text=text)
    tools: list[Turn] = []
    if dataset_format in ("alpaca", "prompt_completion"):
        user_f, out_f = ("instruction", "output") if dataset_format == "alpaca" else ("prompt", "completion")
        user, out = as_text(get(user_f)).strip(), as_text(get(out_f))
        inp, system = as_text(get("input")).strip(), as_text(get("system")).strip()
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
    else:
        field_name = "messages" if dataset_format == "messages" else "conversations"
        keys = ("role", "content") if dataset_format == "messages" else ("from", "value")
        msgs = parse_turns(get(field_name), keys, mapping.get(field_name, field_name))
        tools = tool_schemas(get("tools"), mapping.get("tools", "tools"))
    if (
        fold_system_message
        and msgs
        and msgs[0]["role"] == "system"
        and len(msgs) > 1
        and msgs[1]["role"] == "user"
    ):
        msgs = [{**msgs[1], "content": f"{msgs[0]['content']}\n\n{msgs[1]['content']}"}, *msgs[2:]]
    if msgs[0]["role"] in ("assistant", "tool"):
        raise ValueError(
            f"the conversation starts with an {msgs[0]['role']} turn; start with a user (or system) message"
        )
    if not any(m["role"] == "assistant" for m in msgs):
        raise ValueError("no assistant message to learn from")
    return Example.from_messages(msgs, tools)


def alternation_problem(example: Example) -> str | None:
    """Why the roles of a chat do not alternate (user, assistant, user ... after an optional system), or None.

    An assistant turn that calls tools, the ``tool`` turns answering it and the assistant turns that follow them make
    one answer (user, assistant, tool, assistant, user ... alternates). A tool turn that follows no tool call is named.
    """
    messages = example.as_messages()
    if messages and messages[0]["role"] == "system":
        messages = messages[1:]
    roles: list[
        tuple[int, str]
    ] = []  # (turn, role) per exchange, tool rounds folded into their assistant turn
    for i, m in enumerate(messages, start=1):
        before = messages[i - 2] if i > 1 else None
        if m["role"] == "tool":
            if before is None or not (before["role"] == "tool" or before.get("tool_calls")):
                return f"turn {i} is a tool result but the turn before it makes no tool call"
            continue
        if m["role"] == "assistant" and before is not None and before["role"] == "tool":
            continue
        roles.append((i, m["role"]))
    for k, (i, role) in enumerate(roles):
        expected = "user" if k % 2 == 0 else "assistant"
        if role != expected:
            return f"roles do not alternate: turn {i} is {role}, expected {expected}"
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
