"""Tokenize normalised Examples with the model's chat template and build label masks.

Chat rows are rendered through the model's real chat template; by default only assistant turns are trained on (their
end-of-turn token included, also when it doubles as the pad token); ``completion_only_loss=False`` trains on the whole
text. Raw-text rows train on every token plus EOS. Rendering and batching live here; reading and normalising rows live
in core.data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.data import DatasetReport
from core.errors import DataError
from core.formats import Example

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Message = dict[str, str]

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

    Chat: each assistant turn's span runs from the prompt rendered with ``add_generation_prompt=True`` to the
    conversation rendered through that turn, so the template's end-of-turn token is inside it. Raw text: the text
    plus EOS, all trained on. ``completion_only_loss=False`` trains on the whole rendered chat.

    Raises:
        ValueError: the template refuses the conversation (message names the template's reason) or rewrites
            earlier turns so spans cannot be located.
    """
    if example.text is not None:
        full = example.text + (tokenizer.eos_token or "")
        return full, [(0, len(full))]
    msgs = example.as_messages()

    def render(part: list[Message], gen: bool = False) -> str:
        try:
            return str(tokenizer.apply_chat_template(part, tokenize=False, add_generation_prompt=gen))
        except Exception as exc:  # jinja2 TemplateError raised by the template itself
            hint = " (turn on 'fold system message')" if "system" in str(exc).lower() else ""
            raise ValueError(f"the chat template refuses this conversation: {exc}{hint}") from None

    full = render(msgs)
    if not completion_only_loss:
        return full, [(0, len(full))]
    spans = []
    for k, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        before = render(msgs[:k], gen=True)
        through = full if k == len(msgs) - 1 else render(msgs[: k + 1])
        if not through.startswith(before) or not full.startswith(through):
            raise ValueError("the chat template changes earlier turns; cannot locate the answer tokens")
        spans.append((len(before), len(through)))
    return full, spans


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
