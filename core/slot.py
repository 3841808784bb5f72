"""TrainingSlot: one training run at a time for the whole process; later Starts wait in line (FIFO).

A shared demo has one GPU (or CPU) and many visitors. A second visitor's Start is not an error: their job joins the
line, sees its place and an estimated wait, and starts when the slot frees. Local single-user installs use the same
slot, so a second job in the same process (another TrainingJob) queues too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol


class Waiter(Protocol):
    """What the slot needs from a job in line: how long it will still hold the slot, in seconds (None = unknown)."""

    def remaining_estimate_s(self) -> float | None: ...


class TrainingSlot:
    """A FIFO line of waiters; the first one holds the slot.

    ``join`` puts a waiter at the end; ``wait_turn`` blocks until it is first (or its stop event is set);
    ``leave`` removes it (holder or not) and wakes the next. All methods are thread-safe.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._line: list[Waiter] = []

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
        """Seconds until ``waiter`` gets the slot: the sum of the remaining estimates of everyone ahead of it.

        None when any of them cannot say yet (a run that has not finished its first step, or sized by epochs).
        """
        with self._cond:
            ahead = self._line[: self._line.index(waiter)] if waiter in self._line else list(self._line)
        total = 0.0
        for other in ahead:
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
