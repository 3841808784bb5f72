"""Whether a run folder's training is still alive, decided from the processes recorded in it, not from file ages.

``process.json`` in the run folder names the processes that own the run (recorded_alive says which one decides):
    supervisor  the app or CLI process whose job thread created the folder (queued, loading, supervising);
    worker      the training process it started (``launch.py train-worker``, or accelerate's launcher).
Each entry holds the pid, the process's start time (seconds since the epoch, as psutil reads it from the
operating system) and the host name. A pid alone is not enough: after a restart the same number may belong to an
unrelated process, so a process counts as this run's only when its start time matches too (within
START_TOLERANCE_S).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from core.atomic import write_json_atomic

PROCESS_FILE = "process.json"
START_TOLERANCE_S = 1.0  # psutil's create_time is rounded by the OS clock tick (10 ms on Linux)


def identity(pid: int) -> dict[str, Any] | None:
    """``{"pid", "create_time", "host"}`` of a live process, or None when no such process exists."""
    import psutil

    try:
        created = psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return {"pid": pid, "create_time": created, "host": socket.gethostname()}


def record_process(run_dir: Path, role: str, pid: int | None = None) -> None:
    """Add (or replace) ``role``'s entry in ``run_dir/process.json``; ``pid`` defaults to this process.

    Raises:
        OSError: the run folder cannot be written (a full disk: core.disk names it).
    """
    path = Path(run_dir) / PROCESS_FILE
    entry = identity(os.getpid() if pid is None else pid)
    if entry is None:
        return  # the process already ended: nothing alive to record
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = {}
    if not isinstance(recorded, dict):
        recorded = {}
    write_json_atomic(path, {**recorded, role: entry})


def _alive(entry: Any) -> bool | None:
    """True/False for an entry of this host; None when it was recorded on another host (cannot tell)."""
    import psutil

    if not isinstance(entry, dict) or not isinstance(entry.get("pid"), int):
        return False
    if entry.get("host") != socket.gethostname():
        return None
    try:
        proc = psutil.Process(entry["pid"])
        if proc.status() == psutil.STATUS_ZOMBIE:  # ended, not yet reaped by its parent
            return False
        created = proc.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    recorded = entry.get("create_time")
    return isinstance(recorded, (int, float)) and abs(created - recorded) <= START_TOLERANCE_S


def recorded_alive(run_dir: Path) -> bool | None:
    """Whether a process recorded in ``run_dir/process.json`` still runs.

    Once a worker is recorded, the worker decides: the supervisor (an app that may live on for days) outlives
    every run it supervised, and a run whose worker ended without result.json (killed, or a disk too full to
    write it) is over even while the app runs. Before that (queued, or starting the worker) the supervisor
    decides.

    Returns:
        True when the deciding process is alive (same pid and start time, on this host); False when it has ended
        (killed, crashed, machine restarted); None when the folder has no readable record (a run from an older
        version) or the process ran on another host.
    """
    try:
        recorded = json.loads((Path(run_dir) / PROCESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or not recorded:
        return None
    return _alive(recorded.get("worker" if "worker" in recorded else "supervisor"))
