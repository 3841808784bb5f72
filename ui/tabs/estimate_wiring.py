"""The GPU memory tab's events: the estimate (re-run whenever a field it reads changes), the plan and its Apply,
and the "what fits" table (a clicked model loads in the Model tab)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from core.errors import StudioError
from core.model import target_modules_for
from core.modelspec import ModelSpec
from ui.forms import ConfigForm
from ui.i18n import tr, tr_text
from ui.tabs import estimate_tab

FIX_FIRST = "**Fix the settings first:** {problems}"


def wire(
    e: dict[str, Any],
    form: ConfigForm,
    spec_state: Any,
    model_path: Any,
    load: tuple[Callable[..., Any], list[Any]],
    queue: dict[str, Any],
) -> tuple[list[Any], list[Any], Callable[..., Any]]:
    """Connect the tab's events (inside the Blocks, after the tabs are rendered).

    Args:
        e: estimate_tab.render()'s components.
        form: the Train tab's fields (the estimate reads the settings as they are).
        spec_state: the loaded model's ModelSpec (gr.State).
        model_path: the Model tab's hub id / folder box (a clicked catalogue model is written there).
        load: (the app's model-loading handler, its outputs), run after a catalogue model is picked.
        queue: the model-loading queue's concurrency settings.

    Returns:
        (the estimate's inputs, its outputs, its handler), for the language switch to render it again.
    """
    load_model, load_outputs = load

    def run_estimate(spec: ModelSpec | None, gpu: str, custom: float | None, *values: Any) -> tuple[Any, ...]:
        try:
            cfg = form.to_config(*values)
            if spec is not None:
                target_modules_for(cfg, spec)
        except StudioError as exc:
            return tr(FIX_FIRST).format(problems=tr_text(str(exc))), None, None, None
        try:
            return estimate_tab.estimate(spec, cfg, gpu, custom)
        except gr.Error as exc:  # an unusable GPU size: no plan may stay applicable
            return f"**{exc.message}**", None, None, None

    run_estimate.__signature__ = form.signature(("spec", "gpu", "custom_gib"))  # type: ignore[attr-defined]

    est_inputs = [spec_state, e["gpu"], e["custom"], *form.inputs]
    est_outputs = [e["recommendation"], e["table"], e["figure"], e["plan"]]
    e["go"].click(run_estimate, est_inputs, est_outputs, api_name="estimate")
    plan_components = [form.components[name] for name in estimate_tab.PLAN_FIELDS]
    # every field the estimate reads (core.vram.estimate_vram) re-runs it, so its plan is never stale
    read = ("lora_r", "lora_dropout", "lora_target_modules", "dtype", "bnb_4bit_compute_dtype")
    read += ("bnb_4bit_use_double_quant", "packing")
    estimate_inputs = [*plan_components, *(form.components[name] for name in read)]
    for comp in (spec_state, e["gpu"], e["custom"], *estimate_inputs):
        comp.change(run_estimate, est_inputs, est_outputs, api_visibility="private")

    def run_what_fits(
        gpu: str, custom: float | None, size: str, family: str, *values: Any
    ) -> tuple[Any, ...]:
        try:
            cfg = form.to_config(*values)
        except StudioError as exc:
            return None, None, tr(FIX_FIRST).format(problems=tr_text(str(exc)))
        return estimate_tab.what_fits(cfg, gpu, custom, size, family)

    run_what_fits.__signature__ = form.signature(("gpu", "custom_gib", "size", "family"))  # type: ignore[attr-defined]
    fits_inputs = [e["gpu"], e["custom"], e["size"], e["family"], *form.inputs]
    fits_outputs = [e["fits_table"], e["fits_plot"], e["fits_summary"]]
    e["show"].click(run_what_fits, fits_inputs, fits_outputs, api_name="what_fits")
    for comp in (e["size"], e["family"]):  # a filter re-runs the table
        comp.change(run_what_fits, fits_inputs, fits_outputs, api_visibility="private")
    for comp in (e["gpu"], e["custom"], *estimate_inputs):  # stale: hide it
        comp.change(estimate_tab.clear_fits, None, fits_outputs, api_visibility="private")
    e["fits_table"].select(
        estimate_tab.pick_model, None, [model_path, e["fits_summary"]], api_visibility="private"
    ).then(load_model, model_path, load_outputs, api_visibility="private", **queue)
    e["apply"].click(
        estimate_tab.apply_plan,
        [e["plan"], *plan_components],
        [*plan_components, e["applied"]],
        api_name="apply_plan",
    )
    return est_inputs, est_outputs, run_estimate
