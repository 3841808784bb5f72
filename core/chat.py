"""Chat with a run's base model and its fine-tuned version, side by side, streaming tokens.

The fine-tuned model is either the run's LoRA adapter (one ``PeftModel``; the base answer runs inside
``model.disable_adapter()``, so the base weights are in memory once) or a merged export folder (``RUN/merged*``,
loaded next to a separate base). Prompts go through the tokenizer's chat template with ``add_generation_prompt=True``.

GPU work is serialised: one module-level lock covers loading and generation (``is_busy()``), chat refuses while a
TrainingJob is active, and ``TrainingJob.start`` refuses while chat holds the lock (and frees the cached models).
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

from core.errors import JobBusyError, StudioError
from core.model import holding_model_lock

if TYPE_CHECKING:
    from core.job import TrainingJob

log = logging.getLogger(__name__)

ADAPTER = "adapter"
MERGED = "merged"
TRAINING_BUSY_MESSAGE = (
    "Training is running on this machine; chat is available when it finishes or is stopped."
)
CHAT_BUSY_MESSAGE = "A chat answer is being generated; try again when it finishes."
START_BLOCKED_MESSAGE = (
    "Waiting for the Chat tab's answer to finish (only one job uses the GPU at a time); training starts then."
)
MAX_NEW_TOKENS_LIMIT = 4096
FIT_SHARE = (
    0.8  # load the 16-bit base on the GPU only when its weights take at most this share of free memory
)

_lock = threading.Lock()  # held while models load or generate: one GPU job at a time
_cache: dict[tuple[str, str], ChatModels] = {}  # at most one entry: (fine-tuned path, kind) -> models


class ChatError(StudioError):
    """Chat cannot run: no run picked, no adapter or merged folder, or bad generation settings."""


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


def loaded_summary() -> str:
    """One line on what is loaded ("" when nothing is): run, fine-tuned kind, dtype and device."""
    for (path, _), models in list(_cache.items()):
        tuned = Path(path)
        return f"`{tuned.parent.name}` with `{tuned.name}` ({models.kind}), {models.dtype} on {models.device}"
    return ""


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
        raise ChatError(f"{run_dir}: not a run folder (no config.json).")
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
def _load(run_dir: Path, choice: str, progress: Callable[[float, str], None]) -> ChatModels:
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
        progress(0.1, f"Loading the base model ({dtype}, {device})...")
        base = AutoModelForCausalLM.from_pretrained(base_path, **kwargs, **SAFE_LOAD)
        base.eval()
        if choice == ADAPTER:
            from peft import PeftModel

            progress(0.6, "Loading the adapter...")
            peft_model = PeftModel.from_pretrained(base, str(tuned_path))
            peft_model.eval()
            return ChatModels(None, peft_model, tokenizer, ADAPTER, device, dtype)
        progress(0.5, f"Loading the merged model {choice}...")
        merged_kwargs = {k: v for k, v in kwargs.items() if k != "quantization_config"}
        merged_kwargs.setdefault("dtype", torch.bfloat16 if device == "cuda" else torch.float32)
        tuned = AutoModelForCausalLM.from_pretrained(str(tuned_path), **merged_kwargs, **SAFE_LOAD)
        tuned.eval()
        return ChatModels(base, tuned, tokenizer, MERGED, device, dtype)
    except StudioError:
        raise
    except Exception as exc:  # unreadable weights, adapter for another base, out of memory
        raise ChatError(f"Loading the models for {run_dir.name} failed: {type(exc).__name__}: {exc}") from exc


def load_chat_models(
    run_dir: str | Path, choice: str = ADAPTER, progress: Callable[[float, str], None] | None = None
) -> ChatModels:
    """The cached models for ``run_dir`` and ``choice`` (loading them, and freeing any other run's, first).

    The caller must hold the chat lock (``stream_side_by_side`` does); the cache keeps one (path, kind) entry.

    Args:
        run_dir: a run folder (config.json naming the base, plus ``adapter/`` or a merged export).
        choice: "adapter" or the name of a merged export folder inside ``run_dir`` (see finetuned_choices).
        progress: called as ``progress(fraction in [0, 1], description)`` while loading.

    Raises:
        ChatError: no such run, adapter or merged folder, or the weights fail to load.
        ModelError: the base named in config.json cannot be resolved.
    """
    folder = Path(run_dir).expanduser().resolve()
    choices = finetuned_choices(folder)
    if choice not in choices:
        have = ", ".join(choices) or "nothing yet (train a run, or wait for it to save its adapter)"
        raise ChatError(f"{folder.name}: no fine-tuned model {choice!r} here; this run has {have}.")
    key = (str(folder / choice), ADAPTER if choice == ADAPTER else MERGED)
    if key not in _cache:
        _free_cache()
        _cache[key] = _load(folder, choice, progress or (lambda _f, _d: None))
    return _cache[key]


def _stream(
    model: Any, tokenizer: Any, prompt: str, temperature: float, top_p: float, max_new_tokens: int
) -> Generator[str, None, None]:
    """Generate in a thread and yield the growing answer text (special tokens skipped) as tokens arrive.

    Closing the generator early stops generation after the current token and joins the thread.
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    stop = threading.Event()

    class _StopOnEvent(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

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
    kwargs = {
        "input_ids": encoded["input_ids"].to(device),
        "attention_mask": encoded["attention_mask"].to(device),
        "max_new_tokens": max_new_tokens,
        "streamer": streamer,
        "stopping_criteria": StoppingCriteriaList([_StopOnEvent()]),
        "pad_token_id": tokenizer.pad_token_id,
        **sampling,
    }
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with torch.inference_mode():
                model.generate(**kwargs)
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
        stop.set()
        thread.join()
    if errors:
        exc = errors[0]
        if type(exc).__name__ == "OutOfMemoryError":
            raise ChatError("Out of GPU memory while generating; lower max new tokens.") from exc
        raise ChatError(f"Generation failed: {type(exc).__name__}: {exc}") from exc


def _check_settings(prompt: str, temperature: float, top_p: float, max_new_tokens: int) -> None:
    problems = []
    if not prompt or not prompt.strip():
        problems.append("type a prompt first")
    if not 0 <= temperature <= 5:
        problems.append(f"temperature must be between 0 and 5 (got {temperature})")
    if not 0 < top_p <= 1:
        problems.append(f"top-p must be in (0, 1] (got {top_p})")
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
        problems.append(f"max new tokens must be between 1 and {MAX_NEW_TOKENS_LIMIT} (got {max_new_tokens})")
    if problems:
        text = "; ".join(problems)
        raise ChatError(text[0].upper() + text[1:] + ".")


def stream_side_by_side(
    run_dir: str | Path | None,
    choice: str,
    prompt: str,
    temperature: float = 0.7,
    top_p: float = 0.9,
    max_new_tokens: int = 256,
    job: TrainingJob | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> Generator[tuple[str, str], None, None]:
    """Answer ``prompt`` with the base model, then the fine-tuned one, streaming both.

    Holds the chat lock from the first ``next()`` until the generator ends or is closed, so training cannot
    start meanwhile; closing it early stops generation after the current token.

    Args:
        run_dir: the run folder.
        choice: "adapter" or a merged export folder name (see finetuned_choices).
        prompt: the user message, rendered with the chat template and ``add_generation_prompt=True``.
        temperature: 0 is greedy decoding; > 0 samples (at most 5).
        top_p: nucleus sampling mass in (0, 1] (only used when sampling).
        max_new_tokens: answer length cap per model, in tokens (1..4096).
        job: the app's TrainingJob; chat refuses while its snapshot is active.
        progress: ``progress(fraction, description)`` while models load.

    Yields:
        (base answer so far, fine-tuned answer so far): first ("", ""), then one tuple per streamed piece.

    Raises:
        JobBusyError: training is running (TRAINING_BUSY_MESSAGE) or another chat answer is being generated.
        ChatError: no run picked, no such adapter / merged folder, bad settings, or loading/generation failed.
        ModelError: the run's base model cannot be resolved.
    """
    if not run_dir:
        raise ChatError("Pick a run folder first (train one in the Train tab).")
    _check_settings(prompt, temperature, top_p, int(max_new_tokens))
    if not _lock.acquire(blocking=False):
        raise JobBusyError(CHAT_BUSY_MESSAGE)
    try:
        # Checked under the chat lock: a job holding the training slot waits for free_models() (which needs this
        # lock) before it loads anything, so one of the two always sees the other.
        from core.slot import SLOT

        if SLOT.busy() or (job is not None and job.snapshot().is_active):
            raise JobBusyError(TRAINING_BUSY_MESSAGE)
        models = load_chat_models(run_dir, choice, progress)
        if progress is not None:
            progress(1.0, "Generating...")
        args = (prompt, float(temperature), float(top_p), int(max_new_tokens))
        base_text = tuned_text = ""
        yield base_text, tuned_text
        if models.base is None:
            base_model, no_adapter = models.finetuned, models.finetuned.disable_adapter()
        else:
            base_model, no_adapter = models.base, contextlib.nullcontext()
        # closing() exits first, so the generation thread is joined before the adapter is switched back on
        with no_adapter, contextlib.closing(_stream(base_model, models.tokenizer, *args)) as parts:
            for base_text in parts:
                yield base_text, tuned_text
        with contextlib.closing(_stream(models.finetuned, models.tokenizer, *args)) as parts:
            for tuned_text in parts:
                yield base_text, tuned_text
    finally:
        _lock.release()
