"""The worker side of a run: ``launch.py train-worker RUN_DIR`` trains the run folder's config in its own process
(one rank of an accelerate launch, or the only process) and reports through ``events.jsonl``; the supervisor side
is core.distributed.run_worker_process."""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import traceback
from pathlib import Path
from typing import Any

from core.config import TrainingConfig
from core.disk import disk_full_message, free_bytes, is_disk_full
from core.distributed import EVENTS_FILE, LAUNCH_FILE, POLL_S, STOP_FILE
from core.errors import StudioError
from core.events import LogLine, Metrics, Progress
from core.procs import end_with_parent
from core.runs import checkpoint_note

OOM_ADVICE = (
    "GPU memory has been freed. Lower per_device_train_batch_size or max_length, turn on gradient_checkpointing, "
    "or use QLoRA; the GPU memory tab estimates each change."
)


class EventSink:
    """The worker side of events.jsonl: rank 0 writes its events; every rank writes its pid and its failure.

    Each record is one ``write`` of one line to a file opened for appending (O_APPEND), so the ranks' lines do not
    interleave.
    """

    def __init__(self, path: Path, rank: int) -> None:
        self.path, self.rank = path, rank
        self.step = 0  # the last optimizer step rank 0 reported (named in an out-of-memory message)

    def write(self, record: dict[str, Any]) -> None:
        """Append one record as one line."""
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def publish(self, event: Any) -> None:
        """run_training's publish: encode rank 0's events; other ranks' are dropped (they are the same)."""
        if self.rank != 0:
            return
        if isinstance(event, Progress):
            self.step = event.step
            self.write({"type": "progress", **event.__dict__})
        elif isinstance(event, Metrics):
            self.write({"type": "metrics", "step": event.step, "values": event.values})
        elif isinstance(event, LogLine):
            self.write({"type": "log", "text": event.text})
        elif isinstance(event, dict):
            self.write({"type": "info", "info": event})


def _watch_stop(stop_file: Path, stop_event: threading.Event, done: threading.Event) -> None:
    """A single process's Stop: set ``stop_event`` as soon as ``stop_file`` appears, even while the data or the
    model still loads (core.train.run_training then trains no step). Ranks of a multi-process run must agree on
    the step instead (core.callbacks.StopSync), so this runs only for one process."""
    while not done.wait(POLL_S):
        if stop_file.exists():
            stop_event.set()
            return


def _log_to_train_log(run_dir: Path) -> logging.Handler:
    """Send the engine's and the libraries' log records of this process to the run's train.log (the supervisor
    appends the published lines to the same file)."""
    handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("core", "transformers", "peft"):
        logging.getLogger(name).addHandler(handler)
    logging.getLogger("core").setLevel(logging.INFO)
    return handler


LOW_SPACE_BYTES = (
    32 * 10**6
)  # a failure with less free than this was the disk filling (torch.save's writer says
# "unexpected pos" or "iostream error", not ENOSPC, when a checkpoint does not fit)


def _disk_filled(exc: BaseException, run_dir: Path) -> bool:
    """Whether ``exc`` came from the disk filling: it says so, or the disk is (nearly) full now."""
    if is_disk_full(exc):
        return True
    try:
        return free_bytes(run_dir) < LOW_SPACE_BYTES
    except OSError:
        return False


def _remove_unfinished_checkpoints(run_dir: Path) -> list[str]:
    """Remove checkpoint folders the Trainer did not finish (no trainer_state.json, which it writes last), so
    the space comes back and export / resume only ever see complete ones; returns their names."""
    removed = []
    for folder in sorted((run_dir / "checkpoints").glob("checkpoint-*")):
        if folder.is_dir() and not (folder / "trainer_state.json").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


def _report_failure(exc: BaseException, run_dir: Path, sink: EventSink, rank: int) -> None:
    """Write this rank's ``failed`` record: out of memory, a full disk and an outside signal are the user's to
    act on and leave sound checkpoints (``resumable``); anything else carries its type and text."""
    traceback.print_exc()
    logging.getLogger("core.worker").error("Training failed:\n%s", traceback.format_exc())
    record: dict[str, Any] = {"type": "failed", "rank": rank, "user": True, "resumable": True}
    if type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError (CUDA)
        record["error"] = f"GPU out of memory at step {sink.step}. {OOM_ADVICE}"
    elif _disk_filled(exc, run_dir):
        message = disk_full_message(run_dir)  # measured before the unfinished checkpoint is removed
        removed = _remove_unfinished_checkpoints(run_dir)
        note = f" The unfinished {', '.join(removed)} was removed." if removed else ""
        record["error"] = f"Training stopped at step {sink.step}: {message}{note}"
    elif isinstance(exc, (KeyboardInterrupt, SystemExit)):
        record["error"] = f"the training process was stopped by a signal at step {sink.step}"
    else:
        record.update(error=f"{type(exc).__name__}: {exc}", user=False, resumable=False)
    if record["resumable"]:
        record["error"] += checkpoint_note(run_dir)
    sink.write(record)


def run_worker(run_dir: Path) -> int:
    """Train the run folder's config in this process (``launch.py train-worker RUN_DIR``): the only process of
    a run, or one rank under accelerate launch.

    Returns:
        0 when training finished (rank 0 wrote ``finished``), 1 when this rank failed (``failed`` written, with
        ``user`` true for a message meant for the user: bad input, GPU out of memory).
    """
    from core.callbacks import StopSync
    from core.train import run_training

    end_with_parent()  # no rank outlives its launcher or the app (seen: SIGKILL of the launcher left ranks training)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    sink = EventSink(run_dir / EVENTS_FILE, rank)
    sink.write({"type": "rank", "rank": rank, "pid": os.getpid()})
    stop_event, done = threading.Event(), threading.Event()
    if world == 1:
        threading.Thread(
            target=_watch_stop, args=(run_dir / STOP_FILE, stop_event, done), name="stop-watch", daemon=True
        ).start()
    handler = _log_to_train_log(run_dir) if rank == 0 else None
    try:
        cfg = TrainingConfig.from_json_file(run_dir / "config.json")
        plan = json.loads((run_dir / LAUNCH_FILE).read_text(encoding="utf-8"))
        outcome = run_training(
            cfg,
            run_dir,
            sink.publish,
            stop_event,
            callbacks=[StopSync(run_dir / STOP_FILE, stop_event)],
            strategy=plan["distributed_strategy"],
        )
    except StudioError as exc:
        sink.write({"type": "failed", "rank": rank, "error": str(exc), "user": True})
        return 1
    except BaseException as exc:  # noqa: BLE001
        _report_failure(exc, run_dir, sink, rank)
        return 1
    finally:
        done.set()
        if handler is not None:
            for name in ("core", "transformers", "peft"):
                logging.getLogger(name).removeHandler(handler)
            handler.close()
    if rank == 0:
        sink.write({"type": "finished", "status": outcome.status, "final_loss": outcome.final_loss})
    return 0
