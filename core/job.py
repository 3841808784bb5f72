"""TrainingJob: owns the background training thread, the run folder and the snapshot the UI polls."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.config import TrainingConfig
from core.disk import disk_full_message, is_disk_full
from core.errors import ConfigError, DiskFullError, JobBusyError, StudioError, WorkerEnded
from core.events import (
    COMPLETED,
    FAILED,
    LOADING,
    QUEUED,
    SAVING,
    STOPPED,
    STOPPING,
    TRAINING,
    Failed,
    Finished,
    JobSnapshot,
    LogLine,
    Metrics,
    Progress,
)
from core.liveness import record_process
from core.runs import new_run_dir, write_json_atomic
from core.slot import SLOT, TrainingSlot
from core.space import done_row_equivalents, remaining_row_equivalents

log = logging.getLogger(__name__)
MAX_LOG_LINES = 200


def _metrics_line(row: dict[str, float], max_steps: int) -> str:
    """A log line for one Trainer log: 'step 3/20 · loss 1.2345 · lr 2.0e-04 · grad norm 0.41' (or eval losses)."""
    parts = [f"step {int(row['step'])}/{max_steps}"]
    names = {
        "loss": "loss",
        "eval_train_sample_loss": "loss on fixed rows",
        "eval_validation_loss": "validation loss",
    }
    parts += [f"{label} {row[key]:.4f}" for key, label in names.items() if key in row]
    if len(parts) == 1:
        return ""
    if "learning_rate" in row:
        parts.append(f"lr {row['learning_rate']:.1e}")
    if "grad_norm" in row:
        parts.append(f"grad norm {row['grad_norm']:.3f}")
    return " · ".join(parts)


def _only_config(run_dir: Path) -> bool:
    """True when ``run_dir`` holds nothing a run made: only config.json, process.json and an empty train.log."""
    try:
        entries = list(run_dir.iterdir())
    except OSError:
        return False
    for entry in entries:
        if entry.name in ("config.json", "process.json"):
            continue
        if entry.name == "train.log" and entry.is_file() and entry.stat().st_size == 0:
            continue
        return False
    return True


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "unknown until the current run has done a step"
    return "under a minute" if seconds < 60 else f"about {round(seconds / 60):d} min"


def train(
    cfg: TrainingConfig, run_dir: Path, publish: Callable[[Any], None], stop_event: threading.Event
) -> Finished:
    """Run ``cfg`` in a worker process this thread supervises (core.distributed.run_worker_process): one
    ``launch.py train-worker`` process, or an ``accelerate launch`` of several. Blocking; publishes the worker's
    events. The app's interpreter only reads events, so visitors polling it cannot slow the training.

    Raises:
        StudioError: the worker's message for the user (bad data, model, GPU out of memory).
        TrainingFailed: the worker crashed or was killed (how, and the tail of workers.log).
    """
    from core.distributed import run_worker_process

    return run_worker_process(cfg, run_dir, publish, stop_event)


class TrainingJob:
    """One training run at a time per job, on a daemon thread; ``snapshot()`` is safe to call from any thread.

    Every job of the process shares one TrainingSlot (core.slot.SLOT): a job started while another trains is
    ``queued`` with its place and estimated wait, and starts when the slot frees. The run folder gets
    ``config.json`` at start, one ``metrics.jsonl`` line per Trainer log, ``train.log``, ``adapter/`` at the end
    (also after Stop), and ``result.json`` with status, steps and final_loss.
    """

    seconds_per_step: float | None = (
        None  # measured by the last run of the process; sizes queue wait estimates
    )

    def __init__(self, slot: TrainingSlot | None = None) -> None:
        self._lock = threading.Lock()
        self._snap = JobSnapshot()
        self._thread: threading.Thread | None = None
        self._done = threading.Event()  # set when the current job thread has finished
        self._stop = threading.Event()
        self._slot = slot or SLOT
        self._first_step: int | None = None  # the step the current run's first reported step followed

    # ------------------------------------------------------------------ public API
    def start(
        self, cfg: TrainingConfig, max_waiting: int | None = None, dataset_rows: int | None = None
    ) -> Path:
        """Validate ``cfg``, create a new run folder and start training in the background.

        ``max_waiting`` caps the line (a shared demo passes one): with that many runs already waiting for the
        slot, the Start is refused instead of queued. ``dataset_rows`` (usable rows, when the caller validated
        the data) lets the demo's work caps size a fractional validation_split exactly.

        Returns:
            The run folder.

        Raises:
            ConfigError: the config has problems (all listed).
            JobBusyError: this job is already active (another job's run only queues this one), or the line is full.
        """
        problems = cfg.validate()
        if problems:
            raise ConfigError(problems)
        from core.train import preflight_config

        preflight_config(
            cfg, dataset_rows
        )  # resume checkpoint and attention kernel, before a run folder exists
        with self._lock:
            if self._snap.is_active:
                raise JobBusyError(
                    f"A run is already {self._snap.status} in {self._snap.run_dir}; stop it first."
                )
            waiting = self._slot.waiting()
            if max_waiting is not None and waiting >= max_waiting:
                raise JobBusyError(
                    f"{waiting} runs are already waiting for this machine (the most it queues); try again later."
                )
            run_dir = None
            try:
                run_dir = new_run_dir(cfg.output_dir)
                write_json_atomic(run_dir / "config.json", cfg.to_dict())
                record_process(run_dir, "supervisor")
            except OSError as exc:
                if run_dir is not None:  # a folder holding a half-written config is nobody's run
                    shutil.rmtree(run_dir, ignore_errors=True)
                if is_disk_full(exc):
                    raise DiskFullError(
                        f"output_dir: no room for a new run: {disk_full_message(cfg.output_dir)}"
                    ) from None
                raise ConfigError(
                    [
                        f"output_dir: cannot create a run folder in {cfg.output_dir!r} "
                        f"({exc.strerror or exc}); choose a writable folder."
                    ]
                ) from None
            self._stop.clear()
            place = self._slot.join(self)  # in line before the thread starts: the place shows at once
            self._first_step = None
            self._snap = JobSnapshot(
                status=QUEUED if place else LOADING,
                run_dir=str(run_dir),
                message=self._queue_message(place, None) if place else "Loading data and model...",
                info={"config": cfg.to_dict(), "started_at": time.time()},
            )
            self._done = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(cfg, run_dir, self._done), name="lora-studio-train", daemon=True
            )
            self._thread.start()
        if place:  # outside this job's lock: the estimate reads the other jobs' snapshots under theirs
            self._on_wait(place, self._slot.wait_estimate_s(self))
        return run_dir

    def stop(self) -> bool:
        """Ask the running job to end after the current step (adapter still saved). False if none runs."""
        with self._lock:
            if not self._snap.is_active:
                return False
            self._stop.set()
            self._snap = replace(self._snap, status=STOPPING, message="Stopping after the current step...")
            return True

    def remaining_work_rows(self) -> float | None:
        """Work this job still has (trained-row equivalents, core.space.remaining_row_equivalents), for the
        slot's wait estimates; None before a config is known or when the run is sized by epochs and its rows are
        not known yet."""
        snap = self.snapshot()
        cfg = snap.info.get("config")
        return remaining_row_equivalents(cfg, snap.step, snap.info.get("rows")) if cfg else None

    def remaining_estimate_s(self) -> float | None:
        """Seconds this job will still hold the training slot (None = cannot tell yet), for queue estimates.

        Training: the run's own ETA. Queued or loading: planned max_steps x the process's last measured seconds
        per step (None when the config trains by epochs or nothing has been measured yet).
        """
        snap = self.snapshot()
        if snap.eta_s is not None and snap.step > 0:
            return snap.eta_s
        steps = int(snap.info.get("config", {}).get("max_steps") or 0)
        if steps > 0 and TrainingJob.seconds_per_step is not None:
            return steps * TrainingJob.seconds_per_step
        return None

    @staticmethod
    def _queue_message(place: int, wait_s: float | None) -> str:
        ahead = "1 run is" if place == 1 else f"{place} runs are"
        return (
            f"Queued: number {place + 1} in line ({ahead} ahead of yours on this machine). Estimated wait: "
            f"{_minutes(wait_s)}. Your run starts by itself; Stop leaves the queue."
        )

    def snapshot(self) -> JobSnapshot:
        """A consistent copy of the job's state."""
        with self._lock:
            return self._snap

    def is_running(self) -> bool:
        """True until the training thread has written its terminal snapshot.

        An event, not ``Thread.is_alive``: on CPython 3.11 a KeyboardInterrupt that lands in ``Thread.join`` leaves
        the thread reported dead while it still runs (seen as Ctrl-C in the CLI returning before the stop).
        """
        return self._thread is not None and not self._done.is_set()

    def wait(self, timeout_s: float | None = None) -> JobSnapshot:
        """Block until the job thread has finished (or ``timeout_s`` passes); returns the snapshot."""
        if self._thread is not None:
            self._done.wait(timeout_s)
        return self.snapshot()

    # ------------------------------------------------------------------ thread side
    def _on_wait(self, place: int, wait_s: float | None) -> None:
        with self._lock:
            if self._snap.status == QUEUED:
                self._snap = replace(
                    self._snap,
                    message=self._queue_message(place, wait_s),
                    info={**self._snap.info, "queue_place": place, "queue_wait_s": wait_s},
                )

    def _wait_for_chat(self) -> bool:
        """Hold the slot until the Chat tab has no answer in progress (its models are freed). False = stopped."""
        from core import chat  # lazy, as chat refers back to TrainingJob

        told = False
        while not chat.free_models():  # chat checks the slot under its lock: no new answer starts meanwhile
            if self._stop.is_set():
                return False
            if not told:
                with self._lock:
                    self._snap = replace(self._snap, message=chat.START_BLOCKED_MESSAGE)
                told = True
            time.sleep(0.25)
        return True

    def _run(self, cfg: TrainingConfig, run_dir: Path, done: threading.Event) -> None:
        try:
            self._run_job(cfg, run_dir)
        finally:
            done.set()

    def _run_job(self, cfg: TrainingConfig, run_dir: Path) -> None:
        # The slot is left before the terminal snapshot is published: while this job still shows active, a new
        # Start of the same job is refused, so it can never re-join the line this thread is about to leave.
        outcome: Finished | Failed = Finished(STOPPED, None)
        trained = False
        try:
            if self._slot.wait_turn(self, self._stop, self._on_wait) and self._wait_for_chat():
                with self._lock:
                    if self._snap.status == QUEUED:
                        self._snap = replace(self._snap, status=LOADING, message="Loading data and model...")
                started = time.monotonic()
                outcome, trained = self._train(cfg, run_dir), True
                steps = self.snapshot().step
                if steps > 0:
                    TrainingJob.seconds_per_step = (time.monotonic() - started) / steps
        finally:
            self._slot.leave(self)
        self._finish(outcome, run_dir, trained=trained)

    def _train(self, cfg: TrainingConfig, run_dir: Path) -> Finished | Failed:
        handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        core_log = logging.getLogger("core")
        core_log.addHandler(handler)
        core_log.setLevel(logging.INFO)
        outcome: Finished | Failed
        try:
            outcome = train(cfg, run_dir, lambda ev: self._publish(ev, run_dir), self._stop)
        except StudioError as exc:
            outcome = Failed(str(exc), resumable=isinstance(exc, WorkerEnded))
        except (
            Exception
        ) as exc:  # the worker could not be started or supervised: show why, keep the app alive
            log.error("Training failed:\n%s", traceback.format_exc())
            outcome = Failed(
                disk_full_message(run_dir) if is_disk_full(exc) else f"{type(exc).__name__}: {exc}"
            )
        finally:
            core_log.removeHandler(handler)
            handler.close()
        return outcome

    def _publish(self, event: Any, run_dir: Path) -> None:
        if isinstance(event, Progress) and event.step > 0 and event.elapsed_s > 0:
            self._record_speed(event)
        with self._lock:
            snap = self._snap
            if isinstance(event, Progress):
                status = STOPPING if self._stop.is_set() else TRAINING
                self._snap = replace(
                    snap,
                    status=status,
                    step=event.step,
                    max_steps=event.max_steps,
                    epoch=event.epoch,
                    elapsed_s=event.elapsed_s,
                    eta_s=event.eta_s,
                    message=f"Training step {event.step}/{event.max_steps}",
                )
            elif isinstance(event, Metrics):
                row = {"step": event.step, **event.values}
                try:
                    with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(row) + "\n")
                except OSError as exc:  # a full disk must not end the supervision: the worker decides
                    log.error("metrics.jsonl not written: %s", exc)
                self._snap = replace(snap, history=snap.history + (row,))
                line = _metrics_line(row, snap.max_steps)
                if line:
                    self._log(line)
            elif isinstance(event, LogLine):
                log.info(event.text)
                self._log(event.text)
                if "saving the adapter" in event.text:
                    self._snap = replace(self._snap, status=SAVING)
            elif isinstance(event, dict):
                self._snap = replace(snap, info={**snap.info, **event})

    def _record_speed(self, event: Progress) -> None:
        """Tell the slot how fast this machine works (rows per second since this process's first step), so
        queued runs' waits come from their work. Outside this job's lock (the slot has its own)."""
        if self._first_step is None:
            self._first_step = event.step - 1  # a resumed run starts past 0
        snap = self.snapshot()
        cfg, rows = snap.info.get("config"), snap.info.get("rows")
        if not cfg:
            return
        done = done_row_equivalents(cfg, event.step, rows)
        before = done_row_equivalents(cfg, self._first_step, rows)
        if done is not None and before is not None:
            self._slot.record_speed(done - before, event.elapsed_s)

    def _log(self, text: str) -> None:
        """Append a timestamped line to the snapshot (caller holds the lock)."""
        snap = self._snap
        logs = (snap.logs + (f"{time.strftime('%H:%M:%S')} {text}",))[-MAX_LOG_LINES:]
        self._snap = replace(snap, logs=logs, log_total=snap.log_total + 1)

    def _finish(self, outcome: Finished | Failed, run_dir: Path, trained: bool = True) -> None:
        with self._lock:
            snap = self._snap
            if not trained:
                msg, status, loss = "Stopped while waiting in the queue: nothing was trained.", STOPPED, None
            elif isinstance(outcome, Finished) and snap.step == 0 and outcome.status == STOPPED:
                msg, status, loss = "Stopped before the first step: nothing was trained.", STOPPED, None
                trained = False
            elif isinstance(outcome, Finished):
                loss = outcome.final_loss
                msg = (
                    f"Training {outcome.status} after {snap.step} step{'' if snap.step == 1 else 's'}"
                    + (f", final loss {loss:.4f}." if loss is not None else ".")
                    + " Adapter saved."
                )
                status = outcome.status
            else:
                msg, status, loss = f"Training failed: {outcome.error}", FAILED, None
            self._log(msg)
            snap = self._snap
            self._snap = replace(
                snap,
                status=status,
                message=msg,
                eta_s=0.0 if status == COMPLETED else None,
                info={**snap.info, "final_loss": loss},
            )
            result = {
                "status": status,
                "steps": snap.step,
                "final_loss": loss,
                "message": msg,
                "run_dir": str(run_dir),
                "adapter": str(run_dir / "adapter") if status != FAILED and trained else None,
                **({"resumable": outcome.resumable} if isinstance(outcome, Failed) else {}),
                **{k: v for k, v in snap.info.items() if k != "config"},
            }
        if not trained and snap.step == 0 and _only_config(run_dir):
            # a run that never started leaves nothing behind (no 0-step "stopped" folder in the runs list)
            shutil.rmtree(run_dir, ignore_errors=True)
            return
        try:
            write_json_atomic(run_dir / "result.json", result)
        except OSError as exc:
            reason = disk_full_message(run_dir) if is_disk_full(exc) else str(exc)
            log.error("result.json of %s not written: %s", run_dir, exc)
            with self._lock:  # the status stays what training reached; the message says what is missing
                self._snap = replace(self._snap, message=f"{msg} result.json could not be written: {reason}")
