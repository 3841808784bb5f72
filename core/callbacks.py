"""TrainerCallback that turns Hugging Face Trainer logs into events and honours a cooperative stop."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import TrainerCallback

from core.events import Metrics, Progress
from core.health import RISE_FACTOR, RISE_LOGS, RISE_NATS, ZERO_LOSS_LOGS


class StudioCallback(TrainerCallback):
    """Publishes Progress after every optimizer step and Metrics for every Trainer log.

    Args:
        publish: receives each event (called on the training thread; must be quick).
        stop_event: when set, training ends after the current optimizer step
            (``control.should_training_stop``), and the adapter is still saved by the job.
    """

    def __init__(self, publish: Callable[[Any], None], stop_event: threading.Event):
        self.publish = publish
        self.stop_event = stop_event
        self.t0 = time.monotonic()
        self.diverged_at: int | None = None  # first step whose loss or grad norm was NaN / inf
        self.start_step = 0
        self.first_loss: float | None = None
        self.rising_logs = 0  # consecutive logs whose loss is far above the first one (see RISE_* in health)
        self.zero_loss_logs = 0  # consecutive logs whose training loss was exactly 0.0
        self.stuck_at: int | None = None  # step at which ZERO_LOSS_LOGS such logs were seen

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = time.monotonic()
        # After a resume the optimizer's restored learning rate is the old run's last one (0 at the end of a
        # linear schedule) until the scheduler next steps; set it from the schedule of this run's length now.
        scheduler, optimizer = kwargs.get("lr_scheduler"), kwargs.get("optimizer")
        lambdas = getattr(scheduler, "lr_lambdas", None)
        self.start_step = state.global_step
        if state.global_step > 0 and lambdas and optimizer is not None:
            # this run's learning_rate, not the checkpoint's: the user may have changed it to resume
            scheduler.base_lrs = [args.learning_rate for _ in scheduler.base_lrs]
            for group in optimizer.param_groups:
                group["initial_lr"] = args.learning_rate
            lrs = [
                base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, lambdas, strict=True)
            ]
            for group, lr in zip(optimizer.param_groups, lrs, strict=True):
                group["lr"] = lr
            scheduler._last_lr = lrs
        self.publish(Progress(0, state.max_steps, 0.0, 0.0, None))

    def on_step_end(self, args, state, control, **kwargs):
        elapsed = time.monotonic() - self.t0
        done = state.global_step - self.start_step  # steps this process ran (a resume starts past 0)
        eta = elapsed / done * (state.max_steps - state.global_step) if done > 0 else None
        self.publish(Progress(state.global_step, state.max_steps, float(state.epoch or 0.0), elapsed, eta))
        if self.stop_event.is_set():
            control.should_training_stop = True
        if self.stop_event.is_set() or state.global_step >= state.max_steps:
            control.should_save = args.save_strategy != "no"  # a resumable checkpoint at Stop and at the end
        return control

    def on_train_end(self, args, state, control, **kwargs):
        # RISE_LOGS in a row guards against one noisy log mid-run; a run whose last log is already far above the
        # first loss has nothing after it to recover, so it diverged (seen: 1.11 -> 16.45 at the last of 2 steps)
        if self.rising_logs > 0 and self.diverged_at is None:
            self.diverged_at = state.global_step
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        values = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float))}
        if any(not math.isfinite(values[k]) for k in ("loss", "grad_norm") if k in values):
            # A NaN loss poisons the adapter; stop now instead of "completing" a run that learned nothing.
            self.diverged_at = self.diverged_at or state.global_step
            control.should_training_stop = True
            values = {k: v for k, v in values.items() if math.isfinite(v)}
        if "loss" in values:
            loss = values["loss"]
            self.first_loss = loss if self.first_loss is None else self.first_loss
            if loss > max(RISE_FACTOR * self.first_loss, self.first_loss + RISE_NATS):
                self.rising_logs += 1
                if self.rising_logs >= RISE_LOGS and self.diverged_at is None:
                    self.diverged_at = state.global_step
                    control.should_training_stop = True
            else:
                self.rising_logs = 0
            self.zero_loss_logs = self.zero_loss_logs + 1 if values["loss"] == 0.0 else 0
            if self.zero_loss_logs >= ZERO_LOSS_LOGS and self.stuck_at is None:
                self.stuck_at = state.global_step
                control.should_training_stop = True
        if values:
            values["elapsed_s"] = time.monotonic() - self.t0
            if torch.cuda.is_available():  # measured peak, shown next to the VRAM estimate
                values["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
                values["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
            self.publish(Metrics(state.global_step, values))
        return control


class StopSync(TrainerCallback):
    """Makes every rank of a multi-process run stop at the same optimizer step.

    Rank 0 looks for ``stop_file`` (written by the supervising job at Stop) after each step; an all-reduce (max)
    of that flag gives every rank the same answer, which sets ``stop_event`` for StudioCallback (listed after this
    one) to act on. Ranks deciding alone could stop at different steps and deadlock in the next collective.

    Args:
        stop_file: the run folder's stop marker (only rank 0 reads it, so it may live on that machine only).
        stop_event: the event StudioCallback honours.
    """

    def __init__(self, stop_file: Any, stop_event: threading.Event):
        self.stop_file = stop_file
        self.stop_event = stop_event

    def on_step_end(self, args, state, control, **kwargs):
        import torch.distributed as dist

        asked = state.is_world_process_zero and self.stop_file.exists()
        flag = torch.tensor([1.0 if asked else 0.0], device=args.device)  # nccl reduces CUDA tensors only
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() > 0:
            self.stop_event.set()
        return control
