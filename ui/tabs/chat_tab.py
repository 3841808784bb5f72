"""Chat tab: the same prompt to the base model and the fine-tuned one, side by side, streaming."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from core import chat
from core.errors import JobBusyError, StudioError
from core.job import TrainingJob

HINT = (
    "The base model and the fine-tuned one answer the same prompt, one after the other, through the model's chat "
    "template. With an adapter both share one copy of the base weights (the base answers with the adapter "
    "switched off). Temperature 0 is greedy decoding: the same prompt gives the same answer."
)


def refresh_runs(output_dir: str, current: str | None = None) -> Any:
    """Dropdown update: runs with an adapter or merged export, keeping ``current`` when it is still there."""
    runs = chat.chat_runs(output_dir)
    return gr.update(choices=runs, value=current if current in runs else (runs[0] if runs else None))


def pick_run(run_dir: str | None) -> Any:
    """A run was chosen: free another run's cached models, offer its fine-tuned versions (adapter first)."""
    chat.free_models(keep_run=run_dir or None)
    choices = chat.finetuned_choices(run_dir)
    return gr.update(choices=choices, value=choices[0] if choices else None)


def respond(
    run_dir: str | None,
    choice: str | None,
    prompt: str,
    temperature: float,
    top_p: float,
    max_new_tokens: float,
    job: TrainingJob | None,
    progress: gr.Progress | None = None,
) -> Iterator[tuple[str, str, str]]:
    """Stream (base answer, fine-tuned answer, status markdown) for one prompt.

    Training running or another answer in progress gives a status message, not an error. Raises gr.Error for a
    missing run / adapter, bad settings or a failed load, with the reason.
    """
    if not run_dir:
        raise gr.Error("Pick a run folder first (train one in the Train tab).", title="No run")
    choice = choice or next(iter(chat.finetuned_choices(run_dir)), None)  # API callers may leave it empty
    if not choice:
        raise gr.Error(f"{run_dir}: no adapter or merged export to chat with yet.", title="Nothing to load")

    def loading(fraction: float, desc: str) -> None:
        if progress is not None:
            progress(fraction, desc=desc)

    if progress is not None:
        progress(0, desc="Loading model...")
    parts = chat.stream_side_by_side(
        run_dir, choice, prompt, temperature, top_p, int(max_new_tokens), job=job, progress=loading
    )
    base = tuned = ""
    try:
        for base, tuned in parts:
            doing = "Fine-tuned model answering..." if tuned else "Base model answering..."
            yield base, tuned, f"{doing} {chat.loaded_summary()}"
    except JobBusyError as exc:
        yield base, tuned, f"**{exc}**"
        return
    except StudioError as exc:
        raise gr.Error(str(exc), title="Chat failed") from None
    finally:
        parts.close()
    yield base, tuned, f"Done. {chat.loaded_summary()}"


def render() -> dict[str, Any]:
    """Build the tab; ui.app wires the run list, the run choice and the Send button."""
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
    prompt = gr.Textbox(label="Prompt", lines=3, placeholder="Ask both models the same question...")
    with gr.Row():
        temperature = gr.Slider(0, 2, value=0.0, step=0.05, label="Temperature", info="0 = greedy")
        top_p = gr.Slider(0.05, 1, value=0.9, step=0.05, label="Top-p")
        max_new_tokens = gr.Slider(1, 1024, value=256, step=1, label="Max new tokens")
    send = gr.Button("Send", variant="primary")
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
        "status": status,
        "base": base,
        "tuned": tuned,
    }
