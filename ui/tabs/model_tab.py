"""Model tab: preset dropdown + free hub id / folder box; shows the model's facts."""

from __future__ import annotations

from typing import Any

import gradio as gr

from core.config import DEFAULT_MODEL
from core.errors import StudioError
from core.model import inspect_model
from core.presets import MODEL_PRESETS, default_target_modules, suggested_learning_rate
from ui.forms import ConfigForm, info
from ui.views import model_facts_markdown


def load_model_info(
    model_name_or_path: str, progress: gr.Progress = gr.Progress(track_tqdm=True)
) -> tuple[Any, ...]:
    """Inspect a model (config only; the embedded default is converted once, with a progress bar)."""
    if not (model_name_or_path or "").strip():
        return (
            None,
            "Enter a hub id (owner/name) or a local model folder.",
            gr.update(choices=[], value=[]),
            gr.update(),
        )
    progress(0, desc=f"Reading {model_name_or_path}")
    try:
        spec = inspect_model(model_name_or_path)
    except StudioError as exc:
        return None, f"**Cannot use this model.** {exc}", gr.update(choices=[], value=[]), gr.update()
    targets = list(default_target_modules(spec.model_type, spec.linear_names))
    lr = suggested_learning_rate(spec.num_params)
    facts = (
        model_facts_markdown(spec)
        + f"\nSuggested learning rate for this size: {lr:g} (set in the Train tab)."
    )
    if spec.source.startswith("catalogue"):
        facts += (
            f"\n\nShape from LoRA Studio's offline catalogue ({spec.source.split(' ', 1)[-1]}), not downloaded: "
            "the estimate and the GPU tab's plan work now; training downloads the weights from the Hugging Face "
            "Hub, so it needs a connection (and, for gated models, an accepted licence and `hf auth login`)."
        )
    return spec, facts, gr.update(choices=spec.linear_names, value=targets), lr
    return spec, facts, gr.update(choices=spec.linear_names, value=targets), lr


def render(form: ConfigForm) -> dict[str, Any]:
    """Build the tab; registers ``model_name_or_path``. Returns its components."""
    with gr.Row():
        preset = gr.Dropdown(
            choices=[(p.label, p.model_name_or_path) for p in MODEL_PRESETS],
            value=DEFAULT_MODEL,
            label="Preset",
            scale=2,
        )
        path = form.add(
            "model_name_or_path",
            gr.Textbox(
                value=DEFAULT_MODEL,
                label="Hub id or local model folder",
                info=info("model_name_or_path"),
                scale=3,
            ),
        )
    load = gr.Button("Load model info", variant="primary")
    facts = gr.Markdown("Loading the embedded model's facts...")
    preset.change(lambda p: p, preset, path, api_visibility="private")
    return {"preset": preset, "path": path, "load": load, "facts": facts}
