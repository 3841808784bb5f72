"""Every rule a TrainingConfig must satisfy, as one list of problems (TrainingConfig.validate calls this)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from core.config_names import (
    ATTN_IMPLEMENTATIONS,
    COMPUTE_DTYPES,
    DATASET_FORMATS,
    DISTRIBUTED_STRATEGIES,
    DTYPES,
    OPTIMIZERS,
    QUANT_TYPES,
    SCHEDULERS,
)

if TYPE_CHECKING:
    from core.config import TrainingConfig


def config_problems(cfg: TrainingConfig) -> list[str]:
    """Return every problem with ``cfg`` (empty list when valid), each naming the field and the fix. Never raises."""
    p: list[str] = []

    def need(cond: bool, msg: str) -> None:
        if not cond:
            p.append(msg)

    need(
        bool(cfg.model_name_or_path.strip()),
        "model_name_or_path: empty; give a hub id or a model folder.",
    )
    need(
        cfg.dataset_format in DATASET_FORMATS,
        f"dataset_format: {cfg.dataset_format!r} is not one of {DATASET_FORMATS}.",
    )
    need(bool(cfg.output_dir.strip()), "output_dir: empty; give a folder for run folders.")
    need(
        cfg.bnb_4bit_quant_type in QUANT_TYPES,
        f"bnb_4bit_quant_type: {cfg.bnb_4bit_quant_type!r} is not one of {QUANT_TYPES}.",
    )
    need(
        cfg.bnb_4bit_compute_dtype in COMPUTE_DTYPES,
        f"bnb_4bit_compute_dtype: {cfg.bnb_4bit_compute_dtype!r} is not one of {COMPUTE_DTYPES}.",
    )
    need(cfg.dtype in DTYPES, f"dtype: {cfg.dtype!r} is not one of {DTYPES}.")
    need(
        isinstance(cfg.gradient_checkpointing, bool) or cfg.gradient_checkpointing == "auto",
        f"gradient_checkpointing: {cfg.gradient_checkpointing!r} is not true, false or auto.",
    )
    need(
        1 <= cfg.lora_r <= 1024,
        f"lora_r: {cfg.lora_r} must be between 1 and 1024 (the seed suggests 4-64).",
    )
    need(1 <= cfg.lora_alpha <= 4096, f"lora_alpha: {cfg.lora_alpha} must be between 1 and 4096.")
    need(0.0 <= cfg.lora_dropout < 1.0, f"lora_dropout: {cfg.lora_dropout} must be in [0, 1).")
    need(
        all(isinstance(m, str) and m.strip() for m in cfg.lora_target_modules),
        f"lora_target_modules: {list(cfg.lora_target_modules)} must be non-empty module names.",
    )
    need(
        math.isfinite(cfg.learning_rate) and 0 < cfg.learning_rate <= 1.0,
        f"learning_rate: {cfg.learning_rate} must be in (0, 1]; LoRA usually uses 1e-4..3e-4.",
    )
    need(
        math.isfinite(cfg.num_train_epochs) and cfg.num_train_epochs > 0,
        f"num_train_epochs: {cfg.num_train_epochs} must be > 0.",
    )
    need(
        cfg.max_steps == -1 or cfg.max_steps >= 1,
        f"max_steps: {cfg.max_steps} must be -1 (use epochs) or >= 1.",
    )
    need(
        1 <= cfg.per_device_train_batch_size <= 1024,
        f"per_device_train_batch_size: {cfg.per_device_train_batch_size} must be between 1 and 1024.",
    )
    need(
        1 <= cfg.gradient_accumulation_steps <= 1024,
        f"gradient_accumulation_steps: {cfg.gradient_accumulation_steps} must be between 1 and 1024.",
    )
    need(
        16 <= cfg.max_length <= 131072,
        f"max_length: {cfg.max_length} must be between 16 and 131072 tokens.",
    )
    need(cfg.warmup_steps >= 0, f"warmup_steps: {cfg.warmup_steps} must be >= 0.")
    need(
        cfg.lr_scheduler_type in SCHEDULERS,
        f"lr_scheduler_type: {cfg.lr_scheduler_type!r} is not one of {SCHEDULERS}.",
    )
    need(cfg.logging_steps >= 1, f"logging_steps: {cfg.logging_steps} must be >= 1.")
    need(
        not (cfg.load_in_4bit and cfg.load_in_8bit),
        "load_in_4bit / load_in_8bit: choose one quantized base, not both.",
    )
    need(cfg.optim in OPTIMIZERS, f"optim: {cfg.optim!r} is not one of {OPTIMIZERS}.")
    need(0 <= cfg.monitor_rows <= 256, f"monitor_rows: {cfg.monitor_rows} must be between 0 and 256.")
    need(0 <= cfg.seed < 2**32, f"seed: {cfg.seed} must be in [0, 2**32).")
    need(
        0.0 <= cfg.validation_split < 0.5
        or (cfg.validation_split >= 1 and float(cfg.validation_split).is_integer()),
        f"validation_split: {cfg.validation_split} must be a fraction in [0, 0.5) or a whole count >= 1.",
    )
    need(
        cfg.attn_implementation in ATTN_IMPLEMENTATIONS,
        f"attn_implementation: {cfg.attn_implementation!r} is not one of {ATTN_IMPLEMENTATIONS}.",
    )
    need(cfg.save_steps >= 0, f"save_steps: {cfg.save_steps} must be >= 0 (0 = only at the end or Stop).")
    need(
        0 <= cfg.num_processes <= 1024,
        f"num_processes: {cfg.num_processes} must be 1 (this process), 2..1024 (accelerate launch) or 0 (one per GPU).",
    )
    need(
        cfg.distributed_strategy in DISTRIBUTED_STRATEGIES,
        f"distributed_strategy: {cfg.distributed_strategy!r} is not one of {DISTRIBUTED_STRATEGIES}.",
    )
    need(
        not (cfg.distributed_strategy == "fsdp" and cfg.load_in_8bit),
        "distributed_strategy: fsdp cannot shard bitsandbytes 8-bit weights; use ddp, or QLoRA (load_in_4bit) "
        "with fsdp.",
    )
    return p
