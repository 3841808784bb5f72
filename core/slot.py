"""TrainingSlot: one training run at a time for the whole process; later Starts wait in line (FIFO).

A shared demo has one GPU (or CPU) and many visitors. A second visitor's Start is not an error: their job joins the
line, sees its place and an estimated wait, and starts when the slot frees. Local single-user installs use the same
slot, so a second job in the same process (another TrainingJob) queues too.

The wait is estimated from work, not from one number: each run ahead (the running one included) says how many rows
it still has to process (``remaining_work_rows``, in trained-row equivalents: core.space.RunWork), and the slot
multiplies them by the seconds per row measured on this machine (``record_speed``). A run with 64x the gradient
accumulation of another then waits 64x as long, which a per-step figure cannot see.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol


class Waiter(Protocol):
    """What the slot needs from a job in line: how long it will still hold the slot, in seconds (None = unknown).

    A waiter may also define ``remaining_work_rows() -> float | None``: the rows it still has to process, in
    trained-row equivalents (core.space.remaining_row_equivalents of its config and step). When it does and the
    slot has a measured speed, the wait is computed from that work; ``remaining_estimate_s`` is the fallback.
    """

    def remaining_estimate_s(self) -> float | None: ...


def _remaining_work_rows(waiter: Waiter) -> float | None:
    """``waiter.remaining_work_rows()`` when the waiter defines it (the optional part of Waiter), else None."""
    method = getattr(waiter, "remaining_work_rows", None)
    if not callable(method):
        return None
    rows = method()
    return None if rows is None else max(0.0, float(rows))


class TrainingSlot:
    """A FIFO line of waiters; the first one holds the slot.

    ``join`` puts a waiter at the end; ``wait_turn`` blocks until it is first (or its stop event is set);
    ``leave`` removes it (holder or not) and wakes the next. All methods are thread-safe.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._line: list[Waiter] = []
        self._seconds_per_row: float | None = None

    def record_speed(self, rows: float, seconds: float) -> None:
        """Record a measured training speed: ``rows`` trained-row equivalents (core.space.RunWork.row_equivalents
        of the work done) in ``seconds`` of wall time. The latest measurement wins (the machine's load changes);
        non-positive figures are ignored.
        """
        if rows > 0 and seconds > 0:
            with self._cond:
                self._seconds_per_row = seconds / rows

    @property
    def seconds_per_row(self) -> float | None:
        """The last measured wall seconds per trained-row equivalent (None before any measurement)."""
        with self._cond:
            return self._seconds_per_row

    def join(self, waiter: Waiter) -> int:
        """Put ``waiter`` at the end of the line; returns its place (0 = holds the slot now)."""
        with self._cond:
            if waiter not in self._line:
                self._line.append(waiter)
            return self._line.index(waiter)

    def leave(self, waiter: Waiter) -> None:
        """Remove ``waiter`` (it ended, failed or was stopped while waiting) and wake the others."""
        with self._cond:
            if waiter in self._line:
                self._line.remove(waiter)
            self._cond.notify_all()

    def place(self, waiter: Waiter) -> int | None:
        """0 = holds the slot, 1 = next, ...; None when not in line."""
        with self._cond:
            return self._line.index(waiter) if waiter in self._line else None

    def waiting(self) -> int:
        """How many jobs are in line behind the one holding the slot."""
        with self._cond:
            return max(0, len(self._line) - 1)

    def busy(self) -> bool:
        """True while any job holds the slot."""
        with self._cond:
            return bool(self._line)

    def wait_estimate_s(self, waiter: Waiter) -> float | None:
        """Seconds until ``waiter`` gets the slot: the time everyone ahead of it (the running run included) still
        needs.

        For each run ahead: its remaining work (``remaining_work_rows``, trained-row equivalents) x the measured
        seconds per row (``record_speed``); when either is unknown, its own ``remaining_estimate_s``.

        Returns:
            Seconds, or None when any run ahead cannot be estimated yet (nothing measured on this machine and the
            run itself cannot tell).
        """
        with self._cond:
            ahead = self._line[: self._line.index(waiter)] if waiter in self._line else list(self._line)
            seconds_per_row = self._seconds_per_row
        total = 0.0
        for other in ahead:
            rows = _remaining_work_rows(other)
            if rows is not None and seconds_per_row is not None:
                total += rows * seconds_per_row
                continue
            remaining = other.remaining_estimate_s()
            if remaining is None:
                return None
            total += remaining
        return total

    def wait_turn(
        self,
        waiter: Waiter,
        stop: threading.Event,
        on_wait: Callable[[int, float | None], None] | None = None,
        poll_s: float = 1.0,
    ) -> bool:
        """Block until ``waiter`` holds the slot.

        Args:
            waiter: a job that called ``join``.
            stop: set by Stop; waiting ends at once and the waiter leaves the line.
            on_wait: called about every ``poll_s`` seconds while waiting with (place, estimated wait in s or None).
            poll_s: seconds between on_wait calls.

        Returns:
            True when the waiter holds the slot, False when ``stop`` was set first (it has left the line).
        """
        self.join(waiter)
        while True:
            with self._cond:
                place = self._line.index(waiter)
                if place == 0:
                    return True
                if stop.is_set():
                    self._line.remove(waiter)
                    self._cond.notify_all()
                    return False
            if on_wait is not None:
                on_wait(place, self.wait_estimate_s(waiter))
            with self._cond:
                self._cond.wait(poll_s)


SLOT = TrainingSlot()  # the process's one slot, shared by every TrainingJob unless a test passes its own
