"""Shared-demo mode: on a Hugging Face Space (the ``SPACE_ID`` environment variable is set) the app keeps training
on but within limits a free CPU Space finishes in a few minutes, and says so in the UI.

The limits cap the *work* of a run, not only single fields: the rows a run processes for training (max_steps x
per_device_train_batch_size x gradient_accumulation_steps x processes), the rows it evaluates (evaluations x
(monitor_rows + validation rows)) and the checkpoints it writes. ``run_work`` computes that work; the training
slot (core.slot) uses the same numbers to estimate a queued run's wait.

A local install has no limits. ``LORA_STUDIO_DEMO=1`` turns the limits on elsewhere (to try them locally).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from core.config import DEFAULT_MODEL, TrainingConfig

# An evaluated row costs a forward pass only: ~2N FLOPs per token against ~6N for a trained row's forward and
# backward (Kaplan et al. 2020, "Scaling Laws for Neural Language Models", section 2.1), so 1/3 of a trained row.
EVAL_ROW_COST = 1 / 3
EVALUATIONS_PER_RUN = (
    5  # core.train.training_arguments: eval_steps = ceil(total_steps / 5), plus one at the start
)


@dataclass(frozen=True)
class RunWork:
    """What a run processes, counted from its config the way core.train runs it.

    Attributes:
        steps: optimizer steps.
        train_rows: rows processed for training: steps x per_device_train_batch_size x
            gradient_accumulation_steps x processes.
        evaluations: evaluation passes (one before the first step, one every ceil(steps / 5) steps and one at
            the last step if not already), 0 when there is nothing to evaluate.
        eval_rows_each: rows per evaluation: monitor_rows + validation rows.
        checkpoints: checkpoints written (every save_steps steps, and one at the end).
    """

    steps: int
    train_rows: int
    evaluations: int
    eval_rows_each: int
    checkpoints: int

    @property
    def eval_rows(self) -> int:
        """Rows evaluated over the run: evaluations x eval_rows_each."""
        return self.evaluations * self.eval_rows_each

    @property
    def row_equivalents(self) -> float:
        """The run's compute in trained rows: train_rows + eval_rows x EVAL_ROW_COST (an evaluated row is a
        forward pass only, ~1/3 of a trained row)."""
        return self.train_rows + self.eval_rows * EVAL_ROW_COST


def _validation_rows(validation_split: float, dataset_rows: int) -> int:
    """Rows core.data.split_train_eval holds out of ``dataset_rows`` (0 when it turns evaluation off)."""
    if validation_split <= 0:
        return 0
    n_eval = int(validation_split) if validation_split >= 1 else round(dataset_rows * validation_split)
    return 0 if n_eval < 2 or dataset_rows - n_eval < 10 else n_eval


def _evaluations_done(step: int, steps: int) -> int:
    """Evaluation passes done once ``step`` of ``steps`` optimizer steps have run (Trainer with eval_on_start and
    eval_steps = ceil(steps / 5)): one at the start, one every eval_steps steps, and one at the last step when it
    is not a multiple of eval_steps (transformers' DefaultFlowCallback.on_step_end)."""
    every = max(1, math.ceil(steps / EVALUATIONS_PER_RUN))
    return 1 + step // every + (1 if step >= steps and steps % every else 0)


def run_work(cfg: TrainingConfig, dataset_rows: int | None = None) -> RunWork | None:
    """The work of ``cfg`` (see RunWork), as core.train runs it.

    Args:
        cfg: the run's config; ``num_processes`` 0 (auto) counts as 1 process.
        dataset_rows: usable rows of the dataset; needed for a run sized by epochs and for a fractional
            validation_split. Unknown (None): a fractional validation_split counts as that share of the demo's
            largest dataset (``DemoLimits.max_rows``), the most it can be.

    Returns:
        The RunWork, or None when the run is sized by epochs and ``dataset_rows`` is unknown.
    """
    rows = dataset_rows if dataset_rows is not None else DemoLimits().max_rows
    world = max(1, cfg.num_processes)
    per_step = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * world
    val = _validation_rows(cfg.validation_split, rows)
    if cfg.max_steps > 0:
        steps = cfg.max_steps
    elif dataset_rows is None:
        return None
    else:
        steps = math.ceil(math.ceil((dataset_rows - val) / per_step) * cfg.num_train_epochs)
    steps = max(1, steps)
    monitor = min(cfg.monitor_rows, max(0, rows - val))
    each = monitor + val
    return RunWork(
        steps=steps,
        train_rows=steps * per_step,
        evaluations=_evaluations_done(steps, steps) if each else 0,
        eval_rows_each=each,
        checkpoints=math.ceil(steps / cfg.save_steps) if cfg.save_steps > 0 else 1,
    )


def remaining_row_equivalents(
    config: dict[str, Any] | TrainingConfig, step: int = 0, dataset_rows: int | None = None
) -> float | None:
    """Work still to do (in trained rows, RunWork.row_equivalents) of a run at optimizer step ``step``.

    Args:
        config: the run's TrainingConfig or its ``to_dict()`` (a job's snapshot keeps the latter).
        step: optimizer steps done (0 for a run that has not started: its first evaluation is still to come).
        dataset_rows: usable dataset rows when known (see run_work).

    Returns:
        Trained-row equivalents left, or None when the run is sized by epochs (rows unknown here).
    """
    cfg = config if isinstance(config, TrainingConfig) else TrainingConfig.from_dict(config)
    work = run_work(cfg, dataset_rows)
    if work is None:
        return None
    step = min(max(0, step), work.steps)
    evals_done = _evaluations_done(step, work.steps) if (work.evaluations and step > 0) else 0
    train_left = (work.steps - step) * (work.train_rows // work.steps)
    return train_left + max(0, work.evaluations - evals_done) * work.eval_rows_each * EVAL_ROW_COST


@dataclass(frozen=True)
class DemoLimits:
    """Caps for a shared demo. Sized for a free CPU Space (2 vCPU): measured on this project's 2-core CI box, the
    embedded 135M model trains ~6 s per step at batch 2 x 256 tokens (~3 s per row), so a run at the caps
    (120 trained rows, 360 evaluated rows = 120 trained-row equivalents) takes about 12 minutes, most runs far less.

    Attributes:
        max_steps: optimizer steps per run (max_steps must be set, 1..this).
        max_length: tokens per row.
        per_device_train_batch_size: rows per micro-batch.
        max_train_rows: rows processed for training per run (max_steps x per_device_train_batch_size x
            gradient_accumulation_steps x processes): 30 steps x batch 4.
        max_eval_rows: rows evaluated per run (evaluations x (monitor_rows + validation rows)).
        max_checkpoints: checkpoints written per run, the one at the end included.
        max_rows: usable dataset rows.
        max_upload_mb: largest uploaded file, MB.
        models: model ids a visitor may train (the embedded default: no download, no hub traffic).
    """

    max_steps: int = 30
    max_length: int = 512
    per_device_train_batch_size: int = 4
    max_train_rows: int = 120
    max_eval_rows: int = 360
    max_checkpoints: int = 3
    max_rows: int = 2000
    max_upload_mb: int = 20
    models: tuple[str, ...] = (DEFAULT_MODEL,)


def demo_limits() -> DemoLimits | None:
    """The limits in force: DemoLimits on a Space (SPACE_ID) or with LORA_STUDIO_DEMO=1, else None."""
    if os.environ.get("SPACE_ID") or os.environ.get("LORA_STUDIO_DEMO") == "1":
        return DemoLimits()
    return None


def limit_problems(
    cfg: TrainingConfig, limits: DemoLimits | None, dataset_rows: int | None = None
) -> list[str]:
    """Every way ``cfg`` exceeds ``limits`` (empty when within them or when there are none), each naming the
    fields, the values, the cap and what to lower.

    Args:
        cfg: the run's config.
        limits: the demo's caps, or None (no limits: always []).
        dataset_rows: usable dataset rows when known; without them a fractional validation_split counts as that
            share of ``limits.max_rows`` (give a count, e.g. 20, to be exact).
    """
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
    if cfg.max_steps >= 1:  # an epoch-sized run is refused above; its work needs the dataset
        p += _work_problems(cfg, limits, dataset_rows)
    return p


def _work_problems(cfg: TrainingConfig, limits: DemoLimits, dataset_rows: int | None) -> list[str]:
    """The caps on a run's work (rows trained, rows evaluated, checkpoints), each with what to lower."""
    work = run_work(cfg, dataset_rows if dataset_rows is not None else limits.max_rows)
    if work is None:
        return []
    p: list[str] = []
    if work.train_rows > limits.max_train_rows:
        world = max(1, cfg.num_processes)
        fit = max(1, limits.max_train_rows // (cfg.max_steps * cfg.per_device_train_batch_size * world))
        procs = f" x num_processes {world}" if world > 1 else ""
        p.append(
            f"max_steps x per_device_train_batch_size x gradient_accumulation_steps: {cfg.max_steps} x "
            f"{cfg.per_device_train_batch_size} x {cfg.gradient_accumulation_steps}{procs} = "
            f"{work.train_rows:,} rows trained; the demo allows up to {limits.max_train_rows:,} per run. Lower "
            f"gradient_accumulation_steps (to {fit} here), per_device_train_batch_size or max_steps."
        )
    if work.eval_rows > limits.max_eval_rows:
        monitor = min(cfg.monitor_rows, work.eval_rows_each)
        val = work.eval_rows_each - monitor
        per_eval = limits.max_eval_rows // work.evaluations
        of = "" if dataset_rows is not None else f" of up to {limits.max_rows:,}"
        split = f"{cfg.validation_split:g}" + (f", {val:,} rows{of}" if 0 < cfg.validation_split < 1 else "")
        keep = monitor if per_eval - monitor >= 2 else min(8, per_eval)  # 8 = monitor_rows' default
        room = per_eval - keep
        frac = math.floor(room / dataset_rows * 100) / 100 if dataset_rows else 0.0
        if dataset_rows and frac >= 0.01:  # the UI's slider takes a share of the rows, not a count
            hint = f"validation_split {frac:g} ({round(dataset_rows * frac)} of {dataset_rows:,} rows)"
        elif room >= 2 and not dataset_rows:
            hint = f"validation_split {room} (a count of rows)"
        else:
            hint = "validation_split 0"
        if keep != monitor:
            hint = f"monitor_rows {keep} and {hint}"
        p.append(
            f"monitor_rows + validation_split: {work.evaluations} evaluations x ({monitor} fixed rows + {val:,} "
            f"validation rows) = {work.eval_rows:,} rows evaluated; the demo allows up to "
            f"{limits.max_eval_rows:,} per run ({per_eval} per evaluation). Lower monitor_rows ({cfg.monitor_rows}) "
            f"or validation_split ({split}), e.g. {hint}."
        )
    if work.checkpoints > limits.max_checkpoints:
        every = math.ceil(work.steps / limits.max_checkpoints)
        p.append(
            f"save_steps: {cfg.save_steps} writes {work.checkpoints} checkpoints in {work.steps} steps; the demo "
            f"allows {limits.max_checkpoints} per run (the one at the end included). Set save_steps to 0 (only "
            f"at the end) or at least {every}."
        )
    return p


def limits_markdown(limits: DemoLimits | None) -> str:
    """A one-paragraph banner for the UI ("" when there are no limits), stating every cap."""
    if limits is None:
        return ""
    return (
        f"**Shared demo:** training is on, within limits a free CPU Space finishes in minutes: the embedded "
        f"model only, up to {limits.max_steps} steps, {limits.max_length} tokens per row, batch "
        f"{limits.per_device_train_batch_size}, {limits.max_rows:,} rows and {limits.max_upload_mb} MB uploads. "
        f"Per run: at most {limits.max_train_rows:,} rows trained (steps x batch x gradient accumulation), "
        f"{limits.max_eval_rows:,} rows evaluated (evaluations x (fixed rows + validation rows)) and "
        f"{limits.max_checkpoints} checkpoints. Install LoRA Studio locally (see the README) to lift them."
    )


def done_row_equivalents(
    config: dict[str, Any] | TrainingConfig, step: int, dataset_rows: int | None = None
) -> float | None:
    """Work done (trained-row equivalents) by a run at optimizer step ``step``: what to pass, with the wall seconds
    it took, to core.slot.TrainingSlot.record_speed. None when sized by epochs and ``dataset_rows`` is unknown."""
    cfg = config if isinstance(config, TrainingConfig) else TrainingConfig.from_dict(config)
    work = run_work(cfg, dataset_rows)
    left = remaining_row_equivalents(cfg, step, dataset_rows)
    return None if work is None or left is None else work.row_equivalents - left
