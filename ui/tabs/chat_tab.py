"""Chat tab: the same prompt to the base model and the fine-tuned one, side by side, streaming.

An answer asked while a training run (or another answer) holds the GPU waits in the same line as training runs
(core.chat) and its status shows its place and estimated wait; Stop ends it at once, keeping what was streamed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from core import chat
from core.errors import StudioError
from core.job import TrainingJob
from ui.i18n import tr

HINT = (
    "The base model and the fine-tuned one answer the same prompt, one after the other, through the model's chat "
    "template. With an adapter both share one copy of the base weights (the base answers with the adapter "
    "switched off). Temperature 0 is greedy decoding: the same prompt gives the same answer."
)
PROMPT_INFO = "Enter sends; Shift+Enter adds a new line."
STOP_LABEL = "Stop"

_stops: dict[
    str, set[threading.Event]
] = {}  # owner (the page's session) -> stop flags of its answers in flight
_stops_lock = threading.Lock()


def run_choices(runs: list[str]) -> list[tuple[str, str]]:
    """(label, folder) dropdown choices: a run by its folder's name, as the Export and Runs tabs show it."""
    return [(Path(run).name, run) for run in runs]


def refresh_runs(output_dir: str, current: str | None = None) -> Any:
    """Dropdown update: runs with an adapter or merged export, keeping ``current`` when it is still there."""
    runs = chat.chat_runs(output_dir)
    value = current if current in runs else (runs[0] if runs else None)
    return gr.update(choices=run_choices(runs), value=value)


def refresh_all(
    output_dir: str, current_run: str | None = None, current_choice: str | None = None
) -> tuple[Any, Any]:
    """Both dropdown updates, for the Refresh button and after an export: the runs list (keeping
    ``current_run``) and that run's fine-tuned choices, re-read from disk (keeping ``current_choice``).

    The run dropdown's change event does not fire when its value stays the same, so a merged export written
    into the selected run appears only through this second update.

    Args:
        output_dir: the runs folder (the session's own on a shared demo).
        current_run: the run selected now (a path), or None.
        current_choice: the fine-tuned model selected now ("adapter", "merged", ...), or None.

    Returns:
        (run dropdown update, fine-tuned dropdown update).
    """
    runs = chat.chat_runs(output_dir)
    run = current_run if current_run in runs else (runs[0] if runs else None)
    choices = chat.finetuned_choices(run)
    choice = current_choice if current_choice in choices else (choices[0] if choices else None)
    return gr.update(choices=run_choices(runs), value=run), gr.update(choices=choices, value=choice)


def pick_run(run_dir: str | None) -> Any:
    """A run was chosen: free another run's cached models, offer its fine-tuned versions (adapter first)."""
    chat.free_models(keep_run=run_dir or None)
    choices = chat.finetuned_choices(run_dir)
    return gr.update(choices=choices, value=choices[0] if choices else None)


def stop_answer(owner: str | None) -> str:
    """Stop ``owner``'s answers in flight (waiting or generating): generation ends within one token.

    Args:
        owner: who asked (ui.app passes the page's ``request.session_hash``); None stops nothing.

    Returns:
        A status line for the chat status box (the answer itself then ends with "Stopped").
    """
    with _stops_lock:
        flags = list(_stops.get(owner or "", ()))
    for flag in flags:
        flag.set()
    return tr("Stopping...") if flags else tr("No answer is being generated.")


def _minutes(wait_s: float | None) -> str:
    if wait_s is None:
        return tr("not known yet")
    if wait_s < 60:
        return tr("under a minute")
    return tr("about {minutes} min").format(minutes=round(wait_s / 60))


def waiting_status(waiting: chat.Waiting) -> str:
    """The status line of an answer in line: who holds the GPU, its place and the estimated wait."""
    if waiting.behind_chat:
        doing = tr("Waiting for another chat answer to finish (one answer at a time on this machine).")
    else:
        doing = tr("Waiting for the training run to finish (chat and training take turns on this machine).")
    where = tr(
        "Place in line: {place} ({ahead} ahead). Estimated wait: {wait}. Stop leaves the line."
    ).format(place=waiting.place + 1, ahead=waiting.place, wait=_minutes(waiting.wait_s))
    return f"**{doing}** {where}"


def _loaded() -> str:
    """What is loaded, in the page's language ("" when nothing is)."""
    values = chat.loaded_values()
    return tr(chat.LOADED_TEMPLATE).format(**values) if values else ""


def _error_text(exc: StudioError) -> str:
    if isinstance(exc, chat.ChatError):
        template = tr(exc.template)
        return template.format(**exc.values) if exc.values else template
    return str(exc)


def respond(
    run_dir: str | None,
    choice: str | None,
    prompt: str,
    temperature: float,
    top_p: float,
    max_new_tokens: float,
    job: TrainingJob | None = None,
    progress: gr.Progress | None = None,
    owner: str | None = None,
) -> Iterator[tuple[str, str, str]]:
    """Stream (base answer, fine-tuned answer, status markdown) for one prompt.

    While training (or another answer) holds the GPU the status shows the place in line and the estimated wait;
    the answer then starts by itself. ``stop_answer(owner)`` ends it (waiting or generating), keeping what was
    streamed, with "Stopped" in the status.

    Args:
        run_dir, choice, prompt, temperature, top_p, max_new_tokens: as core.chat.stream_side_by_side.
        job: unused (kept for ui.app's call); every job of the process shares the line the answer waits in.
        progress: Gradio's progress bar, shown while models load.
        owner: who asks (``request.session_hash``), so that this page's Stop button finds the answer.

    Raises:
        gr.Error: no run / adapter, bad settings or a failed load, with the reason (in the page's language).
    """
    del job
    if not run_dir:
        raise gr.Error(tr("Pick a run folder first (train one in the Train tab)."), title=tr("No run"))
    choice = choice or next(iter(chat.finetuned_choices(run_dir)), None)  # API callers may leave it empty
    if not choice:
        raise gr.Error(
            tr("{run}: no adapter or merged export to chat with yet.").format(run=run_dir),
            title=tr("Nothing to load"),
        )

    def loading(fraction: float, template: str, **values: Any) -> None:
        if progress is not None:
            progress(fraction, desc=tr(template).format(**values))

    stop = threading.Event()
    with _stops_lock:
        _stops.setdefault(owner or "", set()).add(stop)
    parts = chat.stream_side_by_side(
        run_dir, choice, prompt, temperature, top_p, int(max_new_tokens), progress=loading, stop=stop
    )
    base = tuned = ""
    try:
        for part in parts:
            if isinstance(part, chat.Waiting):
                yield base, tuned, waiting_status(part)
                continue
            base, tuned = part
            doing = tr("Fine-tuned model answering...") if tuned else tr("Base model answering...")
            yield base, tuned, f"{doing} {_loaded()}"
    except StudioError as exc:
        raise gr.Error(_error_text(exc), title=tr("Chat failed")) from None
    finally:
        parts.close()
        with _stops_lock:
            flags = _stops.get(owner or "", set())
            flags.discard(stop)
            if not flags:
                _stops.pop(owner or "", None)
    if stop.is_set():
        note = (
            tr("Stopped: what was generated before Stop is kept.")
            if base
            else tr("Stopped before the answer started; nothing was generated.")
        )
        yield base, tuned, f"**{note}** {_loaded()}"
        return
    yield base, tuned, tr("Done.") + f" {_loaded()}"


def render() -> dict[str, Any]:
    """Build the tab; ui.app wires the run list, the run choice, Send (button and Enter) and Stop."""
    gr.Markdown(HINT)
    with gr.Row():
        run = gr.Dropdown(choices=[], label="Run folder", scale=4, allow_custom_value=True)
        finetuned = gr.Dropdown(
            choices=[],
            label="Fine-tuned model",
            info="The run's adapter, or a merged export of it.",
            allow_custom_value=True,  # API callers name it; core.chat checks it exists
            scale=2,
        )
        refresh = gr.Button("Refresh", scale=1)
    # lines=1 with max_lines > 1: Gradio's front end submits on Enter only when lines == 1 (with lines > 1 Enter
    # is a new line and Shift+Enter submits); max_lines > 1 makes it a growing <textarea>, where Shift+Enter
    # is the browser's own new line.
    prompt = gr.Textbox(
        label="Prompt",
        info=PROMPT_INFO,
        lines=1,
        max_lines=12,
        placeholder="Ask both models the same question...",
    )
    with gr.Row():
        temperature = gr.Slider(0, 2, value=0.0, step=0.05, label="Temperature", info="0 = greedy")
        top_p = gr.Slider(0.05, 1, value=0.9, step=0.05, label="Top-p")
        max_new_tokens = gr.Slider(1, 1024, value=256, step=1, label="Max new tokens")
    with gr.Row():
        send = gr.Button("Send", variant="primary", scale=3)
        stop = gr.Button(STOP_LABEL, variant="stop", scale=1)
    status = gr.Markdown()
    with gr.Row():
        base = gr.Textbox(label="Base model", lines=12, max_lines=30, interactive=False)
        tuned = gr.Textbox(label="Fine-tuned", lines=12, max_lines=30, interactive=False)
    return {
        "run": run,
        "finetuned": finetuned,
        "refresh": refresh,
        "prompt": prompt,
        "temperature": temperature,
        "top_p": top_p,
        "max_new_tokens": max_new_tokens,
        "send": send,
        "stop": stop,
        "status": status,
        "base": base,
        "tuned": tuned,
    }


def wire(
    c: dict[str, Any],
    output_dir: Any,
    session: Any,
    triggers: tuple[Any, ...],
    exported: Any,
    max_waiting: int,
) -> list[tuple[Any, list[Any], list[Any]]]:
    """Connect the tab's events (call inside the Blocks, after render()).

    Args:
        c: render()'s components.
        output_dir: the Train tab's runs-folder textbox.
        session: the app's ui.session.SessionUI (each visitor's own runs folder and paths).
        triggers: events that refresh both lists, e.g. the page load's ``.then`` and the tab's ``.select``.
        exported: the Export tab's "exported" state: a new export refreshes both lists at once.
        max_waiting: answers that may wait in line at once (besides the one generating).

    Returns:
        (fn, inputs, outputs) steps that render the lists again in the page's language, for ui.language.wire.
    """
    lists = [c["run"], c["finetuned"]]
    lists_in = [output_dir, c["run"], c["finetuned"]]

    def runs(output: str, run: str | None, choice: str | None, request: gr.Request) -> tuple[Any, Any]:
        return refresh_all(str(session.runs_dir(request, output)), run, choice)

    for trigger in (*triggers, c["refresh"].click, exported.change):
        trigger(runs, lists_in, lists, api_visibility="private")

    def pick(run_dir: str | None, request: gr.Request) -> Any:
        return pick_run(session.own_path(request, run_dir, "run folder") if run_dir else None)

    c["run"].change(pick, c["run"], c["finetuned"], api_visibility="private")

    def answer(
        run_dir: str | None,
        finetuned: str | None,
        prompt: str,
        temperature: float,
        top_p: float,
        max_new_tokens: float,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),
    ) -> Any:
        run_dir = session.own_path(request, run_dir, "run folder") if run_dir else None
        yield from respond(
            run_dir,
            finetuned,
            prompt,
            temperature,
            top_p,
            max_new_tokens,
            progress=progress,
            owner=request.session_hash,
        )

    inputs = [c["run"], c["finetuned"], c["prompt"], c["temperature"], c["top_p"], c["max_new_tokens"]]
    outputs = [c["base"], c["tuned"], c["status"]]
    # not the model-loading queue: an answer waiting for a training run must not block model loads and
    # validation; core.chat makes answers and training take turns on the GPU itself (core.slot's line)
    queue = {"concurrency_id": "chat", "concurrency_limit": max_waiting + 2}
    c["send"].click(answer, inputs, outputs, api_name="chat", **queue)
    c["prompt"].submit(answer, inputs, outputs, api_visibility="private", **queue)

    def stop(request: gr.Request) -> str:
        return stop_answer(request.session_hash)

    c["stop"].click(stop, None, c["status"], api_name="stop_chat", queue=False)
    return [(runs, lists_in, lists)]
