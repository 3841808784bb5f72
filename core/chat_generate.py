"""One streamed answer: ``model.generate`` in a thread, its text yielded as tokens arrive, stoppable by a flag.

Split from core.chat (which owns loading, the cache and the GPU turn). torch / transformers are imported inside
the function so this module imports in milliseconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from typing import Any

from core.errors import StudioError

MAX_NEW_TOKENS_LIMIT = 4096


class ChatError(StudioError):
    """Chat cannot run: no run picked, no adapter or merged folder, bad generation settings, or a failed load.

    Attributes:
        template: the English message with ``{name}`` placeholders (the UI translates it, then formats).
        values: the placeholder values.
    """

    def __init__(self, template: str, **values: Any) -> None:
        self.template = template
        self.values = values
        super().__init__(template.format(**values) if values else template)


class SpeedMeter:
    """The last measured generation speed of this process, in wall seconds per new token (None before any)."""

    def __init__(self) -> None:
        self.seconds_per_token: float | None = None

    def record(self, tokens: int, seconds: float) -> None:
        """Record ``tokens`` new tokens generated in ``seconds`` (ignored when either is not positive)."""
        if tokens > 0 and seconds > 0:
            self.seconds_per_token = seconds / tokens


SPEED = SpeedMeter()


def stream_answer(
    model: Any,
    tokenizer: Any,
    prompt: str,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    stop: threading.Event | None = None,
) -> Generator[str, None, None]:
    """Generate in a thread and yield the growing answer text (special tokens skipped) as tokens arrive.

    The prompt is rendered as one user turn with ``add_generation_prompt=True``. A StoppingCriteria checks
    ``stop`` (and this generator being closed) after every token, so setting ``stop`` ends ``model.generate``
    within one token and the thread is joined before the generator ends: the model is free for the next answer.
    The measured seconds per token go to ``SPEED``.

    Args:
        model: a causal LM (or PeftModel) on its device.
        tokenizer: its tokenizer, with a chat template.
        prompt: the user message.
        temperature: 0 is greedy decoding; > 0 samples.
        top_p: nucleus mass in (0, 1], used when sampling.
        max_new_tokens: cap on the answer's length, in tokens.
        stop: set by the caller (a Stop button) to end the answer early; what was generated so far is kept.

    Yields:
        The answer so far (str), one growing string per streamed piece.

    Raises:
        ChatError: generation failed (out of GPU memory names max new tokens as what to lower).
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    closed = threading.Event()
    user_stop = stop or threading.Event()

    class _StopOnEvent(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            done = closed.is_set() or user_stop.is_set()
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    encoded: Any = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    device = next(model.parameters()).device
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    sampling: dict[str, Any] = (
        {"do_sample": True, "temperature": temperature, "top_p": top_p}
        if temperature > 0
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    )
    input_ids = encoded["input_ids"].to(device)  # (1, prompt tokens)
    kwargs = {
        "input_ids": input_ids,
        "attention_mask": encoded["attention_mask"].to(device),
        "max_new_tokens": max_new_tokens,
        "streamer": streamer,
        "stopping_criteria": StoppingCriteriaList([_StopOnEvent()]),
        "pad_token_id": tokenizer.pad_token_id,
        **sampling,
    }
    errors: list[BaseException] = []

    def work() -> None:
        started = time.monotonic()
        try:
            with torch.inference_mode():
                out = model.generate(**kwargs)  # (1, prompt + new tokens)
            SPEED.record(int(out.shape[1] - input_ids.shape[1]), time.monotonic() - started)
        except BaseException as exc:  # surfaced in the caller's thread below
            errors.append(exc)
            streamer.end()  # unblock the reader

    thread = threading.Thread(target=work, name="lora-studio-chat", daemon=True)
    thread.start()
    text = ""
    try:
        for piece in streamer:
            if piece:
                text += piece
                yield text
    finally:
        closed.set()
        thread.join()
    if text.endswith("\ufffd"):  # cut inside a character's bytes (max new tokens, Stop): not shown as "�"
        yield text.rstrip("\ufffd")
    if errors:
        exc = errors[0]
        if type(exc).__name__ == "OutOfMemoryError":
            raise ChatError("Out of GPU memory while generating; lower max new tokens.") from exc
        raise ChatError("Generation failed: {error}", error=f"{type(exc).__name__}: {exc}") from exc


def check_settings(prompt: str, temperature: float, top_p: float, max_new_tokens: int) -> None:
    """Raise ChatError listing every bad setting at once: an empty prompt, temperature outside [0, 5], top-p
    outside (0, 1], max new tokens outside [1, MAX_NEW_TOKENS_LIMIT]."""
    if not prompt or not prompt.strip():
        raise ChatError("Type a prompt first.")
    problems = []  # below: out of the sliders' ranges, so only API callers see them (in English)
    if not 0 <= temperature <= 5:
        problems.append(f"temperature must be between 0 and 5 (got {temperature})")
    if not 0 < top_p <= 1:
        problems.append(f"top-p must be in (0, 1] (got {top_p})")
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
        problems.append(f"max new tokens must be between 1 and {MAX_NEW_TOKENS_LIMIT} (got {max_new_tokens})")
    if problems:
        text = "; ".join(problems)
        raise ChatError("{problems}.", problems=text[0].upper() + text[1:])
