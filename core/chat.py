"""Chat with a run's base model and its fine-tuned version, side by side, streaming tokens.

The fine-tuned model is either the run's LoRA adapter (one ``PeftModel``; the base answer runs inside
``model.disable_adapter()``, so the base weights are in memory once) or a merged export folder (``RUN/merged*``,
loaded next to a separate base). Prompts go through the tokenizer's chat template with ``add_generation_prompt=True``.

GPU work is serialised, and chat and training wait for each other instead of failing: an answer takes its turn in
the process's one training line (core.slot.SLOT, FIFO), so a chat asked while a run trains waits for it (yielding
its place and estimated wait) and a Start pressed while a chat answers queues behind the answer. While an answer
loads or generates it also holds a module-level lock (``is_busy()``); a training job given its turn waits for that
lock and frees the cached models (``free_models``) before it loads anything.
torch / transformers / peft are imported inside functions so this module imports in milliseconds.
Weights are read from safetensors only: an adapter or merged folder holding only a pickled ``.bin`` is refused
naming the file (core.safe_weights) before peft's fallback to ``torch.load`` could read it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import sys
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.chat_generate import ChatError, check_settings, stream_answer
from core.chat_line import ChatTurn, Waiting, wait_for_turn
from core.errors import StudioError
from core.model import holding_model_lock
from core.run_admin import OPEN_IN_CHAT, in_use
from core.slot import SLOT

if TYPE_CHECKING:
    from core.slot import TrainingSlot

__all__ = ["ChatError", "ChatModels", "Waiting", "stream_side_by_side", "load_chat_models"]

log = logging.getLogger(__name__)

ADAPTER = "adapter"
MERGED = "merged"
START_BLOCKED_MESSAGE = (
    "Waiting for the Chat tab's answer to finish (only one job uses the GPU at a time); training starts then."
)
FIT_SHARE = (
    0.8  # load the 16-bit base on the GPU only when its weights take at most this share of free memory
)

Progress = Callable[..., None]  # progress(fraction in [0, 1], English template, **values)
_lock = threading.Lock()  # held while models load or generate: one GPU job at a time
_cache: dict[tuple[str, str], ChatModels] = {}  # at most one entry: (fine-tuned path, kind) -> models


@dataclass
class ChatModels:
    """The loaded pair for one run.

    Attributes:
        base: the base causal LM, or None when ``finetuned`` is a PeftModel (the base answer then runs with the
            adapter disabled).
        finetuned: a ``peft.PeftModel`` (kind "adapter") or the merged causal LM (kind "merged").
        tokenizer: the fine-tuned model's tokenizer (saved with the adapter/export; the base's otherwise), with a
            chat template (core.tokenization.ensure_chat_template's fallback when it had none).
        kind: "adapter" or "merged".
        device: "cuda" or "cpu".
        dtype: weights dtype name ("bfloat16" on a CUDA GPU, "float32" on the CPU; "4-bit" when it had to be).
    """

    base: Any
    finetuned: Any
    tokenizer: Any
    kind: str
    device: str
    dtype: str


def _no_progress(fraction: float, template: str, **values: Any) -> None:
    """The default progress callback: ignores every report."""


def is_busy() -> bool:
    """True while chat is loading a model or generating (it holds the GPU)."""
    return _lock.locked()


def free_models(keep_run: str | Path | None = None) -> bool:
    """Drop the cached models and return their memory (``torch.cuda.empty_cache()`` on a GPU).

    Args:
        keep_run: keep the cache when it holds this run folder's models (a different run was not chosen).

    Returns:
        False when chat is busy (nothing freed), True otherwise.
    """
    if not _lock.acquire(blocking=False):
        return False
    try:
        keep = str(Path(keep_run).expanduser().resolve()) if keep_run else None
        if not any(str(Path(path).parent) == keep for path, _ in _cache):
            _free_cache()
    finally:
        _lock.release()
    return True


LOADED_TEMPLATE = "`{run}` with `{tuned}` ({kind}), {dtype} on {device}"


def loaded_values() -> dict[str, str]:
    """What is loaded, as LOADED_TEMPLATE's values (run, tuned, kind, dtype, device); {} when nothing is."""
    for (path, _), models in list(_cache.items()):
        tuned = Path(path)
        return {
            "run": tuned.parent.name,
            "tuned": tuned.name,
            "kind": models.kind,
            "dtype": models.dtype,
            "device": models.device,
        }
    return {}


def loaded_summary() -> str:
    """One line on what is loaded ("" when nothing is): run, fine-tuned kind, dtype and device (English; the UI
    translates LOADED_TEMPLATE and formats loaded_values())."""
    values = loaded_values()
    return LOADED_TEMPLATE.format(**values) if values else ""


def _free_cache() -> None:
    """Clear the cache (caller holds the lock)."""
    if not _cache:
        return
    _cache.clear()
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def finetuned_choices(run_dir: str | Path | None) -> list[str]:
    """What the run offers as its fine-tuned model: "adapter" (if ``adapter/`` holds a saved adapter), then the
    merged export folders (``merged``, ``merged-2``... with a config.json), by name."""
    if not run_dir:
        return []
    folder = Path(run_dir).expanduser()
    if not folder.is_dir():
        return []
    out = [ADAPTER] if (folder / ADAPTER / "adapter_config.json").is_file() else []
    merged = [
        p.name
        for p in folder.iterdir()
        if p.name.startswith(MERGED) and p.is_dir() and (p / "config.json").is_file()
    ]
    return out + sorted(merged)


def chat_runs(output_dir: str | Path) -> list[str]:
    """Run folders under ``output_dir`` with something to chat with (an adapter or a merged export), newest
    first; [] when the folder does not exist."""
    base = Path(output_dir or "runs").expanduser().resolve()
    if not base.is_dir():
        return []
    runs = [p for p in base.iterdir() if p.is_dir() and finetuned_choices(p)]
    return [str(p) for p in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)]


def _base_path(run_dir: Path) -> str:
    from core.model import resolve_model_path

    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise ChatError("{folder}: not a run folder (no config.json).", folder=str(run_dir))
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    return resolve_model_path(str(cfg.get("model_name_or_path", "")))


def _base_load_kwargs(run_dir: Path, base_path: str, device: str) -> tuple[dict[str, Any], str]:
    """from_pretrained kwargs for the base: bf16 on a GPU, fp32 on the CPU; the run's 4-bit QLoRA settings only
    when the run used them and the 16-bit weights would not fit in FIT_SHARE of the free GPU memory."""
    import torch

    kwargs: dict[str, Any] = {"device_map": {"": device}}
    if device != "cuda":
        return {**kwargs, "dtype": torch.float32}, "float32"
    from core.config import TrainingConfig
    from core.model import get_quantization_config, inspect_model

    cfg = TrainingConfig.from_dict(json.loads((run_dir / "config.json").read_text(encoding="utf-8")))
    if cfg.load_in_4bit:
        need_bytes = inspect_model(base_path).num_params * 2
        if need_bytes > FIT_SHARE * torch.cuda.mem_get_info()[0]:
            log.info("The 16-bit base does not fit in free GPU memory; loading it in 4-bit as in training")
            return {**kwargs, "quantization_config": get_quantization_config(cfg)}, "4-bit"
    return {**kwargs, "dtype": torch.bfloat16}, "bfloat16"


@holding_model_lock
def _load(run_dir: Path, choice: str, progress: Progress) -> ChatModels:
    """Load base + fine-tuned for ``choice`` (caller holds the lock and has checked the choice exists)."""
    import torch
    from transformers import AutoModelForCausalLM

    from core.model import SAFE_LOAD, load_tokenizer, refuse_custom_code
    from core.safe_weights import weights_problem
    from core.tokenization import ensure_chat_template

    device = "cuda" if torch.cuda.is_available() else "cpu"
    base_path = _base_path(run_dir)
    refuse_custom_code(base_path)
    kwargs, dtype = _base_load_kwargs(run_dir, base_path, device)
    tuned_path = run_dir / choice
    if choice != ADAPTER:
        refuse_custom_code(str(tuned_path))
    problem = weights_problem(tuned_path, "adapter" if choice == ADAPTER else "model")
    if problem:  # before peft's fallback to torch.load of adapter_model.bin
        raise ChatError(problem)
    tok_path = str(tuned_path) if (tuned_path / "tokenizer_config.json").is_file() else base_path
    tokenizer = load_tokenizer(tok_path)
    tokenizer.padding_side = "left"  # generation appends on the right
    ensure_chat_template(tokenizer)
    try:
        progress(0.1, "Loading the base model ({dtype}, {device})...", dtype=dtype, device=device)
        base = AutoModelForCausalLM.from_pretrained(base_path, **kwargs, **SAFE_LOAD)
        base.eval()
        if choice == ADAPTER:
            from peft import PeftModel

            progress(0.6, "Loading the adapter...")
            peft_model = PeftModel.from_pretrained(base, str(tuned_path))
            peft_model.eval()
            return ChatModels(None, peft_model, tokenizer, ADAPTER, device, dtype)
        progress(0.5, "Loading the merged model {name}...", name=choice)
        merged_kwargs = {k: v for k, v in kwargs.items() if k != "quantization_config"}
        merged_kwargs.setdefault("dtype", torch.bfloat16 if device == "cuda" else torch.float32)
        tuned = AutoModelForCausalLM.from_pretrained(str(tuned_path), **merged_kwargs, **SAFE_LOAD)
        tuned.eval()
        return ChatModels(base, tuned, tokenizer, MERGED, device, dtype)
    except StudioError:
        raise
    except Exception as exc:  # unreadable weights, adapter for another base, out of memory
        raise ChatError(
            "Loading the models for {run} failed: {error}",
            run=run_dir.name,
            error=f"{type(exc).__name__}: {exc}",
        ) from exc


def load_chat_models(
    run_dir: str | Path, choice: str = ADAPTER, progress: Progress | None = None
) -> ChatModels:
    """The cached models for ``run_dir`` and ``choice`` (loading them, and freeing any other run's, first).

    The caller must hold the chat lock (``stream_side_by_side`` does); the cache keeps one (path, kind) entry.

    Args:
        run_dir: a run folder (config.json naming the base, plus ``adapter/`` or a merged export).
        choice: "adapter" or the name of a merged export folder inside ``run_dir`` (see finetuned_choices).
        progress: called as ``progress(fraction in [0, 1], template, **values)`` while loading (an English
            template with ``{name}`` placeholders, for the UI to translate and format).

    Raises:
        ChatError: no such run, adapter or merged folder, or the weights fail to load.
        ModelError: the base named in config.json cannot be resolved.
    """
    folder = Path(run_dir).expanduser().resolve()
    choices = finetuned_choices(folder)
    if choice not in choices:
        if not choices:
            raise ChatError(
                "{run}: nothing to chat with yet (train the run, or wait for it to save its adapter).",
                run=folder.name,
            )
        raise ChatError(
            "{run}: no fine-tuned model {choice} here; this run has {have}.",
            run=folder.name,
            choice=repr(choice),
            have=", ".join(choices),
        )
    key = (str(folder / choice), ADAPTER if choice == ADAPTER else MERGED)
    if key not in _cache:
        _free_cache()
        _cache[key] = _load(folder, choice, progress or _no_progress)
    return _cache[key]


_holder: ChatTurn | None = None  # the chat answer holding the GPU, if any


def stream_side_by_side(
    run_dir: str | Path | None,
    choice: str,
    prompt: str,
    temperature: float = 0.7,
    top_p: float = 0.9,
    max_new_tokens: int = 256,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    slot: TrainingSlot | None = None,
    poll_s: float = 1.0,
) -> Generator[tuple[str, str] | Waiting, None, None]:
    """Answer ``prompt`` with the base model, then the fine-tuned one, streaming both, once the GPU is free.

    The answer first takes its place in the training line (``slot``, default core.slot.SLOT): while a training
    run (or an earlier answer) holds the GPU it yields Waiting with its place and estimated wait, and a Start
    pressed meanwhile queues behind it. With its turn it holds the chat lock until the generator ends or is
    closed; closing it early stops generation after the current token. While it loads and answers, the run is
    marked in use (core.run_admin.in_use, OPEN_IN_CHAT): the Runs tab refuses to delete it meanwhile.

    Args:
        run_dir: the run folder.
        choice: "adapter" or a merged export folder name (see finetuned_choices).
        prompt: the user message, rendered with the chat template and ``add_generation_prompt=True``.
        temperature: 0 is greedy decoding; > 0 samples (at most 5).
        top_p: nucleus sampling mass in (0, 1] (only used when sampling).
        max_new_tokens: answer length cap per model, in tokens (1..4096).
        progress: ``progress(fraction, template, **values)`` while models load.
        stop: set it (a Stop button) to end early: while waiting, the answer leaves the line; while generating,
            generation ends within one token and what was streamed is kept; the fine-tuned side is then skipped.
        slot: the line to wait in (tests pass their own).
        poll_s: seconds between Waiting reports.

    Yields:
        Waiting while in line; then (base answer so far, fine-tuned answer so far): first ("", ""), then one
        tuple per streamed piece.

    Raises:
        ChatError: no run picked, no such adapter / merged folder, bad settings, or loading/generation failed.
        ModelError: the run's base model cannot be resolved.
    """
    global _holder
    if not run_dir:
        raise ChatError("Pick a run folder first (train one in the Train tab).")
    check_settings(prompt, temperature, top_p, int(max_new_tokens))
    stop = stop or threading.Event()
    slot = slot or SLOT
    turn = ChatTurn(int(max_new_tokens))
    try:  # leaves the line however the generator ends (closed while waiting included)
        if not (yield from wait_for_turn(turn, slot, stop, poll_s, lambda: _holder is not None)):
            return
        # A job given the slot before this answer waits for this lock (free_models) before loading anything.
        while not _lock.acquire(timeout=poll_s):
            if stop.is_set():
                return
        try:
            _holder = turn
            # the Runs tab refuses to delete the run while its models load and answer ("open in Chat")
            with in_use(run_dir, OPEN_IN_CHAT):
                models = load_chat_models(run_dir, choice, progress)
                if progress is not None:
                    progress(1.0, "Generating...")
                args = (prompt, float(temperature), float(top_p), int(max_new_tokens), stop)
                base_text = tuned_text = ""
                yield base_text, tuned_text
                if stop.is_set():
                    return
                if models.base is None:
                    base_model, no_adapter = models.finetuned, models.finetuned.disable_adapter()
                else:
                    base_model, no_adapter = models.base, contextlib.nullcontext()
                # closing() exits first, so the generation thread is joined before the adapter is back on
                with (
                    no_adapter,
                    contextlib.closing(stream_answer(base_model, models.tokenizer, *args)) as parts,
                ):
                    for base_text in parts:
                        yield base_text, tuned_text
                if stop.is_set():
                    return
                with contextlib.closing(stream_answer(models.finetuned, models.tokenizer, *args)) as parts:
                    for tuned_text in parts:
                        yield base_text, tuned_text
        finally:
            _holder = None
            _lock.release()
    finally:
        slot.leave(turn)
