"""Shared-demo mode: on a Hugging Face Space (the ``SPACE_ID`` environment variable is set) the app keeps training
on but within limits a free CPU Space finishes in a few minutes, and says so in the UI.

A local install has no limits. ``LORA_STUDIO_DEMO=1`` turns the limits on elsewhere (to try them locally).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from core.config import DEFAULT_MODEL, TrainingConfig


@dataclass(frozen=True)
class DemoLimits:
    """Caps for a shared demo. Sized for a free CPU Space (2 vCPU): measured on this project's 2-core CI box, the
    embedded 135M model trains ~6 s per step at batch 2 x 256 tokens, so 30 steps take about 3 minutes.

    Attributes:
        max_steps: optimizer steps per run (max_steps must be set, 1..this).
        max_length: tokens per row.
        per_device_train_batch_size: rows per micro-batch.
        max_rows: usable dataset rows.
        max_upload_mb: largest uploaded file, MB.
        models: model ids a visitor may train (the embedded default: no download, no hub traffic).
    """

    max_steps: int = 30
    max_length: int = 512
    per_device_train_batch_size: int = 4
    max_rows: int = 2000
    max_upload_mb: int = 20
    models: tuple[str, ...] = (DEFAULT_MODEL,)


def demo_limits() -> DemoLimits | None:
    """The limits in force: DemoLimits on a Space (SPACE_ID) or with LORA_STUDIO_DEMO=1, else None."""
    if os.environ.get("SPACE_ID") or os.environ.get("LORA_STUDIO_DEMO") == "1":
        return DemoLimits()
    return None


def limit_problems(cfg: TrainingConfig, limits: DemoLimits | None) -> list[str]:
    """Every way ``cfg`` exceeds ``limits`` (empty when within them or when there are none), each naming the
    field, the value and the cap."""
    if limits is None:
        return []
    p: list[str] = []
    if cfg.model_name_or_path not in limits.models:
        p.append(f"model_name_or_path: this shared demo trains only {', '.join(limits.models)}.")
    if not 1 <= cfg.max_steps <= limits.max_steps:
        p.append(f"max_steps: {cfg.max_steps}; the demo allows 1 to {limits.max_steps} steps per run.")
    if cfg.max_length > limits.max_length:
        p.append(f"max_length: {cfg.max_length}; the demo allows up to {limits.max_length} tokens.")
    if cfg.per_device_train_batch_size > limits.per_device_train_batch_size:
        p.append(
            f"per_device_train_batch_size: {cfg.per_device_train_batch_size}; the demo allows up to "
            f"{limits.per_device_train_batch_size}."
        )
    if cfg.load_in_8bit:
        p.append("load_in_8bit: needs a CUDA GPU, which this demo does not have.")
    if cfg.num_processes > 1 or cfg.accelerate_config_file:
        p.append(
            "num_processes: the demo trains in one process; set it to 1 and leave accelerate_config_file empty."
        )
    return p


def limits_markdown(limits: DemoLimits | None) -> str:
    """A one-paragraph banner for the UI ("" when there are no limits)."""
    if limits is None:
        return ""
    return (
        f"**Shared demo:** training is on, within limits a free CPU Space finishes in a few minutes: the embedded "
        f"model only, up to {limits.max_steps} steps, {limits.max_length} tokens per row, batch "
        f"{limits.per_device_train_batch_size}, {limits.max_rows:,} rows and {limits.max_upload_mb} MB uploads. "
        "Install LoRA Studio locally (see the README) to lift them."
    )
