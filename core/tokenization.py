"""Tokenize normalised Examples with the model's chat template and build label masks.

Chat rows are rendered through the model's real chat template; by default only assistant turns are trained on (their
end-of-turn token included, also when it doubles as the pad token); ``completion_only_loss=False`` trains on the whole
text. Raw-text rows train on every token plus EOS. Rendering and batching live here; reading and normalising rows live
in core.data.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.chat_turns import tool_name
from core.data import DatasetReport
from core.errors import DataError
from core.formats import Example

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Message = dict[str, Any]
# A template's own marks for the tokens to train on (transformers' return_assistant_tokens_mask reads them).
GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")

# Used only when a tokenizer has no chat template (base models): the Alpaca prompt format (Taori et al. 2023).
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}### Instruction:\n{{ m['content'] }}\n\n"
    "{% else %}### Response:\n{{ m['content'] }}{{ eos_token }}\n\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}### Response:\n{% endif %}"
)


def ensure_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Give a template-less tokenizer the Alpaca-style fallback. Returns True when it had its own."""
    if getattr(tokenizer, "chat_template", None):
        return True
    tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return False


def render_example(
    tokenizer: PreTrainedTokenizerBase, example: Example, completion_only_loss: bool = True
) -> tuple[str, list[tuple[int, int]]]:
    """The text to tokenize and the character spans to train on.

    Chat: the conversation is rendered once through the model's chat template, with the row's tool schemas
    (``tools=``), tool calls, tool results and reasoning, which transformers passes to the template. Each assistant
    turn's span runs from the end of the prompt rendered with ``add_generation_prompt=True`` (or, where that prompt
    writes more than the turn's header, from where the two part) to the end of the turn (its tool calls and
    end-of-turn token included); tool results, user and system turns are context, not trained on.
    Where the template renders a turn differently once later turns follow (Qwen3-style templates drop the reasoning
    of answers before the last user message), the turn's end is found by rendering the conversation without it; the
    span is then checked to hold the answer's text, reasoning and tool calls. Raw text: the text plus EOS, all
    trained on. ``completion_only_loss=False`` trains on the whole rendered chat.

    Raises:
        ValueError: the row holds what the template does not render (tool calls, tool results, tool schemas,
            reasoning), the template refuses the conversation or leaves part of it out, or an answer's span cannot be
            located; the message names the message number and the part ("tool calls", "reasoning").
    """
    if example.text is not None:
        full = example.text + (tokenizer.eos_token or "")
        return full, [(0, len(full))]
    msgs = example.as_messages()
    tools = example.tool_schemas()
    template = _template_text(tokenizer, tools)
    why = unrendered_part(msgs, tools, template)
    if why:
        raise ValueError(why)
    schemas: Any = tools  # JSON schemas; transformers types the argument as dicts or callables

    def render(part: list[Message], gen: bool = False) -> str:
        try:
            return str(
                tokenizer.apply_chat_template(part, tools=schemas, tokenize=False, add_generation_prompt=gen)
            )
        except Exception as exc:  # jinja2 TemplateError raised by the template itself
            hint = " (turn on 'fold system message')" if "system" in str(exc).lower() else ""
            raise ValueError(f"the chat template refuses this conversation: {exc}{hint}") from None

    full = render(msgs)
    if not completion_only_loss:
        _check_kept(msgs, tools, full, {}, render)
        return full, [(0, len(full))]
    if GENERATION_TAG.search(template):
        marked = _generation_spans(tokenizer, template, msgs, schemas, full)
        if marked is not None:
            _check_kept(msgs, tools, full, {}, render)
            return full, marked
    spans: dict[int, tuple[int, int]] = {}
    for k, m in enumerate(msgs):
        if m["role"] == "assistant":
            try:
                spans[k] = _answer_span(render, msgs, k, full)
            except ValueError:
                _check_kept(
                    msgs, tools, full, {}, render
                )  # a part the template left out is the better reason
                raise
            if len(spans) > 1 and spans[k][0] < list(spans.values())[-2][1]:
                raise ValueError(
                    f"the answer of message {k + 1} overlaps the one before it in the rendered chat"
                )
    _check_kept(msgs, tools, full, spans, render)
    return full, list(spans.values())


def _generation_spans(
    tokenizer: PreTrainedTokenizerBase, template: str, msgs: list[Message], tools: Any, full: str
) -> list[tuple[int, int]] | None:
    """The character spans the template marks with ``{% generation %}`` in ``full``, or None when transformers cannot
    give them (then the answers are located as for any template).

    These are the spans ``apply_chat_template(..., return_assistant_tokens_mask=True)`` turns into its mask
    (transformers.utils.chat_template_utils.render_jinja_template); the template's author decides what is trained.

    Raises:
        ValueError: the template marks nothing in this conversation.
    """
    try:
        from transformers.utils.chat_template_utils import render_jinja_template

        result: Any = render_jinja_template(
            conversations=[msgs],
            tools=tools,
            chat_template=template,
            return_assistant_tokens_mask=True,
            **dict[str, Any](
                tokenizer.special_tokens_map
            ),  # bos_token, eos_token ... as apply_chat_template gives
        )
        rendered, indices = result
    except Exception:  # an older or newer transformers without this helper, or another return shape
        return None
    if rendered[0] != full:
        return None
    spans = [(int(s), int(e)) for s, e in indices[0] if e > s]
    if not spans:
        raise ValueError(
            "the chat template marks no answer of this conversation for training ({% generation %} blocks); "
            "nothing would be learned from the row"
        )
    return spans


def _template_text(tokenizer: PreTrainedTokenizerBase, tools: list[dict[str, Any]] | None) -> str:
    """The chat template the tokenizer would use (a tokenizer may keep a separate one for tools)."""
    try:
        return str(tokenizer.get_chat_template(None, tools))
    except Exception:  # no template at all: apply_chat_template reports it when rendering
        return str(getattr(tokenizer, "chat_template", "") or "")


def unrendered_part(messages: list[Message], tools: list[dict[str, Any]] | None, template: str) -> str | None:
    """Why a chat row holds something ``template`` does not render (and so would lose), or None.

    A template renders tool calls when its text reads ``tool_calls``, tool results when it also handles the role
    ``tool``, tool schemas when it reads ``tools``, reasoning when it reads ``reasoning_content``, ``thinking`` or
    ``reasoning`` (the names transformers passes a turn's reasoning under, transformers.utils.chat_template_utils).

    Args:
        messages: the row's turns as core.formats.Example.as_messages gives them.
        tools: the row's tool schemas, or None.
        template: the chat template's Jinja text.

    Returns:
        A reason naming the message and the part ("tool calls", "reasoning", "tools") and what to do, or None.
    """
    calls_ok = "tool_calls" in template
    unlike = "the row is left out rather than trained without them"
    for j, m in enumerate(messages, start=1):
        if m.get("tool_calls") and not calls_ok:
            names = ", ".join(c["function"]["name"] for c in m["tool_calls"])
            return (
                f"message {j} (assistant) has tool calls ({names}), but this model's chat template does not render "
                f"tool calls; {unlike}. Choose a model whose chat template supports tools (Qwen2.5 / Qwen3, Llama "
                "3.1+, Mistral), or remove the tool calls from the row"
            )
        if m["role"] == "tool" and not (calls_ok and re.search(r"""["']tool["']""", template)):
            return (
                f"message {j} is a tool result, but this model's chat template does not render tool calls and "
                f"their results; {unlike}. Choose a model whose chat template supports tools, or remove the tool "
                "turns from the row"
            )
        if m.get("reasoning_content") and not re.search(r"reasoning|thinking", template):
            return (
                f"message {j} (assistant) has reasoning (reasoning_content / thinking), but this model's chat "
                "template does not render reasoning; the row is left out rather than trained without it. Remove "
                "the reasoning, or choose a model whose chat template reads reasoning_content (Qwen3, DeepSeek-R1)"
            )
    if tools and not re.search(r"\btools\b", template):
        names = ", ".join(tool_name(t) for t in tools)
        return (
            f"the row offers tools ({names}), but this model's chat template does not render tool schemas "
            f"(tools); {unlike}. Choose a model whose chat template supports tools, or remove the tools column"
        )
    return None


def _answer_span(render: Callable[..., str], msgs: list[Message], k: int, full: str) -> tuple[int, int]:
    """(start, end) in ``full`` of assistant message ``k`` (0-based): its answer, tool calls and end-of-turn token.

    Raises:
        ValueError: the template renders the prompt before the answer, or the answer's end, in ways that do not
            line up with the whole conversation.
    """
    before = render(msgs[:k], gen=True)
    if full.startswith(before):
        start = len(before)
    else:  # a generation prompt that writes more than the answer's header (DeepSeek-R1's "<think>\n")
        head = render(msgs[:k])
        if not (full.startswith(head) and before.startswith(head)):
            raise ValueError(
                f"the chat template renders the conversation before message {k + 1} (assistant) differently from "
                "the whole conversation (it rewrites earlier turns); cannot locate the answer tokens"
            )
        start = len(head) + len(os.path.commonprefix([full[len(head) :], before[len(head) :]]))
    if k == len(msgs) - 1:
        return start, len(full)
    through = render(msgs[: k + 1])
    if full.startswith(through) and len(through) > start:
        return start, len(through)
    # The template renders this turn differently when later turns follow (it drops or changes the reasoning of
    # earlier answers): the turn ends where the rest begins, which rendering the chat without the turn shows.
    try:
        head, without = render(msgs[:k]), render(msgs[:k] + msgs[k + 1 :])
    except ValueError:
        without, head = "", "\0"
    tail = without[len(head) :]
    if without.startswith(head) and full.endswith(tail) and len(full) - len(tail) > start:
        return start, len(full) - len(tail)
    raise ValueError(
        f"the chat template renders message {k + 1} (assistant) differently once later turns follow, and where it "
        "ends cannot be located; cannot locate the answer tokens"
    )


def _check_kept(
    msgs: list[Message],
    tools: list[dict[str, Any]] | None,
    full: str,
    spans: dict[int, tuple[int, int]],
    render: Callable[..., str],
) -> None:
    """Refuse a row the template rendered without part of it: every turn's text, an answer's reasoning and tool
    calls (inside the answer's span when spans are given), every tool schema's name.

    Raises:
        ValueError: names the message, the part left out, and whether the template drops it only when later turns
            follow (reasoning of earlier answers).
    """
    for k, m in enumerate(msgs):
        s, e = spans.get(k, (0, len(full)))
        where = full[s:e]
        text = m["content"]
        parts = []
        if "</think>" in text:  # reasoning written into the answer, as DeepSeek-R1 and Qwen3 data do
            thought, text = text.split("</think>", 1)
            parts.append(("reasoning (the <think> part of its text)", thought.split("<think>")[-1].strip()))
        parts.append(("text", text.strip()))
        if m.get("reasoning_content"):
            parts.append(("reasoning (reasoning_content)", m["reasoning_content"].strip()))
        for call in m.get("tool_calls", ()):
            fn = call["function"]
            parts += [
                (f"tool call {fn['name']}", piece) for piece in (fn["name"], *map(str, fn["arguments"]))
            ]
        for part, piece in parts:
            if not piece or piece in where:
                continue
            try:  # kept when the answer ends the conversation: the template drops it from earlier answers only
                alone = m["role"] == "assistant" and piece in render(msgs[: k + 1])[s:]
            except ValueError:
                alone = False
            if alone:
                when = " once later turns follow" + (
                    " (it keeps reasoning only for answers after the last user message)"
                    if "reasoning" in part
                    else ""
                )
                todo = "Give each such answer its own row (as the last turn), or remove that part"
            else:
                when, todo = "", "Remove that part, or choose a model whose chat template renders it"
            raise ValueError(
                f"message {k + 1} ({m['role']}): this model's chat template leaves out its {part}{when}; the row "
                f"is left out rather than trained without it. {todo}"
            )
    for t in tools or ():
        if tool_name(t) not in full:
            raise ValueError(
                f"this model's chat template leaves out the tool schema {tool_name(t)!r}; the row is left out "
                "rather than trained without it"
            )


@dataclass
class TokenizedData:
    """Features ready for the Trainer, with per-row statistics for the report.

    Attributes:
        features: {"input_ids", "attention_mask", "labels"} per kept row.
        row_numbers: file row of each feature.
        lengths: token count of every rendered row before truncation (kept rows and rows dropped for length).
        supervised: trained-on tokens per kept row after truncation.
        dropped / notes: (row, reason) added at this stage.
    """

    features: list[dict[str, list[int]]]
    row_numbers: list[int]
    lengths: list[int]
    supervised: list[int]
    dropped: list[tuple[int, str]]
    notes: list[tuple[int, str]]


def tokenize_report(
    report: DatasetReport,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    completion_only_loss: bool = True,
    batch_size: int = 1000,
) -> TokenizedData:
    """Tokenize every usable example (in batches, through the fast tokenizer) and build label masks.

    Rows whose answer falls entirely after ``max_length`` have zero labels: they are dropped and listed, never
    averaged into a NaN loss. Truncated rows are kept and noted. Updates ``report.stages`` / dropped / notes.

    Raises:
        DataError: no row keeps a supervised token.
    """
    ensure_chat_template(tokenizer)
    out = TokenizedData([], [], [], [], [], [])
    rendered: list[tuple[int, str, list[tuple[int, int]]]] = []
    for ex, row in zip(report.examples, report.row_numbers):
        try:
            text, spans = render_example(tokenizer, ex, completion_only_loss)
            rendered.append((row, text, spans))
        except ValueError as exc:
            out.dropped.append((row, str(exc)))
    for start in range(0, len(rendered), batch_size):
        chunk = rendered[start : start + batch_size]
        enc = tokenizer([t for _, t, _ in chunk], add_special_tokens=False, return_offsets_mapping=True)
        for (row, _text, spans), ids, offsets in zip(chunk, enc["input_ids"], enc["offset_mapping"]):
            out.lengths.append(len(ids))
            ids, offsets = ids[:max_length], offsets[:max_length]
            labels, n_sup = _labels(ids, offsets, spans)
            if n_sup == 0:
                out.dropped.append(
                    (row, f"the answer starts after max_length={max_length} tokens; raise max_length")
                )
                continue
            if out.lengths[-1] > max_length:
                out.notes.append((row, f"truncated from {out.lengths[-1]} to {max_length} tokens"))
            out.features.append({"input_ids": list(ids), "attention_mask": [1] * len(ids), "labels": labels})
            out.row_numbers.append(row)
            out.supervised.append(n_sup)
    report.dropped = sorted(report.dropped + out.dropped)
    report.notes = sorted(report.notes + out.notes)
    report.stages["after tokenizing"] = len(out.features)
    report.stages["truncated"] = sum(1 for _, why in out.notes if why.startswith("truncated"))
    if not out.features:
        raise DataError(
            "No row has answer tokens within max_length. "
            + "; ".join(f"row {r}: {why}" for r, why in out.dropped[:3])
        )
    return out


def _labels(
    ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]
) -> tuple[list[int], int]:
    """Labels (-100 outside the trained character spans, judged by each token's start offset) and their count."""
    import numpy as np

    starts = np.fromiter((o[0] for o in offsets), dtype=np.int64, count=len(offsets))
    keep = np.zeros(len(ids), dtype=bool)
    for s, e in spans:
        keep |= (starts >= s) & (starts < e)
    return np.where(keep, np.asarray(ids, dtype=np.int64), -100).tolist(), int(keep.sum())


def tokenize_example(
    tokenizer: PreTrainedTokenizerBase, example: Example, max_length: int, completion_only_loss: bool = True
) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one example, truncated to ``max_length``; raises ValueError like render_example."""
    ensure_chat_template(tokenizer)
    text, spans = render_example(tokenizer, example, completion_only_loss)
    enc = tokenizer(
        text, add_special_tokens=False, return_offsets_mapping=True, truncation=True, max_length=max_length
    )
    labels, _ = _labels(enc["input_ids"], enc["offset_mapping"], spans)
    return list(enc["input_ids"]), labels


def label_mask_example(
    tokenizer: PreTrainedTokenizerBase, feature: dict[str, list[int]]
) -> list[tuple[str, str | None]]:
    """[(token text, "trained" or None)] for one feature: which tokens the loss is computed on."""
    return [
        (str(tokenizer.decode([tok])), "trained" if lab != -100 else None)
        for tok, lab in zip(feature["input_ids"], feature["labels"])
    ]
