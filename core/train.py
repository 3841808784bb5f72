"""One LoRA / QLoRA training run with transformers' Trainer + peft (the seed chapter's recipe, 26.7)."""

from __future__ import annotations

import gc
import logging
import math
import os
import shutil
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import TrainingConfig
from core.data import DatasetReport, load_dataset_report, split_train_eval
from core.datafiles import require_dataset
from core.engine import EnginePlan
from core.errors import ConfigError, TrainingFailed
from core.events import Finished, LogLine
from core.hardware import resolve_dtype
from core.health import ZERO_LOSS_LOGS
from core.resume import check_resume_compatible, missing_state, resolve_checkpoint
from core.runs import publish_dir, staging_dir
from core.tokenization import tokenize_report
from core.vram import estimate_vram

if TYPE_CHECKING:
    from transformers import TrainingArguments

log = logging.getLogger(__name__)
# transformers 5.x renames gradient_checkpointing -> activation_checkpointing; peft still calls the old name.
warnings.filterwarnings(
    "ignore", message=".*is deprecated and will be removed in v6.*", category=FutureWarning
)


def run_training(
    cfg: TrainingConfig,
    run_dir: Path,
    publish: Callable[[Any], None],
    stop_event: threading.Event,
    *,
    callbacks: Sequence[Any] = (),
    strategy: str = "single",
) -> Finished:
    """Load data and model, train, and save ``run_dir/adapter``. Blocking; the job runs it on a thread.

    Args:
        cfg: validated config.
        run_dir: an existing, empty run folder (config.json is written by the caller).
        publish: receives LogLine / Progress / Metrics events and a final dict of run facts.
        stop_event: set to end training after the current optimizer step (the adapter is still saved).
        callbacks: TrainerCallbacks run before StudioCallback (a rank's core.callbacks.StopSync).
        strategy: "single", or "ddp" / "fsdp" when this is one rank of an accelerate launch (core.distributed):
            the rank's own GPU, steps counted over WORLD_SIZE ranks, the adapter saved once (rank 0).

    Returns:
        Finished with status "completed" or "stopped" and the last logged training loss.

    Raises:
        DataError, ModelError, ConfigError: bad input, with a message for the user.
        Anything else the libraries raise (out of memory, ...) propagates to the job, which reports it.
    """
    import torch

    from core.callbacks import StudioCallback
    from core.engine import make_collator, plan_engine, studio_trainer
    from core.health import preflight, require_healthy_adapter
    from core.model import (
        inspect_model,
        load_model_for_training,
        load_tokenizer,
        resolve_model_path,
        target_modules_for,
    )

    require_dataset(cfg.dataset_name)  # DataError: "No dataset chosen: ..."
    publish(LogLine(f"Reading {cfg.dataset_name}"))
    report = load_report_for(cfg)
    publish(LogLine(report.summary()))

    publish(LogLine(f"Resolving model {cfg.model_name_or_path}"))
    path = resolve_model_path(cfg.model_name_or_path)
    spec = inspect_model(path)
    targets = target_modules_for(cfg, spec)
    tokenizer = load_tokenizer(path)
    note = pad_token_note(tokenizer)
    if note:
        publish(LogLine(note))
    tokenized = tokenize_report(report, tokenizer, cfg.max_length, cfg.completion_only_loss)
    features = tokenized.features
    if tokenized.dropped:
        row, why = tokenized.dropped[0]
        publish(LogLine(f"{len(tokenized.dropped)} rows left out after tokenization, e.g. row {row}: {why}"))
    if (
        int(os.environ.get("RANK", "0")) == 0
    ):  # ranks of a multi-process run read the same data: write it once
        write_report_csv(report, run_dir / "data_report.csv")

    has_cuda = torch.cuda.is_available()
    if cfg.load_in_8bit and not has_cuda:
        raise ConfigError(
            [
                "load_in_8bit: 8-bit bases need bitsandbytes' CUDA kernels; on the CPU use LoRA (or "
                "QLoRA, which runs on the CPU slowly)."
            ]
        )
    if cfg.load_in_4bit and not has_cuda:
        publish(LogLine("No CUDA GPU: QLoRA runs on the CPU through bitsandbytes (slow)."))
    bf16_ok = has_cuda and torch.cuda.is_bf16_supported()
    dtype_name = resolve_dtype(cfg.dtype, has_cuda, bf16_ok)
    compute = cfg.bnb_4bit_compute_dtype if cfg.load_in_4bit else dtype_name
    world, local_rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))
    device = ("cuda" if world == 1 else f"cuda:{local_rank}") if has_cuda else "cpu"
    if has_cuda and world > 1:
        # a sharded (FSDP) load has no device_map: bitsandbytes quantizes onto the current device, which must be
        # this rank's (seen on 2 H200s: "Inconsistent compute device and device_id on rank 1: cuda:0 vs cuda:1")
        torch.cuda.set_device(local_rank)
    if not has_cuda and cfg.optim != "adamw_torch":
        raise ConfigError(
            [f"optim: {cfg.optim} uses bitsandbytes' CUDA kernels; use adamw_torch on the CPU."]
        )
    if not has_cuda and "float16" in (dtype_name, compute):
        raise ConfigError(
            [
                "dtype / bnb_4bit_compute_dtype: float16 training needs a CUDA GPU (gradient scaling); "
                "use float32 or bfloat16 on the CPU."
            ]
        )
    checkpoint = resolve_checkpoint(cfg.resume_from_checkpoint) if cfg.resume_from_checkpoint else None
    from core.hardware import usable_gpu_gib

    gpu_gib = usable_gpu_gib(0) if has_cuda else None
    try:
        plan = plan_engine(cfg, spec, has_cuda, gpu_gib, [len(f["input_ids"]) for f in features])
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None
    for note in plan.notes:
        publish(LogLine(note))
    cfg = plan.apply(cfg)
    train_idx, eval_idx, split_note = split_train_eval(len(features), cfg.validation_split, cfg.seed)
    cfg, note = cap_micro_batch(cfg, len(train_idx), world)
    if note:  # the run's facts (result.json) then record the batch that really ran
        publish(LogLine(note))
    publish(
        LogLine(
            f"Loading {spec.architecture} on {device} ({'4-bit ' + cfg.bnb_4bit_quant_type if cfg.load_in_4bit else dtype_name})"
        )
    )
    from transformers import set_seed

    set_seed(
        cfg.seed
    )  # LoRA A's random init (B starts at zero), then the Trainer reseeds for data and dropout
    model = load_model_for_training(
        cfg,
        path,
        device,
        dtype_name,
        targets,
        plan.attn_implementation,
        sharded=strategy == "fsdp",
        # FSDP's flat parameters are views the fused branch would modify in place (measured on 2 H200s:
        # "Output 0 of ViewBackward0 is a view ... modified inplace"); peft's own forward works there.
        fused_lora=plan.fused_lora and strategy != "fsdp",
    )
    estimate = estimate_vram(
        spec, cfg, cfg.method, fused_loss=plan.use_liger_kernel, upcast_non_quantized=False
    )
    if world > 1:  # memory of each GPU under the run's strategy (core.parallel)
        from core.parallel import estimate_per_gpu

        estimate = estimate_per_gpu(estimate, spec, strategy, world)
    if has_cuda:
        torch.cuda.reset_peak_memory_stats()
    trainable, total = model.get_nb_trainable_parameters()  # type: ignore[operator]  # PeftModel method
    supervised, per_module = preflight(features, model, targets)
    publish(
        LogLine(
            f"Supervised tokens: {supervised:,}. Trainable per module: "
            + ", ".join(f"{name} {count:,}" for name, count in per_module.items())
        )
    )
    publish(
        {
            "trainable_params": trainable,
            "total_params": total,
            "device": device,
            "dtype": compute,
            "rows": len(features),
            "target_modules": list(targets),
            "lora_scaling": cfg.lora_scaling,
            "estimate_gib": estimate.total_gib,
            "supervised_tokens": supervised,
            "trainable_by_module": per_module,
            "seed": cfg.seed,
            "engine": list(plan.notes),
            "per_device_train_batch_size": cfg.per_device_train_batch_size,
            "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
            "gradient_checkpointing": cfg.gradient_checkpointing,
            "resumed_from": str(checkpoint) if checkpoint else None,
        }
    )
    publish(
        LogLine(
            f"trainable params: {trainable:,} || all params: {total:,} || "
            f"trainable%: {100 * trainable / total:.4f}"
        )
    )

    # A list of feature dicts is a map-style dataset for the Trainer's DataLoader; no Arrow round trip needed.
    if split_note:
        publish(LogLine(split_note))
    data: Any = [features[i] for i in train_idx]
    eval_data: Any = [features[i] for i in eval_idx] or None
    eval_sets: dict[str, Any] = {"validation": eval_data} if eval_data is not None else {}
    if cfg.monitor_rows > 0:
        # Per-batch training loss is noisy (rows differ in difficulty); the loss on the same few training rows,
        # measured at the start and ~5 times during the run, shows whether the model is learning.
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
        eval_sets["train_sample"] = [data[i] for i in order[: cfg.monitor_rows]]
    steps_per_epoch = math.ceil(  # each optimizer step takes batch x accumulation rows on each of the ranks
        len(data) / (cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * world)
    )
    total_steps = cfg.max_steps if cfg.max_steps > 0 else math.ceil(steps_per_epoch * cfg.num_train_epochs)
    if checkpoint:
        check_resume_compatible(checkpoint, cfg, targets, path, total_steps)
        for note in missing_state(checkpoint):
            publish(LogLine(f"Resume: {note}."))

    args = training_arguments(
        cfg, plan, run_dir / "checkpoints", has_cuda, compute, bool(eval_sets), total_steps
    )
    collator = make_collator(tokenizer, plan.packing, has_cuda)
    callback = StudioCallback(publish, stop_event)
    trainer = studio_trainer(
        model=model,
        args=args,
        train_dataset=data,
        eval_dataset=eval_sets or None,
        data_collator=collator,
        callbacks=[*callbacks, callback],
    )
    if stop_event.is_set():  # Stop while the data or the model loaded: train nothing, save nothing
        del trainer, model
        publish(LogLine("Stopped before the first step: nothing was trained."))
        return Finished("stopped", None)
    try:
        publish(LogLine("Training started"))
        if checkpoint:
            publish(LogLine(f"Resuming from {checkpoint}"))
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        if callback.diverged_at is not None:
            raise TrainingFailed(
                f"Training diverged at step {callback.diverged_at} (loss or gradient NaN/inf, or the loss "
                f"more than doubled from {callback.first_loss or float('nan'):.3g}), so the "
                f"adapter was not saved. Lower learning_rate (now {cfg.learning_rate:g})"
                + (" or use bfloat16 instead of float16." if compute == "float16" else ".")
            )
        if callback.stuck_at is not None:
            raise TrainingFailed(
                f"Training loss was exactly 0 for {ZERO_LOSS_LOGS} logs in a row (step {callback.stuck_at}): "
                "nothing is being learned (labels masked or a broken loss). The adapter was not saved. Check the "
                "Data tab's label preview and completion_only_loss."
            )
        if world == 1:  # several ranks: checked in core.rank_save (FSDP's flat shards are gathered first)
            require_healthy_adapter(model, cfg.learning_rate)
        status = "stopped" if stop_event.is_set() else "completed"
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        final_loss = losses[-1] if losses else result.training_loss
        publish(LogLine(f"Training {status} after {trainer.state.global_step} steps; saving the adapter"))
        final = run_dir / "adapter"
        if world > 1:
            from core.rank_save import save_adapter_once

            save_adapter_once(trainer, tokenizer, final, cfg.learning_rate)
        else:
            tmp = staging_dir(final)
            try:
                model.save_pretrained(str(tmp))
                tokenizer.save_pretrained(tmp)
                publish_dir(tmp, final)
            except BaseException:  # a full disk: no half-written adapter is left behind
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        publish(LogLine(f"Adapter saved to {final}"))
        return Finished(status, float(final_loss) if final_loss is not None else None)
    finally:
        del trainer, model
        gc.collect()
        if has_cuda:
            torch.cuda.empty_cache()


def cap_micro_batch(cfg: TrainingConfig, train_rows: int, world: int = 1) -> tuple[TrainingConfig, str]:
    """Cap ``per_device_train_batch_size`` to the training rows each process gets.

    The Trainer's DataLoader silently makes a short batch when the micro-batch is larger than the data, so a run
    asked for 64 with 10 rows trains 10-row steps; the capped config says what really runs.

    Args:
        cfg: the run's config (after the engine plan).
        train_rows: rows left for training after the validation split.
        world: processes the rows are spread over (each gets ``ceil(train_rows / world)``).

    Returns:
        (config, note): ``cfg`` unchanged and "" when the batch fits, else the capped copy and a log line
        saying so.
    """
    per_process = max(1, math.ceil(train_rows / max(1, world)))
    asked = cfg.per_device_train_batch_size
    if asked <= per_process:
        return cfg, ""
    rows = (
        f"{train_rows} training rows"
        if world <= 1
        else f"{per_process} training rows each of {world} processes gets"
    )
    return cfg.replace(per_device_train_batch_size=per_process), (
        f"per_device_train_batch_size {asked} is more than the {rows}: using {per_process}."
    )


def pad_token_note(tokenizer: Any) -> str:
    """A log line naming the padding token when it is EOS, else "".

    ``core.model.load_tokenizer`` pads with EOS when the tokenizer has no pad token (and some tokenizers ship
    pad = EOS themselves). EOS still ends every answer and stays a training target: the collator masks padding
    from the labels by position (-100 past each row's end), not by token id.
    """
    if tokenizer.pad_token is None or tokenizer.pad_token != tokenizer.eos_token:
        return ""
    return (
        f"Padding uses EOS {tokenizer.eos_token!r} (id {tokenizer.eos_token_id}): the tokenizer has no separate "
        "pad token. EOS stays a training target: padding is masked from the labels by position, not by token id."
    )


def training_arguments(
    cfg: TrainingConfig,
    plan: EnginePlan,
    output_dir: Path,
    has_cuda: bool,
    compute: str,
    has_eval: bool,
    total_steps: int,
) -> TrainingArguments:
    """The Trainer arguments of a run (shared with bench/throughput.py, so the benchmark times the product).

    Args:
        cfg: the run's config after ``plan.apply``; plan: core.engine.plan_engine's decisions; output_dir: where
        checkpoints go; compute: compute dtype name; has_eval: evaluation sets exist; total_steps: optimizer steps.
    """
    from transformers import TrainingArguments

    args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        warmup_steps=cfg.warmup_steps,
        lr_scheduler_type=cfg.lr_scheduler_type,
        optim=cfg.optim,
        logging_steps=cfg.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=max(1, math.ceil(total_steps / 5)) if has_eval else None,
        eval_on_start=has_eval,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=has_cuda and compute == "bfloat16",
        fp16=has_cuda and compute == "float16",
        use_cpu=not has_cuda,
        # always "steps": StudioCallback also saves at the end and at Stop; save_steps 0 = only then
        save_strategy="steps",
        save_steps=cfg.save_steps if cfg.save_steps > 0 else 10**9,
        save_total_limit=3,  # keep the last three checkpoints of this run (older ones are rotated out)
        use_liger_kernel=plan.use_liger_kernel,
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=False,
        # logs num_input_tokens_seen -> tokens/s in the UI (packed rows have no padding to leave out)
        include_num_input_tokens_seen="all" if plan.packing else "non_padding",
        # no per-micro-batch host sync; a NaN/inf loss reaches the log and fails the run (core.engine docstring)
        logging_nan_inf_filter=False,
    )
    if has_cuda and int(os.environ.get("WORLD_SIZE", "1")) == 1 and args.n_gpu > 1:
        # One process sees several GPUs: the Trainer would wrap the model in nn.DataParallel (measured on 2 H200s:
        # the packed micro-batch's loss doubled and the gradient norm was NaN). Several GPUs train through
        # accelerate launch (num_processes); this process uses one.
        log.info("%d GPUs visible: this run uses one; set num_processes to use all of them.", args.n_gpu)
        args._n_gpu = 1
    return args


def preflight_config(cfg: TrainingConfig, dataset_rows: int | None = None) -> None:
    """Checks that need the machine or the disk, run before a run folder exists (so a bad resume path or an
    unavailable kernel is a config error, not a failed run): the resume checkpoint, the attention kernel, the
    demo's work caps (``dataset_rows``, the usable rows when the caller knows them, sizes a fractional
    validation_split exactly) and the process settings.

    Raises:
        ConfigError: every problem found.
    """
    import torch

    from core.engine import varlen_unavailable_reason
    from core.parallel import process_problems
    from core.space import demo_limits, limit_problems

    problems: list[str] = []
    if cfg.resume_from_checkpoint:
        try:
            resolve_checkpoint(cfg.resume_from_checkpoint)
        except ConfigError as exc:
            problems += exc.problems
    if cfg.attn_implementation == "varlen":
        reason = varlen_unavailable_reason(torch.cuda.is_available())
        if reason or not cfg.packing:
            problems.append(
                f"attn_implementation: varlen is unavailable here ({reason or 'packing is off'}); use auto or sdpa."
            )
    problems += limit_problems(cfg, demo_limits(), dataset_rows)
    if cfg.num_processes != 1 or cfg.accelerate_config_file:
        has_cuda = torch.cuda.is_available()
        problems += process_problems(cfg, torch.cuda.device_count() if has_cuda else 0, has_cuda)
        if not problems and cfg.accelerate_config_file:
            from core.distributed import config_file_choice

            try:
                config_file_choice(cfg.accelerate_config_file)
            except ConfigError as exc:
                problems += exc.problems
    if problems:
        raise ConfigError(problems)


def load_report_for(cfg: TrainingConfig) -> DatasetReport:
    """The dataset report for a config's data settings (the same call the Data tab and the CLI make)."""
    return load_dataset_report(
        cfg.dataset_name,
        cfg.dataset_format,
        cfg.dataset_column_mapping,
        split=cfg.dataset_split,
        config_name=cfg.dataset_config or None,
        fold_system_message=cfg.fold_system_message,
    )


def write_report_csv(report: DatasetReport, path: Path) -> Path:
    """Every dropped or noted row (row, status, reason) as CSV, written via a temporary file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    report.issues_frame().to_csv(tmp, index=False)
    tmp.replace(path)
    return path
