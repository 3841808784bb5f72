"""Every training runs in a worker process: the job's thread supervises ``launch.py train-worker RUN_DIR`` (one
process) or ``accelerate launch`` of it (several processes or an accelerate config file), in run_worker_process;
every rank runs the same core.train.run_training (run_worker). A busy UI (visitors polling) therefore cannot slow
the training, and a crash in it (out of memory, a library abort, SIGKILL) cannot take the app down.

Files in the run folder, besides the single-process ones:
    launch.json    the plan: num_processes, strategy and its reason, the launch command.
    events.jsonl   one JSON object per line: rank 0's events (progress, metrics, log, info, finished) and every
                   rank's pid and failure. The supervisor turns them back into core.events records and publishes
                   them, so the snapshot and metrics.jsonl are the same whatever the number of processes.
    stop.request   written by the supervisor at Stop; rank 0 sees it and the ranks agree (core.callbacks.StopSync);
                   a single process also watches for it while it loads, so a Stop then trains no step.
    workers.log    every rank's stdout and stderr (tracebacks, torchrun's failure summary).
    process.json   the supervisor's and the worker's pid and start time (core.liveness): the runs list knows
                   whether a run without result.json is still alive.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.config import TrainingConfig
from core.errors import ConfigError, StudioError, TrainingFailed, WorkerEnded
from core.events import Finished, LogLine, Metrics, Progress
from core.liveness import record_process
from core.parallel import (
    LAUNCH_PY,
    StrategyChoice,
    choose_strategy,
    estimate_per_gpu,
    resolve_num_processes,
    worker_command,
)
from core.procs import LIVE_LAUNCHERS, PARENT_DEATH_HOOK, terminate_group
from core.runs import checkpoint_note, write_json_atomic

log = logging.getLogger(__name__)
LAUNCH_FILE, EVENTS_FILE, STOP_FILE, WORKERS_LOG = (
    "launch.json",
    "events.jsonl",
    "stop.request",
    "workers.log",
)
POLL_S = 0.25
STOP_GRACE_S = 900.0  # after Stop, the ranks finish the step and save; past this they are taken to be hung
TAIL_LINES = 12
FENCE, BROKEN_FENCE = "`" * 3, "` ` `"  # the log tail is shown in a fenced code block


def visible_gpus() -> int:
    """CUDA GPUs this process sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def uses_launcher(cfg: TrainingConfig) -> bool:
    """True when ``cfg`` trains through accelerate launch (more than one process, or an accelerate config file);
    False for the in-process thread (num_processes 1, or 0 on a machine with at most one GPU)."""
    if cfg.accelerate_config_file:
        return True
    if cfg.num_processes == 1:
        return False  # the default: no torch import needed to decide
    return resolve_num_processes(cfg, visible_gpus()) > 1


def _free_port() -> int:
    """A TCP port free on this machine now (for torchrun's rendezvous of a single-machine run)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def plan_single(run_dir: Path) -> tuple[StrategyChoice, list[str], dict[str, Any]]:
    """The plan of a one-process run: ``python launch.py train-worker RUN_DIR``, no launcher, no torch import here.
    Writes ``launch.json`` and returns (choice, argv, facts) like plan_launch."""
    choice = StrategyChoice("single", 1, "one process.")
    argv = [sys.executable, str(LAUNCH_PY), "train-worker", str(run_dir)]
    facts = {"num_processes": 1, "distributed_strategy": "single", "launch_command": argv}
    write_json_atomic(run_dir / LAUNCH_FILE, facts)
    return choice, argv, facts


def plan_launch(cfg: TrainingConfig, run_dir: Path) -> tuple[StrategyChoice, list[str], dict[str, Any]]:
    """Choose the strategy, write ``launch.json`` and return (choice, argv, facts for the snapshot's info).

    The settings were checked by core.train.preflight_config (core.parallel.process_problems) before the run
    folder was made.
    """
    import torch

    from core.model import inspect_model, resolve_model_path
    from core.vram import estimate_vram

    has_cuda = torch.cuda.is_available()
    n = resolve_num_processes(cfg, visible_gpus())
    from core.hardware import usable_gpu_gib

    gpu_gib = usable_gpu_gib(0) if has_cuda else None
    spec = inspect_model(resolve_model_path(cfg.model_name_or_path))
    choice = config_file_choice(cfg.accelerate_config_file) or choose_strategy(cfg, spec, n, gpu_gib)
    n = choice.num_processes
    per_gpu = estimate_per_gpu(estimate_vram(spec, cfg, cfg.method), spec, choice.strategy, n)
    argv = worker_command(cfg, run_dir, n, choice.strategy, has_cuda, _free_port())
    facts = {
        "num_processes": n,
        "distributed_strategy": choice.strategy,
        "strategy_reason": choice.reason,
        "estimate_per_gpu_gib": per_gpu.total_gib,
        "launch_command": argv,
    }
    write_json_atomic(run_dir / LAUNCH_FILE, facts)
    return choice, argv, facts


def config_file_choice(config_file: str) -> StrategyChoice | None:
    """The strategy an accelerate config file sets (its distributed_type and num_processes, read by accelerate's
    own loader), or None without a file.

    Raises:
        ConfigError: the file cannot be read as an accelerate config.
    """
    if not config_file:
        return None
    from accelerate.commands.config.config_args import load_config_from_file

    try:
        loaded = load_config_from_file(str(Path(config_file).expanduser()))
    except Exception as exc:  # yaml / json / missing keys: name the field and the file's problem
        raise ConfigError(
            [f"accelerate_config_file: {config_file!r} is not an accelerate config ({exc})."]
        ) from None
    kind = str(getattr(loaded, "distributed_type", "")).split(".")[-1]
    strategy = "fsdp" if kind == "FSDP" else "ddp"
    n = int(getattr(loaded, "num_processes", 0) or 0)
    return StrategyChoice(
        strategy,
        max(n, 1),
        f"{kind or 'as set'} over {n if n > 0 else 'the'} processes, as {config_file} sets.",
    )


def run_worker_process(
    cfg: TrainingConfig, run_dir: Path, publish: Callable[[Any], None], stop_event: threading.Event
) -> Finished:
    """Train ``cfg`` in a worker process (or several) and publish its events as run_training would. Blocking.

    The worker (or accelerate's launcher) runs in its own process group (a new session); whatever happens, the
    group is terminated before this returns, so no rank outlives the run. Stop writes ``stop.request``; the ranks
    end at the same step. The worker's pid and start time go to ``process.json`` (core.liveness).

    Returns:
        Finished (completed / stopped) with rank 0's last training loss.

    Raises:
        StudioError: a rank's user-facing error (bad data, model), as one process would raise it.
        TrainingFailed: a rank crashed or was killed (its exit and the tail of workers.log), or the ranks did not
            end within STOP_GRACE_S of Stop (they are killed).
    """
    single = not uses_launcher(cfg)
    choice, argv, facts = plan_single(run_dir) if single else plan_launch(cfg, run_dir)
    if not single:
        publish(LogLine(f"Strategy: {choice.reason}"))
        publish(LogLine("Launching: " + " ".join(argv[1:])))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(run_dir / WORKERS_LOG, "ab") as out:
        proc = subprocess.Popen(
            argv,
            cwd=LAUNCH_PY.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=PARENT_DEATH_HOOK,  # the launcher ends with the app, however the app ends
        )
    LIVE_LAUNCHERS.add(proc)
    record_process(run_dir, "worker", proc.pid)
    publish({**facts, "launcher_pid": proc.pid})
    reader = _EventReader(run_dir / EVENTS_FILE)
    finished: Finished | None = None
    failures: list[dict[str, Any]] = []
    pids: dict[str, int] = {}
    stop_asked: float | None = None
    try:
        while True:
            rc = proc.poll()  # before reading, so events written just before the exit are read below
            for ev in reader.read_new():
                kind = ev.get("type")
                if kind == "rank":
                    pids[str(ev["rank"])] = int(ev["pid"])
                    publish({"rank_pids": dict(pids)})
                elif kind == "failed":
                    failures.append(ev)
                elif kind == "finished":
                    finished = Finished(ev["status"], ev.get("final_loss"))
                else:
                    publish(_decode(ev))
            if stop_event.is_set() and stop_asked is None:
                (run_dir / STOP_FILE).write_text(f"{time.time()}\n", encoding="utf-8")
                stop_asked = time.monotonic()
            if rc is not None:
                break
            if stop_asked is not None and time.monotonic() - stop_asked > STOP_GRACE_S:
                failures.insert(
                    0, {"rank": "all", "error": f"no rank ended within {STOP_GRACE_S:.0f} s of Stop"}
                )
                break
            time.sleep(POLL_S)
    finally:
        terminate_group(proc, [*pids.values()])
        LIVE_LAUNCHERS.discard(proc)
    if rc == 0 and finished is not None:
        return finished
    raise _failure(rc, failures, run_dir / WORKERS_LOG, single)


def _failure(
    rc: int | None, failures: list[dict[str, Any]], workers_log: Path, single: bool = False
) -> StudioError:
    """The error to show: a rank's own (user errors as they are), else torchrun's summary, plus the log tail."""
    for ev in failures:
        if ev.get("user"):
            return (WorkerEnded if ev.get("resumable") else StudioError)(ev["error"])
    tail = _tail(workers_log)
    if single:
        if failures:
            head = str(failures[0]["error"])
        elif rc is not None and rc < 0:
            name = signal.Signals(-rc).name
            return WorkerEnded(
                f"the training process was killed by {name}"
                + (" (often the system running out of RAM)" if name == "SIGKILL" else "")
                + "."
                + checkpoint_note(workers_log.parent)
            )
        else:
            head = f"the training process exited with code {rc} and no result"
        return TrainingFailed(
            f"{head}. Last lines of {workers_log}:\n```text\n{tail.replace(FENCE, BROKEN_FENCE)}\n```"
        )
    by_rank = {str(ev["rank"]): ev["error"] for ev in failures}
    # torchrun's summary names the first rank that failed; others may have failed after it (a closed connection)
    root = re.search(r"Root Cause.*?rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", _tail(workers_log, 60), re.S)
    if root:
        rank, code = root.group(1), int(root.group(2))
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        head = f"rank {rank} {how}" + (f" ({by_rank[rank]})" if rank in by_rank else "")
    elif failures:
        head = f"rank {failures[0]['rank']} failed: {failures[0]['error']}"
    else:
        head = f"accelerate launch exited with code {rc} and no result"
    return TrainingFailed(
        f"Training failed in a worker process: {head}. The other ranks were stopped. Last lines of "
        f"{workers_log}:\n```text\n{tail.replace(FENCE, BROKEN_FENCE)}\n```"  # a code block in Markdown
    )


def _tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    kept = [ln for ln in text.splitlines() if ln.strip() and "Warning" not in ln]
    return "\n".join(kept[-lines:])


class _EventReader:
    """Reads whole new lines of a JSON-lines file that another process appends to."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def read_new(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next poll
        self.offset += end
        return [json.loads(line) for line in data[:end].splitlines() if line.strip()]


def _decode(ev: dict[str, Any]) -> Any:
    """An events.jsonl record back to the core.events record (or info dict) run_training published."""
    kind = ev["type"]
    if kind == "progress":
        return Progress(ev["step"], ev["max_steps"], ev["epoch"], ev["elapsed_s"], ev["eta_s"])
    if kind == "metrics":
        return Metrics(ev["step"], ev["values"])
    if kind == "log":
        return LogLine(ev["text"])
    return ev["info"]
