"""Process lifetime of a multi-process run: the launcher's group and every rank end with the app.

The launcher (accelerate launch) runs in its own session; torchrun may start ranks in sessions of their own. Three
guards, each for a way the supervisor can end: terminate_group (SIGTERM, then SIGKILL, to the launcher's group and
the ranks' groups) when a run ends normally or fails; an atexit hook for the app closing mid-run; and Linux's
parent-death signal (``prctl`` PR_SET_PDEATHSIG) on the launcher and on each rank, for a supervisor or launcher
killed outright (SIGKILL leaves no chance to clean up; seen in a breaker pass: both ranks kept training).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

log = logging.getLogger(__name__)

KILL_GRACE_S = 10.0  # SIGTERM to the process group, then SIGKILL after this many seconds
LIVE_LAUNCHERS: set[subprocess.Popen[bytes]] = (
    set()
)  # launchers of this process, ended at exit (daemon threads are not)


def terminate_group(proc: subprocess.Popen[bytes], rank_pids: list[int] | None = None) -> None:
    """SIGTERM the launcher's process group, SIGKILL what is left after KILL_GRACE_S; reap the launcher. Ranks
    that torchrun started in sessions of their own (``rank_pids``, with their groups) get the same signals, so a
    launcher that died first cannot leave them training."""
    groups = [proc.pid, *(rank_pids or [])]  # start_new_session: the launcher leads its own group
    for sig, grace in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 0.0)):
        alive = False
        for pgid in groups:
            for kill in (os.killpg, os.kill):  # a rank that leads no group of its own is signalled by pid
                try:
                    kill(pgid, sig)
                    alive = True
                    break
                except (ProcessLookupError, PermissionError):
                    pass  # nobody left (or the pid was reused by someone else's process)
        if not alive:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_group_alive(g) for g in groups):
            proc.poll()
            time.sleep(0.1)
    try:
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        log.error("accelerate launch (pid %s) did not end after SIGKILL", proc.pid)


def _parent_death_hook() -> Any:
    """A preexec function that makes the child receive SIGTERM when its parent dies (Linux ``prctl``
    PR_SET_PDEATHSIG), resolved here so the child only makes one C call between fork and exec; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


PARENT_DEATH_HOOK = _parent_death_hook()


def end_with_parent() -> None:
    """In a rank: receive SIGTERM when the launcher that started it dies, even by SIGKILL (Linux), and exit now
    if it is already gone (re-parented to init)."""
    if PARENT_DEATH_HOOK is not None:
        parent = os.getppid()
        PARENT_DEATH_HOOK()
        if os.getppid() != parent:
            os._exit(1)


def _terminate_live() -> None:
    """At interpreter exit (the app closed mid-run): end every launcher group still running, so no rank outlives
    the app that supervised it."""
    for proc in list(LIVE_LAUNCHERS):
        terminate_group(proc)


atexit.register(_terminate_live)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exit_cleanly_on(*signals: signal.Signals) -> None:
    """Turn these signals into SystemExit in the main thread, so exit handlers run (core.procs ends every
    training launcher this process started; without this, SIGTERM from a service manager or SIGHUP from a
    closed terminal left the launcher and its ranks training)."""

    def _exit(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    for sig in signals:
        try:
            if signal.getsignal(sig) is signal.SIG_IGN:  # e.g. SIGHUP under nohup: stay ignored
                continue
            signal.signal(sig, _exit)
        except (ValueError, OSError):  # not the main thread, or a platform without this signal
            pass
