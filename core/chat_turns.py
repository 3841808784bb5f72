"""Chat turns of one row, as read: roles, text, tool calls, tool results and reasoning (core.formats uses these).

A chat row is a list of turns: ``{"role", "content"}`` (OpenAI / Hugging Face keys) or ``{"from", "value"}``
(ShareGPT). Besides text, a turn may carry what today's chat data carries and the model's chat template may render:

  tool_calls         an assistant turn's function calls, OpenAI style ``[{"type": "function", "function": {"name",
                     "arguments"}}]`` (also the legacy ``function_call``, and ShareGPT's ``function_call`` turns);
                     kept with ``arguments`` as a JSON object, as Hugging Face chat templates expect
  tool results       turns of role ``tool`` (also ``function``, ``ipython``, ShareGPT's ``observation``), with
                     ``tool_call_id`` / ``name`` kept when given
  reasoning          ``reasoning_content``, ``reasoning`` or ``thinking`` on an assistant turn, kept as
                     ``reasoning_content`` (transformers passes it to templates under all three names)

Nothing here knows the model: whether its template can render these is decided when rows are tokenized
(core.tokenization), which refuses a row whose parts the template would drop.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

# Roles as the data names them -> system / user / assistant / tool.
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
    "tool": "tool",
    "function": "tool",  # OpenAI's legacy name for a function's result
    "ipython": "tool",  # Llama 3.1's
    "observation": "tool",  # ShareGPT tool data (LLaMA-Factory)
    "function_call": "assistant",  # ShareGPT: an assistant turn whose value is the call, as JSON
}
BASIC_ROLES = ("system", "user", "assistant", "tool")
# Keys a turn's reasoning comes under, in the order looked at (transformers.utils.chat_template_utils uses the same).
REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")
# Characters that show nothing: zero-width spaces and joiners, word joiner, BOM (also caught by category below).
INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff")
INVISIBLE_CATEGORIES = frozenset({"Cf", "Zs", "Zl", "Zp"})  # format characters and every kind of space

Turn = dict[str, Any]


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


def as_text(value: Any) -> str:
    """A cell as text: None is empty, lists and dicts are JSON, anything else ``str()``."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def content_text(content: Any, j: int) -> str:
    """Message content as text: a string, or OpenAI-style parts [{"type": "text", "text": ...}] joined.

    Raises:
        ValueError: a part is not text (an image, audio ...), naming message ``j`` and the part's type.
    """
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
    return as_text(content)


def _json_value(value: Any) -> Any:
    """``value`` itself, or the JSON it holds when it is a string that starts like JSON."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        return json.loads(value)
    return value


def tool_calls(value: Any, j: int) -> list[Turn]:
    """An assistant turn's tool calls in the OpenAI shape Hugging Face chat templates read.

    Args:
        value: ``tool_calls`` as given: a list (or one call) of ``{"type": "function", "function": {"name",
            "arguments"}, "id"?}`` or of flat ``{"name", "arguments"}``; either may be a JSON string. ``arguments``
            may be a JSON object or a string holding one (OpenAI's API sends a string).
        j: the 1-based message number, for messages.

    Returns:
        ``[{"type": "function", "function": {"name": str, "arguments": dict}, "id"?: str}]``; empty when ``value``
        is None or an empty list.

    Raises:
        ValueError: text that is not JSON, a call without a function name, or arguments that are not a JSON object;
            each names message ``j`` and the call's number.
    """
    try:
        value = _json_value(value)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"message {j} (assistant): tool_calls is text that is not JSON ({exc.msg})"
        ) from None
    if value is None or value == []:
        return []
    calls = value if isinstance(value, list) else [value]
    out = []
    for n, call in enumerate(calls, start=1):
        where = f"message {j} (assistant) tool call {n}"
        if not isinstance(call, dict):
            raise ValueError(f"{where} is {as_text(call)[:60]!r}; give {{'name': ..., 'arguments': {{...}}}}")
        fn = call["function"] if isinstance(call.get("function"), dict) else call
        name = fn.get("name")
        if not isinstance(name, str) or is_blank(name):
            raise ValueError(f"{where} has no function name; give each call a 'name'")
        args = fn.get("arguments", fn.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"{where} ({name}): arguments are not valid JSON ({exc.msg} at character {exc.pos}); "
                    'give a JSON object such as {"city": "Paris"}'
                ) from None
        if not isinstance(args, dict):
            raise ValueError(f"{where} ({name}): arguments must be a JSON object, not {as_text(args)[:60]!r}")
        entry: Turn = {"type": "function", "function": {"name": name.strip(), "arguments": args}}
        if call.get("id") not in (None, ""):
            entry["id"] = str(call["id"])
        out.append(entry)
    return out


def tool_schemas(value: Any, field_name: str) -> list[Turn]:
    """A row's ``tools`` cell as a list of JSON schemas (OpenAI ``{"type": "function", "function": {...}}`` or flat).

    Raises:
        ValueError: not JSON, not a list of objects, or a schema without a name; names ``field_name``.
    """
    try:
        value = _json_value(value)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{field_name} is text that is not JSON ({exc.msg}); give a list of tool schemas"
        ) from None
    if value is None or value == [] or value == "":
        return []
    tools = value if isinstance(value, list) else [value]
    for n, tool in enumerate(tools, start=1):
        fn = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ValueError(
                f"{field_name}: tool {n} is not a schema with a name; give "
                '[{"type": "function", "function": {"name": ..., "parameters": {...}}}]'
            )
    return tools


def tool_name(schema: Turn) -> str:
    """The function name of a tool schema (OpenAI or flat shape)."""
    fn = schema.get("function", schema)
    return str(fn.get("name", "")) if isinstance(fn, dict) else ""


def parse_turns(raw: Any, keys: tuple[str, str], field_name: str) -> list[Turn]:
    """A chat cell as turns ``{"role", "content", "tool_calls"?, "reasoning_content"?, "tool_call_id"?, "name"?}``.

    Args:
        raw: the cell: a list of turns, or a JSON string holding one.
        keys: the row's key style, ("role", "content") or ("from", "value"); the other style is also accepted.
        field_name: the column, for messages.

    Returns:
        Turns with roles mapped to system / user / assistant / tool. An assistant turn may have empty content when it
        makes tool calls.

    Raises:
        ValueError: naming the message number and what is wrong (unknown role, empty text, a non-text part, bad tool
            calls, reasoning on a turn that is not the assistant's).
    """
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError(f"{field_name} is text that is not a JSON list") from None
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{field_name} must be a non-empty list of {{{keys[0]}, {keys[1]}}}")
    turns = []
    other = ("role", "content") if keys == ("from", "value") else ("from", "value")
    for j, m in enumerate(raw, start=1):
        if isinstance(m, dict) and keys[0] not in m and other[0] in m:
            role_key, text_key = other  # ShareGPT keys under "messages", or the reverse
        else:
            role_key, text_key = keys
        calls_given = isinstance(m, dict) and any(
            m.get(k) not in (None, []) for k in ("tool_calls", "function_call")
        )
        if not isinstance(m, dict) or role_key not in m or (text_key not in m and not calls_given):
            raise ValueError(f"message {j} needs {keys[0]} and {keys[1]}")
        name = as_text(m[role_key]).strip().lower()
        role = ROLE_NAMES.get(name)
        if role is None:
            raise ValueError(
                f"message {j} has role {m[role_key]!r}; use system, user, assistant or tool "
                f"(also understood: {', '.join(k for k in ROLE_NAMES if k not in BASIC_ROLES)})"
            )
        turns.append(_turn(m, j, role, name, text_key))
    return turns


def _turn(m: dict[str, Any], j: int, role: str, name: str, text_key: str) -> Turn:
    """One turn of parse_turns (see there)."""
    if name == "function_call":  # ShareGPT: the value is the call itself
        try:
            calls = tool_calls(m.get(text_key), j)
        except ValueError as exc:
            raise ValueError(f"{exc} (a function_call turn's value must be the call as JSON)") from None
        if not calls:
            raise ValueError(f"message {j} (function_call) holds no call")
        return {"role": "assistant", "content": "", "tool_calls": calls}
    turn: Turn = {"role": role, "content": content_text(m.get(text_key), j)}
    calls = tool_calls(m.get("tool_calls"), j) + tool_calls(m.get("function_call"), j)
    if calls and role != "assistant":
        raise ValueError(f"message {j} ({role}) has tool calls; only assistant turns make tool calls")
    if calls:
        turn["tool_calls"] = calls
    for key in REASONING_KEYS:
        if m.get(key) is None:
            continue
        reasoning = content_text(m[key], j)
        if is_blank(reasoning):
            continue
        if role != "assistant":
            raise ValueError(f"message {j} ({role}) has {key}; only assistant turns carry reasoning")
        turn["reasoning_content"] = reasoning
        break
    if role == "tool":
        for key in ("tool_call_id", "name"):
            if m.get(key) not in (None, ""):
                turn[key] = as_text(m[key])
    if is_blank(turn["content"]):
        if not calls:
            raise ValueError(empty_reason(f"message {j} ({role})", turn["content"]))
        turn["content"] = ""  # OpenAI's content: null beside tool calls
    return turn
