"""VRAM tab: pick a GPU, estimate full / LoRA / QLoRA memory by component, recommend a method."""

from __future__ import annotations

from typing import Any

import gradio as gr

from core.config import TrainingConfig
from core.hardware import cpu_summary, detect_gpus
from core.modelspec import ModelSpec
from core.presets import GPU_CATALOGUE, SEED_GUIDANCE, gpu_by_name
from core.vram import estimate_all, estimate_cpu_ram_gib, fit_status, recommend
from ui.views import METHOD_LABELS, estimate_figure, estimate_frame

CUSTOM = "Custom size"


def gpu_choices() -> tuple[list[str], str]:
    """Dropdown choices (detected GPUs first, then the catalogue, then custom) and the default choice."""
    detected = [f"Detected: {g.name} ({g.total_gib:.1f} GiB)" for g in detect_gpus()]
    names = detected + [g.name for g in GPU_CATALOGUE] + [CUSTOM]
    return names, detected[0] if detected else "NVIDIA RTX 4090 (24 GB)"


def gpu_gib_for(choice: str, custom_gib: float | None) -> float:
    """GiB of the chosen GPU. Raises gr.Error for an unusable custom size."""
    if choice == CUSTOM:
        if not custom_gib or custom_gib <= 0:
            raise gr.Error("Enter the GPU memory in GiB (a number above 0) for a custom size.")
        return float(custom_gib)
    if choice.startswith("Detected: "):
        return float(choice.rsplit("(", 1)[1].split()[0])
    gpu = gpu_by_name(choice)
    if gpu is None:
        raise gr.Error(f"Unknown GPU {choice!r}; pick one from the list or {CUSTOM}.")
    return gpu.memory_gib


def estimate(
    spec: ModelSpec | None, cfg: TrainingConfig, choice: str, custom_gib: float | None
) -> tuple[Any, ...]:
    """(recommendation markdown, table, figure) for the current model, settings and GPU."""
    if spec is None:
        return "Load a model in the Model tab first.", None, None
    gib = gpu_gib_for(choice, custom_gib)
    estimates = estimate_all(spec, cfg)
    rec = recommend(estimates, gib, spec, cfg)
    label = {"lora": "LoRA", "qlora": "QLoRA", "none": "Nothing fits as set"}[rec.method]
    name = choice if choice != CUSTOM else "a custom GPU"
    text = f"### {label} on {name} ({gib:g} GiB usable)\n{rec.reason}"
    notes = [n for e in estimates.values() for n in e.notes]
    if notes:
        text += "\n\n" + "\n".join(f"- {n}" for n in dict.fromkeys(notes))
    text += "\n\n" + " · ".join(
        f"{METHOD_LABELS[m]}: **{fit_status(e.total_gib, gib)}** ({e.total_gib:.1f} GiB)"
        for m, e in estimates.items()
    )
    if not detect_gpus():
        text += (
            f"\n\n**On this machine:** {cpu_summary()} LoRA on the CPU with these settings needs about "
            f"{estimate_cpu_ram_gib(spec, cfg):.1f} GiB of RAM."
        )
    return text, estimate_frame(estimates), estimate_figure(estimates, gib)


def render() -> dict[str, Any]:
    """Build the tab. Wiring to the form and model state happens in ui.app."""
    names, default = gpu_choices()
    with gr.Row():
        gpu = gr.Dropdown(choices=names, value=default, label="GPU", scale=3)
        custom = gr.Number(
            value=24, label="Custom size (GiB), used when GPU is 'Custom size'", minimum=0, scale=1
        )
        go = gr.Button("Estimate", variant="primary", scale=1)
    recommendation = gr.Markdown()
    with gr.Row():
        table = gr.Dataframe(label="Estimated peak memory by component (GiB)", scale=1)
        figure = gr.Plot(label="Memory by component", scale=1)
    with gr.Accordion("The textbook's rule of thumb (chapter 26.9.4)", open=False):
        gr.Markdown(
            "| GPU | model | method |\n|---|---|---|\n"
            + "\n".join(f"| {g} GB | {m} | {meth} |" for g, m, meth in SEED_GUIDANCE)
            + "\n\nThe estimate above refines this table with your model, max_length, batch size and rank."
        )
    return {
        "gpu": gpu,
        "custom": custom,
        "go": go,
        "recommendation": recommendation,
        "table": table,
        "figure": figure,
    }
