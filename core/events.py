"""Small frozen records the training job publishes, and the snapshot the UI polls."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Job states. Terminal: completed, stopped, failed.
IDLE, LOADING, TRAINING, STOPPING, SAVING = "idle", "loading", "training", "stopping", "saving"
QUEUED = "queued"  # waiting for the process's one training slot (core.slot)
COMPLETED, STOPPED, FAILED = "completed", "stopped", "failed"
TERMINAL = (COMPLETED, STOPPED, FAILED)
ACTIVE = (QUEUED, LOADING, TRAINING, STOPPING, SAVING)


@dataclass(frozen=True)
class Progress:
    """Optimizer-step progress. elapsed_s / eta_s are wall-clock seconds (eta None until a step is done).

    elapsed_s counts from the start of training (after the model load); eta_s follows core.callbacks.StepClock:
    the mean time of recent steady-state steps (the first step's warm-up, evaluations and checkpoint saves left
    out) times the steps left, plus the evaluations still to come at their measured duration.
    """

    step: int
    max_steps: int
    epoch: float
    elapsed_s: float
    eta_s: float | None


@dataclass(frozen=True)
class Metrics:
    """One logging step: the Trainer's log dict (loss, learning_rate, grad_norm, eval_loss ...) plus step."""

    step: int
    values: dict[str, float]


@dataclass(frozen=True)
class LogLine:
    """A human-readable line for the run log shown in the UI."""

    text: str


@dataclass(frozen=True)
class Finished:
    """Training ended on its own (status completed) or by Stop (status stopped); the adapter is saved."""

    status: str
    final_loss: float | None


@dataclass(frozen=True)
class Failed:
    """Training raised; ``error`` is the message shown to the user."""

    error: str
    resumable: bool = (
        False  # ended from outside (killed, out of memory, disk full): its checkpoints are sound
    )


@dataclass(frozen=True)
class JobSnapshot:
    """Everything the UI shows about the current or last job, copied under the job's lock.

    Attributes:
        status: one of idle, queued, loading, training, stopping, saving, completed, stopped, failed.
        run_dir: the run folder ("" before the first start).
        step / max_steps: optimizer steps done / planned.
        epoch: fractional epoch.
        elapsed_s / eta_s: seconds since start / estimated seconds left.
        history: every Metrics.values dict with its "step", oldest first.
        logs: the last log lines (at most 200).
        log_total: how many lines were ever logged (to print only new ones when ``logs`` is capped).
        message: the latest status sentence (error text when failed).
        info: facts fixed at start (trainable_params, total_params, device, dtype, rows ...) and final_loss.
    """

    status: str = IDLE
    run_dir: str = ""
    step: int = 0
    max_steps: int = 0
    epoch: float = 0.0
    elapsed_s: float = 0.0
    eta_s: float | None = None
    history: tuple[dict[str, float], ...] = ()
    logs: tuple[str, ...] = ()
    log_total: int = 0
    message: str = "No training has run in this session."
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def is_active(self) -> bool:
        """True while queued, loading, training, stopping or saving."""
        return self.status in ACTIVE
