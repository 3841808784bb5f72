"""GPU memory tab: pick a GPU, estimate the Train tab's settings by component, and offer the fastest plan that
fits (core.plan) with one click to apply it."""

from __future__ import annotations

from typing import Any

import gradio as gr
from gradio.context import Context

from core.config import TrainingConfig
from core.fits import SIZE_BANDS, families
from core.hardware import cpu_summary, detect_gpus
from core.modelspec import ModelSpec
from core.plan import METHOD_LABELS as PLAN_LABELS
from core.plan import is_moe, plan_training
from core.presets import GPU_CATALOGUE, SEED_GUIDANCE, gpu_by_name
from core.vram import estimate_all, estimate_cpu_ram_gib, fit_status
from ui.i18n import tr, tr_text
from ui.tabs.train_tab import ACCUMULATION_MAX, BATCH_MAX
from ui.views import estimate_figure, estimate_frame, fits_figure, fits_frame, method_label, plan_lines

CUSTOM = "Custom size"  # the dropdown's value for a custom size (its label is translated, the value never is)
DETECTED = "Detected: {name} ({gib} GiB)"
PLOT_HEIGHT_PX = (
    380  # the estimate chart's height, set on the component so a hidden tab lays it out at full size
)
# A plot drawn while its tab is hidden gets plotly's default size and stays clipped until the window resizes:
# when the tab is opened, a resize event makes plotly (responsive, as Gradio sets it) fit the plot to its box.
RESIZE_JS = (
    "() => { for (const ms of [60, 300]) setTimeout(() => window.dispatchEvent(new Event('resize')), ms); }"
)


def gpu_choices() -> tuple[list[tuple[str, str]], str]:
    """Dropdown choices as (label, value): detected GPUs first, then the catalogue by size, then custom; and the
    default value. Labels are in the page's language (``tr``); values stay English, as ``gpu_gib_for`` reads them."""
    detected = [
        (
            tr(DETECTED).format(name=g.name, gib=f"{g.total_gib:.1f}"),
            DETECTED.format(name=g.name, gib=f"{g.total_gib:.1f}"),
        )
        for g in detect_gpus()
    ]
    catalogue = [(g.name, g.name) for g in sorted(GPU_CATALOGUE, key=lambda g: g.memory_gib)]
    names = detected + catalogue + [(tr(CUSTOM), CUSTOM)]
    return names, detected[0][1] if detected else "NVIDIA RTX 4090 (24 GB)"


def localized_gpu_choices(current: str | None) -> Any:
    """The GPU dropdown again with its labels in the page's language, keeping the choice (page load, language
    switch)."""
    names, default = gpu_choices()
    return gr.update(choices=names, value=current or default)


def gpu_gib_for(choice: str, custom_gib: float | None) -> float:
    """GiB of the chosen GPU. Raises gr.Error for an unusable custom size."""
    if choice == CUSTOM:
        if not custom_gib or not 0 < custom_gib <= 4096:
            raise gr.Error(
                tr("Enter the GPU memory in GiB (a number above 0 and at most 4096) for a custom size.")
            )
        return float(custom_gib)
    if choice.startswith("Detected: "):
        return float(choice.rsplit("(", 1)[1].split()[0])
    gpu = gpu_by_name(choice)
    if gpu is None:
        raise gr.Error(
            tr("Unknown GPU {choice}; pick one from the list or {custom}.").format(
                choice=repr(choice), custom=tr(CUSTOM)
            )
        )
    return gpu.memory_gib


# The Train / Model tab fields an applied plan sets (core.plan.Plan.config_fields), in this order.
PLAN_FIELDS = (
    "load_in_4bit",
    "load_in_8bit",
    "gradient_checkpointing",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "optim",
    "max_length",
)


def estimate(
    spec: ModelSpec | None, cfg: TrainingConfig, choice: str, custom_gib: float | None
) -> tuple[Any, ...]:
    """(markdown, table, figure, plan fields or None) for the Train tab's current settings on the chosen GPU.

    The headline is the settings as they are (method, memory, fits or not); below it the fastest plan that fits
    (core.plan.plan_training) with what it would change, which *Apply this plan* copies into the form.
    """
    if spec is None:
        return tr("Load a model in the Model tab first."), None, None, None
    gib = gpu_gib_for(choice, custom_gib)
    if is_moe(spec):
        return f"### {tr('Not estimated')}\n{tr_text(plan_training(spec, cfg, gib).reason)}", None, None, None
    estimates = estimate_all(spec, cfg)
    name = gpu_name(choice)
    current = estimates[cfg.method]
    ckpt = tr(
        "auto (off in this estimate)"
        if cfg.gradient_checkpointing == "auto"
        else "on"
        if cfg.checkpointing_on
        else "off"
    )
    text = tr(
        "### Your settings on {gpu} ({gib} GiB usable): {method} **{status}**, about {total} GiB\n"
        "Micro-batch {batch} x {accumulation} accumulation, max_length {max_length}, gradient checkpointing "
        "{checkpointing}, optimizer {optim}."
    ).format(
        gpu=name,
        gib=f"{gib:g}",
        method=method_label(cfg.method),
        status=tr(fit_status(current.total_gib, gib)),
        total=f"{current.total_gib:.1f}",
        batch=cfg.per_device_train_batch_size,
        accumulation=cfg.gradient_accumulation_steps,
        max_length=cfg.max_length,
        checkpointing=ckpt,
        optim=cfg.optim,
    )
    # everything the plan sets is searched, also what an earlier Apply fixed; splits stay within the sliders
    result = plan_training(
        spec, cfg, gib, checkpointing="auto", max_batch=BATCH_MAX, max_accumulation=ACCUMULATION_MAX
    )
    chosen = result.chosen
    if chosen is None:
        heading = tr("Nothing fits this GPU")
    elif chosen.shortened:
        heading = tr("Fits only with max_length {max_length}: {plan}").format(
            max_length=chosen.max_length, plan=tr(PLAN_LABELS[chosen.method])
        )
    else:
        heading = tr("Fastest plan that fits: {plan}").format(plan=tr(PLAN_LABELS[chosen.method]))
    text += f"\n\n### {heading}\n" + "\n\n".join(plan_lines(result, cfg))
    text += (
        "\n\n"
        + tr("**Each method with your other settings:** ")
        + " · ".join(
            f"{method_label(m)}: **{tr(fit_status(e.total_gib, gib))}** ({e.total_gib:.1f} GiB)"
            for m, e in estimates.items()
        )
    )
    text += "\n\n" + merge_line(spec, cfg)
    notes = [n for e in estimates.values() for n in e.notes]
    if notes:
        text += "\n\n" + tr("**How the estimate counts:**") + "\n\n"
        text += "\n".join(f"- {tr_text(n)}" for n in dict.fromkeys(notes))
    if not detect_gpus():  # said first: the GPU above is then only an example to plan for another machine
        text = (
            tr(
                "**On this machine:** {cpu} LoRA on the CPU with these settings needs about {ram} GiB of RAM."
            ).format(cpu=tr_text(cpu_summary()), ram=f"{estimate_cpu_ram_gib(spec, cfg):.1f}")
            + " "
            + tr("The estimate below is for the GPU chosen above, to plan a run on another machine.")
            + "\n\n"
            + text
        )
    fields = chosen.config_fields() if chosen else None
    return text, estimate_frame(estimates), estimate_figure(estimates, gib), fields


def gpu_name(choice: str) -> str:
    """How the recommendation names the chosen GPU, in the page's language."""
    if choice == CUSTOM:
        return tr("a custom GPU")
    if choice.startswith("Detected: "):
        name, gib = choice.removeprefix("Detected: ").rsplit(" (", 1)
        return tr(DETECTED).format(name=name, gib=gib.split()[0])
    return choice


def merge_line(spec: ModelSpec, cfg: TrainingConfig) -> str:
    """The merged export's memory (core.export_memory) with what this machine has now, in bold when short."""
    from core.export_memory import available_memory_gib, estimate_merge_memory, merge_device
    from core.model import target_modules_for

    device = merge_device()
    need = estimate_merge_memory(
        spec, "auto", device, spec.lora_params(cfg.lora_r, target_modules_for(cfg, spec))
    )
    have = available_memory_gib(device)
    line = f"{tr_text(need.summary(have))} ({tr_text(need.components())})."
    if need.total_gib > have:
        short = tr("Not enough here: export the adapter only, or merge on a bigger machine.")
        return tr("**After training:** {line}").format(line=f"**{line} {short}**")
    return tr("**After training:** {line}").format(line=line)


def apply_plan(fields: dict[str, Any] | None, *current: Any) -> tuple[Any, ...]:
    """Values for the PLAN_FIELDS components from a plan (``current`` are their values now), plus a message
    naming each change. Without a plan nothing changes."""
    if not fields:
        return (*(gr.update() for _ in PLAN_FIELDS), tr("Estimate first: there is no plan to apply."))
    changed = []
    values = []
    for name, now in zip(PLAN_FIELDS, current):
        new = fields[name]
        shown = {True: "true", False: "false"}.get(new, new) if name == "gradient_checkpointing" else new
        if str(shown).lower() != str(now).lower():
            changed.append(f"{name}: {str(now).lower()} -> {str(shown).lower()}")
        values.append(shown)
    message = (
        tr("Applied to the Train tab: {changes}.").format(changes="; ".join(changed))
        if changed
        else tr("The Train tab already has this plan's settings.")
    )
    return (*values, message)


def what_fits(
    cfg: TrainingConfig,
    choice: str,
    custom_gib: float | None,
    size_band: str,
    family: str,
    progress: gr.Progress = gr.Progress(),
) -> tuple[Any, Any, str]:
    """(table, figure, summary) of every catalogue model x method on the chosen GPU at the Train tab's
    max_length, effective batch and rank (core.fits)."""
    from core.fits import fit_rows

    gib = gpu_gib_for(choice, custom_gib)
    progress(0.1, desc=tr("Building the catalogue's model shapes (meta device, no download)"))
    rows = fit_rows(cfg, gib, size_band or "all sizes", family or "all families", BATCH_MAX, ACCUMULATION_MAX)
    fitting = sum(any(c.status == "fits" for c in r.cells.values()) for r in rows)
    effective = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    summary = tr(
        "**{fitting} of {total}** models fit {gib} GiB at max_length {max_length}, effective batch {effective}, "
        "r {r}. Each method's cell is its fastest plan that fits (checkpointing, micro-batch x accumulation), or "
        "its leanest try when none does; *tight* = over 90% of the GPU but under its size (may not fit), *no* = "
        "over its size. In the chart: circle fits, diamond tight, x does not fit; the dashed line is the GPU, the "
        "dotted one its 90% budget. Click a row to load that model in the Model tab."
    ).format(
        fitting=fitting,
        total=len(rows),
        gib=f"{gib:g}",
        max_length=cfg.max_length,
        effective=effective,
        r=cfg.lora_r,
    )
    return (
        gr.update(value=fits_frame(rows), visible=True),
        gr.update(value=fits_figure(rows, gib), visible=True),
        summary,
    )


def clear_fits() -> tuple[Any, Any, str]:
    """Hide a table computed for another GPU or settings (the GPU or the Train tab changed)."""
    return gr.update(visible=False), gr.update(visible=False), ""


def pick_model(evt: gr.SelectData) -> tuple[Any, str]:
    """The hub id of the clicked row (for the Model tab's path box) and a note on what happens next."""
    from core.catalogue import catalogue_entry

    row = evt.row_value if getattr(evt, "row_value", None) else None
    hub_id = str(row[0]) if row else ""
    entry = catalogue_entry(hub_id)
    if entry is None:
        return gr.update(), tr("Click a model's row to load it.")
    text = tr(
        "Loaded **{model}** in the Model tab from the catalogue's facts (no download). Training downloads its "
        "weights from the Hugging Face Hub, so it needs a connection."
    ).format(model=hub_id)
    if entry.gated:
        text += " " + tr(
            "It is gated: accept its licence on the hub and log in (`hf auth login`) before training."
        )
    if is_moe(entry):
        text += " " + tr("It is a mixture-of-experts model: LoRA Studio does not estimate or plan it.")
    return hub_id, text


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
        apply = gr.Button("Apply this plan to the Train tab", variant="secondary", scale=1)
        applied = gr.Markdown()
    plan_state = gr.State(None)
    # one above the other, each the tab's full width: side by side, a narrow window left the chart a strip above
    # its legend
    table = gr.Dataframe(label="Your current settings: estimated peak memory by component (GiB)")
    figure = gr.Plot(label="Memory by component")
    with gr.Accordion("What fits on my GPU: every catalogue model", open=False):
        with gr.Row():
            size = gr.Dropdown(choices=list(SIZE_BANDS), value="all sizes", label="Model size", scale=1)
            family = gr.Dropdown(choices=families(), value="all families", label="Family", scale=1)
            show = gr.Button("Show what fits", scale=1)
        fits_summary = gr.Markdown()
        fits_table = gr.Dataframe(
            label="Catalogue models on this GPU",
            interactive=False,
            wrap=True,
            visible=False,
            column_widths=["19%", "7%", "6%", "15%", "15%", "15%", "23%"],
        )
        fits_plot = gr.Plot(label="Estimated memory by model size", visible=False)
    with gr.Accordion("The textbook's rule of thumb (chapter 26.9.4)", open=False):
        gr.Markdown(
            "| GPU | model | method |\n|---|---|---|\n"
            + "\n".join(f"| {g} GB | {m} | {meth} |" for g, m, meth in SEED_GUIDANCE)
            + "\n\nThe estimate above refines this table with your model, max_length, batch size and rank."
        )
    tab = Context.block  # the tab this is rendered in (ui.app builds it inside ``gr.Tab``)
    if isinstance(tab, gr.Tab):
        tab.select(None, None, None, js=RESIZE_JS, api_visibility="private", queue=False)
    return {
        "gpu": gpu,
        "custom": custom,
        "go": go,
        "recommendation": recommendation,
        "apply": apply,
        "size": size,
        "family": family,
        "show": show,
        "fits_summary": fits_summary,
        "fits_table": fits_table,
        "fits_plot": fits_plot,
        "applied": applied,
        "plan": plan_state,
        "table": table,
        "figure": figure,
    }
