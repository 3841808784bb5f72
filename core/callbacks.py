"""TrainerCallback that turns Hugging Face Trainer logs into events and honours a cooperative stop."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import torch
from transformers import TrainerCallback

from core.events import Metrics, Progress
from core.health import RISE_FACTOR, RISE_LOGS, RISE_NATS, ZERO_LOSS_LOGS

ETA_WINDOW = 20  # the ETA's rate is the mean of this many recent steps (long enough to average packing's varied lengths)


class StepClock:
    """Seconds per optimizer step for the ETA, measured on steady-state training steps only.

    The rule (what the user sees as "ETA"):

    - a step's time runs from the end of the previous step, or from the end of the evaluation or checkpoint save
      that followed it, to this step's end: evaluation and saving never count as training time;
    - the first step of the process is left out of the rate: it carries the one-off costs (kernel warm-up and
      compilation, the allocator growing, lazy initialisation), as the model load and the start-of-run
      evaluation before it are left out by the callback starting the clock at ``on_train_begin``;
    - the rate is the mean of the last ``ETA_WINDOW`` step times (a recent window follows a machine that gets
      busier or quieter), and evaluations still to come are added at their measured mean duration:

          eta_s = steps_left * mean(step_s[-ETA_WINDOW:]) + evals_left * mean(eval_s)

    - until a second step has ended, the first step's own time stands in (an over-estimate, never a guess of 0).

    Before this rule the ETA was elapsed / steps_done * steps_left, which counted the start-of-run evaluation and
    the first step's warm-up in every step and read about 2x too long after the first steps on a CPU.

    Times are in seconds from any monotonic clock; the caller passes ``now`` (tests feed exact values).
    """

    def __init__(self, now: float) -> None:
        """Start measuring at ``now`` (seconds)."""
        self.mark = now  # end of the last step, evaluation or save: where the next step's time starts
        self.steps_seen = 0
        self.first_step_s: float | None = None
        self.step_s: deque[float] = deque(maxlen=ETA_WINDOW)
        self.eval_s: list[float] = []

    def step_done(self, now: float) -> None:
        """An optimizer step ended at ``now``."""
        took, self.mark = now - self.mark, now
        self.steps_seen += 1
        if self.steps_seen == 1:
            self.first_step_s = took
        else:
            self.step_s.append(took)

    def pause_done(self, now: float, evaluation: bool) -> None:
        """An evaluation (``evaluation``) or a checkpoint save ended at ``now``: its time is not a step's.

        An evaluation after a step is timed for the evaluations still to come; the start-of-run one (before any
        step) is not, since it carries the same warm-up as the first step.
        """
        if evaluation and self.steps_seen > 0:
            self.eval_s.append(now - self.mark)
        self.mark = now

    def seconds_per_step(self) -> float | None:
        """Mean of the recent steady-state step times; the first step's time while it is the only one; else None."""
        if self.step_s:
            return sum(self.step_s) / len(self.step_s)
        return self.first_step_s

    def eta_s(self, steps_left: int, evals_left: int = 0) -> float | None:
        """Seconds left for ``steps_left`` steps and ``evals_left`` evaluations (None before any step ended)."""
        rate = self.seconds_per_step()
        if rate is None:
            return None
        eval_s = sum(self.eval_s) / len(self.eval_s) if self.eval_s else 0.0
        return max(0, steps_left) * rate + max(0, evals_left) * eval_s


def evals_left(args: Any, state: Any) -> int:
    """Evaluations the Trainer still runs, seen from ``on_step_end`` of step ``state.global_step``: one after every
    ``state.eval_steps``-th step with ``eval_strategy="steps"`` (transformers' DefaultFlowCallback), counting the
    one due right after this step (it runs after ``on_step_end``); 0 for any other strategy."""
    every = int(getattr(state, "eval_steps", 0) or 0)
    if getattr(args, "eval_strategy", "no") != "steps" or every <= 0:  # IntervalStrategy is a str enum
        return 0
    return max(0, state.max_steps // every - (state.global_step - 1) // every)


class StudioCallback(TrainerCallback):
    """Publishes Progress after every optimizer step and Metrics for every Trainer log.

    Args:
        publish: receives each event (called on the training thread; must be quick).
        stop_event: when set, training ends after the current optimizer step
            (``control.should_training_stop``), and the adapter is still saved by the job.
        clock: seconds from a monotonic clock (``time.monotonic``; tests pass their own to feed exact times).

    Progress.eta_s follows StepClock's rule (steady-state steps only, evaluation and saving excluded).
    """

    def __init__(
        self,
        publish: Callable[[Any], None],
        stop_event: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.publish = publish
        self.stop_event = stop_event
        self.clock = clock
        self.t0 = clock()
        self.steps = StepClock(self.t0)
        self.diverged_at: int | None = None  # first step whose loss or grad norm was NaN / inf
        self.first_loss: float | None = None
        self.rising_logs = 0  # consecutive logs whose loss is far above the first one (see RISE_* in health)
        self.zero_loss_logs = 0  # consecutive logs whose training loss was exactly 0.0
        self.stuck_at: int | None = None  # step at which ZERO_LOSS_LOGS such logs were seen

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = self.clock()
        self.steps = StepClock(self.t0)
        # After a resume the optimizer's restored learning rate is the old run's last one (0 at the end of a
        # linear schedule) until the scheduler next steps; set it from the schedule of this run's length now.
        scheduler, optimizer = kwargs.get("lr_scheduler"), kwargs.get("optimizer")
        lambdas = getattr(scheduler, "lr_lambdas", None)
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
        now = self.clock()
        self.steps.step_done(now)
        elapsed = now - self.t0
        eta = self.steps.eta_s(state.max_steps - state.global_step, evals_left(args, state))
        self.publish(Progress(state.global_step, state.max_steps, float(state.epoch or 0.0), elapsed, eta))
        if self.stop_event.is_set():
            control.should_training_stop = True
        if self.stop_event.is_set() or state.global_step >= state.max_steps:
            control.should_save = args.save_strategy != "no"  # a resumable checkpoint at Stop and at the end
        return control

    def on_evaluate(self, args, state, control, **kwargs):
        self.steps.pause_done(self.clock(), evaluation=True)
        return control

    def on_save(self, args, state, control, **kwargs):
        self.steps.pause_done(self.clock(), evaluation=False)
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
            values["elapsed_s"] = self.clock() - self.t0
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
