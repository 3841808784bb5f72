"""Model tab: preset dropdown + free hub id / folder box; shows the model's facts."""

from __future__ import annotations

from typing import Any

import gradio as gr

from core.config import DEFAULT_MODEL
from core.errors import StudioError
from core.model import inspect_model
from core.presets import MODEL_PRESETS, default_target_modules, suggested_learning_rate
from ui.forms import ConfigForm, info
from ui.i18n import tr, tr_text
from ui.views import model_facts_markdown

CUSTOM_PRESET = "custom"  # the preset dropdown's value for a hub id or folder that is not one of the presets
CUSTOM_LABEL = "Custom (the hub id or folder on the right)"
PRESET_IDS = frozenset(p.model_name_or_path for p in MODEL_PRESETS)


def preset_for(model_name_or_path: str | None) -> str:
    """The preset dropdown's value for a model: its id when it is a preset, else CUSTOM_PRESET."""
    name = (model_name_or_path or "").strip()
    return name if name in PRESET_IDS else CUSTOM_PRESET


def preset_choices() -> list[tuple[str, str]]:
    """The preset dropdown's (label, value) pairs, labels in the page's language, ending with the custom entry."""
    return [(tr(p.label), p.model_name_or_path) for p in MODEL_PRESETS] + [(tr(CUSTOM_LABEL), CUSTOM_PRESET)]


def localized_presets(current: str | None) -> Any:
    """The preset dropdown again with its labels in the page's language, keeping the choice (page load, language
    switch)."""
    return gr.update(choices=preset_choices(), value=current or CUSTOM_PRESET)


def load_model_info(model_name_or_path: str, progress: Any = gr.Progress(track_tqdm=True)) -> tuple[Any, ...]:
    """Inspect a model (config only; the embedded default is converted once, with a progress bar).

    Args:
        model_name_or_path: a hub id or local folder, as typed.
        progress: gr.Progress (or any callable taking (fraction, desc=)).

    Returns:
        (spec, facts markdown, Train's target modules, learning rate, preset dropdown value). On success: the new
        model's spec, its Linear modules with the family's default targets, the suggested learning rate, and the
        preset that matches it (or CUSTOM_PRESET). On failure: spec None (no model is loaded), the facts say why,
        the target modules and learning rate are ``gr.update()`` (the Train tab keeps what the user set), and the
        preset is CUSTOM_PRESET, so it never names a model that did not load.
    """
    if not (model_name_or_path or "").strip():
        message = tr("Enter a hub id (owner/name) or a local model folder.")
        return None, message, gr.update(), gr.update(), CUSTOM_PRESET
    progress(0, desc=tr("Reading {model}").format(model=model_name_or_path))
    try:
        spec = inspect_model(model_name_or_path)
    except StudioError as exc:
        facts = tr("**Cannot use this model.** {error}").format(error=tr_text(str(exc)))
        return None, facts, gr.update(), gr.update(), CUSTOM_PRESET
    targets = list(default_target_modules(spec.model_type, spec.linear_names))
    lr = suggested_learning_rate(spec.num_params)
    facts = (
        model_facts_markdown(spec)
        + "\n"
        + tr("Suggested learning rate for this size: {lr} (set in the Train tab).").format(lr=f"{lr:g}")
    )
    if spec.source.startswith("catalogue"):
        facts += "\n\n" + tr(
            "Shape from LoRA Studio's offline catalogue ({date}), not downloaded: the estimate and the GPU tab's "
            "plan work now; training downloads the weights from the Hugging Face Hub, so it needs a connection "
            "(and, for gated models, an accepted licence and `hf auth login`)."
        ).format(date=spec.source.split(" ", 1)[-1])
    return (
        spec,
        facts,
        gr.update(choices=spec.linear_names, value=targets),
        lr,
        preset_for(model_name_or_path),
    )


def render(form: ConfigForm) -> dict[str, Any]:
    """Build the tab; registers ``model_name_or_path``. Returns its components."""
    with gr.Row():
        preset = gr.Dropdown(
            choices=[(p.label, p.model_name_or_path) for p in MODEL_PRESETS]
            + [(CUSTOM_LABEL, CUSTOM_PRESET)],
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
    # choosing Custom keeps the box as it is (type the id there); a preset writes its id into the box
    preset.change(lambda p: gr.update() if p == CUSTOM_PRESET else p, preset, path, api_visibility="private")
    # typing an id (not a preset's) makes the preset say Custom at once, never the model shown before
    path.input(preset_for, path, preset, api_visibility="private", show_progress="hidden")
    return {"preset": preset, "path": path, "load": load, "facts": facts}
