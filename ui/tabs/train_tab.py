"""Train tab: LoRA / QLoRA settings with live parameter arithmetic, Start / Stop, a progress bar, live training charts,
and the setup as a file (ui/tabs/train_setup.py)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from core.config import (
    ATTN_IMPLEMENTATIONS,
    COMPUTE_DTYPES,
    DISTRIBUTED_STRATEGIES,
    OPTIMIZERS,
    QUANT_TYPES,
    SCHEDULERS,
    TrainingConfig,
)
from ui.forms import ConfigForm, config_number, config_slider, info, launch_markdown
from ui.tabs import train_setup
from ui.tabs.train_progress import FOLLOW_LOG_JS, LOG_CLASS, progress_for, progress_html

__all__ = ["progress_for", "progress_html", "render"]  # the poll renders the bar (ui/poll.py)

D = TrainingConfig()  # defaults shown in the form

# The sliders' maxima: the GPU tab's planner never proposes a split the form cannot hold.
BATCH_MAX = 64
ACCUMULATION_MAX = 64


def render(form: ConfigForm) -> dict[str, Any]:
    """Build the tab and register every training field with ``form``."""
    with gr.Row():
        with gr.Column(scale=1):
            gr.Markdown("#### LoRA")
            form.add(
                "lora_r",
                config_slider(1, 256, value=D.lora_r, step=1, label="LoRA rank (r)", info=info("lora_r")),
            )
            form.add(
                "lora_alpha",
                config_slider(
                    1, 512, value=D.lora_alpha, step=1, label="LoRA alpha (α)", info=info("lora_alpha")
                ),
            )
            form.add(
                "lora_dropout",
                config_slider(
                    0.0, 0.5, value=D.lora_dropout, step=0.01, label="LoRA dropout", info=info("lora_dropout")
                ),
            )
            targets = form.add(
                "lora_target_modules",
                gr.CheckboxGroup(
                    choices=[], value=[], label="Target modules", info=info("lora_target_modules")
                ),
            )
            form.add(
                "load_in_4bit",
                gr.Radio(
                    [("LoRA (16-bit base)", False), ("QLoRA (4-bit base)", True)],
                    value=False,
                    label="Method",
                    info=info("load_in_4bit"),
                ),
            )
            with gr.Accordion("Quantization (QLoRA, 8-bit)", open=False):
                form.add(
                    "load_in_8bit",
                    gr.Checkbox(
                        value=D.load_in_8bit,
                        label="LoRA on an 8-bit base instead (GPU only)",
                        info=info("load_in_8bit"),
                    ),
                )
                form.add(
                    "bnb_4bit_quant_type",
                    gr.Dropdown(
                        list(QUANT_TYPES),
                        value=D.bnb_4bit_quant_type,
                        label="4-bit type",
                        info=info("bnb_4bit_quant_type"),
                    ),
                )
                form.add(
                    "bnb_4bit_use_double_quant",
                    gr.Checkbox(
                        value=D.bnb_4bit_use_double_quant,
                        label="Double quantization",
                        info=info("bnb_4bit_use_double_quant"),
                    ),
                )
                form.add(
                    "bnb_4bit_compute_dtype",
                    gr.Dropdown(
                        list(COMPUTE_DTYPES),
                        value=D.bnb_4bit_compute_dtype,
                        label="Compute dtype",
                        info=info("bnb_4bit_compute_dtype"),
                    ),
                )
        with gr.Column(scale=1):
            gr.Markdown("#### Training")
            form.add(
                "learning_rate",
                config_number(
                    value=D.learning_rate, label="Learning rate", minimum=0, info=info("learning_rate")
                ),
            )
            with gr.Row():
                form.add(
                    "num_train_epochs",
                    config_number(
                        value=D.num_train_epochs, label="Epochs", minimum=0, info=info("num_train_epochs")
                    ),
                )
                form.add(
                    "max_steps",
                    config_number(
                        value=D.max_steps, label="Max steps", precision=0, minimum=-1, info=info("max_steps")
                    ),
                )
            form.add(
                "per_device_train_batch_size",
                config_slider(
                    1,
                    BATCH_MAX,
                    value=D.per_device_train_batch_size,
                    step=1,
                    label="Batch size",
                    info=info("per_device_train_batch_size"),
                ),
            )
            form.add(
                "gradient_accumulation_steps",
                config_slider(
                    1,
                    ACCUMULATION_MAX,
                    value=D.gradient_accumulation_steps,
                    step=1,
                    label="Gradient accumulation",
                    info=info("gradient_accumulation_steps"),
                ),
            )
            form.add(
                "max_length",
                config_slider(
                    64,
                    8192,
                    value=D.max_length,
                    step=64,
                    label="Max length (tokens)",
                    info=info("max_length"),
                ),
            )
            form.add(
                "seed", config_number(value=D.seed, label="Seed", precision=0, minimum=0, info=info("seed"))
            )
            with gr.Accordion("Advanced", open=False):
                form.add(
                    "warmup_steps",
                    config_number(
                        value=D.warmup_steps,
                        precision=0,
                        minimum=0,
                        label="Warm-up steps",
                        info=info("warmup_steps"),
                    ),
                )
                form.add(
                    "optim",
                    gr.Dropdown(list(OPTIMIZERS), value=D.optim, label="Optimizer", info=info("optim")),
                )
                form.add(
                    "lr_scheduler_type",
                    gr.Dropdown(
                        list(SCHEDULERS),
                        value=D.lr_scheduler_type,
                        label="LR schedule",
                        info=info("lr_scheduler_type"),
                    ),
                )
                form.add(
                    "gradient_checkpointing",
                    gr.Radio(
                        choices=[("auto", "auto"), ("on", "true"), ("off", "false")],
                        value=D.gradient_checkpointing,
                        label="Gradient checkpointing",
                        info=info("gradient_checkpointing"),
                    ),
                )
                form.add(
                    "monitor_rows",
                    config_slider(
                        0,
                        64,
                        value=D.monitor_rows,
                        step=1,
                        label="Fixed rows to track loss on",
                        info=info("monitor_rows"),
                    ),
                )
                form.add(
                    "validation_split",
                    config_slider(
                        0.0,
                        0.3,
                        value=D.validation_split,
                        step=0.05,
                        label="Validation split",
                        info=info("validation_split"),
                    ),
                )
                form.add(
                    "dtype",
                    gr.Dropdown(
                        ["auto", "bfloat16", "float16", "float32"],
                        value=D.dtype,
                        label="Weights dtype (LoRA)",
                        info=info("dtype"),
                    ),
                )
                form.add(
                    "logging_steps",
                    config_number(
                        value=D.logging_steps,
                        precision=0,
                        minimum=1,
                        label="Log every N steps",
                        info=info("logging_steps"),
                    ),
                )
                form.add(
                    "output_dir", gr.Textbox(value=D.output_dir, label="Runs folder", info=info("output_dir"))
                )
            with gr.Accordion("Engine, checkpoints and resume", open=False):
                form.add(
                    "packing",
                    gr.Checkbox(value=D.packing, label="Padding-free packing", info=info("packing")),
                )
                form.add(
                    "attn_implementation",
                    gr.Dropdown(
                        list(ATTN_IMPLEMENTATIONS),
                        value=D.attn_implementation,
                        label="Attention kernel",
                        info=info("attn_implementation"),
                    ),
                )
                form.add(
                    "use_liger_kernel",
                    gr.Checkbox(
                        value=D.use_liger_kernel, label="Liger-Kernel (GPU)", info=info("use_liger_kernel")
                    ),
                )
                form.add(
                    "auto_micro_batch",
                    gr.Checkbox(
                        value=D.auto_micro_batch,
                        label="Size the micro-batch from the memory estimate (GPU)",
                        info=info("auto_micro_batch"),
                    ),
                )
                form.add(
                    "save_steps",
                    config_number(
                        value=D.save_steps,
                        precision=0,
                        minimum=0,
                        label="Checkpoint every N steps",
                        info=info("save_steps"),
                    ),
                )
                form.add(
                    "resume_from_checkpoint",
                    gr.Textbox(
                        value=D.resume_from_checkpoint,
                        label="Resume from (run folder or checkpoint)",
                        placeholder="empty = a new run; or paste a run folder from the Runs tab",
                        info=info("resume_from_checkpoint"),
                    ),
                )
            with gr.Accordion("Several GPUs (accelerate)", open=False):
                processes = form.add(
                    "num_processes",
                    config_number(
                        value=D.num_processes,
                        precision=0,
                        minimum=0,
                        label="Processes (one per GPU; 0 = all GPUs)",
                        info=info("num_processes"),
                    ),
                )
                strategy = form.add(
                    "distributed_strategy",
                    gr.Dropdown(
                        list(DISTRIBUTED_STRATEGIES),
                        value=D.distributed_strategy,
                        label="Strategy",
                        info=info("distributed_strategy"),
                    ),
                )
                config_file = form.add(
                    "accelerate_config_file",
                    gr.Textbox(
                        value=D.accelerate_config_file,
                        label="accelerate config file (optional)",
                        info=info("accelerate_config_file"),
                    ),
                )
                command = gr.Markdown(launch_markdown(D.num_processes, D.distributed_strategy, ""))
            for component in (processes, strategy, config_file):
                component.change(
                    launch_markdown,
                    [processes, strategy, config_file],
                    command,
                    queue=False,
                    api_visibility="private",
                )
    lora_math = gr.Markdown()
    with gr.Row():
        start = gr.Button("Start training", variant="primary")
        stop = gr.Button("Stop", variant="stop", interactive=False)
    status = gr.Markdown("No training has run in this session.")
    progress = gr.HTML("")
    loss = gr.Plot(label="Training charts")
    logs = gr.Textbox(
        label="Log",
        lines=12,
        max_lines=12,
        autoscroll=True,
        interactive=False,
        elem_classes=[LOG_CLASS],
    )
    # gradio 6's own autoscroll scrolls once, then stops following; this follows new lines unless the user
    # scrolled up to read (scrolling back to the end follows again)
    logs.change(None, None, None, js=FOLLOW_LOG_JS, queue=False, api_visibility="private")
    timer = gr.Timer(1.0)
    setup = train_setup.render(form)
    return {
        "progress": progress,
        "setup": setup,
        "targets": targets,
        "lora_math": lora_math,
        "start": start,
        "stop": stop,
        "status": status,
        "loss": loss,
        "logs": logs,
        "timer": timer,
    }
