"""A chat answer's place in the process's one GPU line (core.slot.SLOT), shared with training runs.

An answer joins the same FIFO line as TrainingJobs, so a chat asked while a run trains waits for it and a Start
pressed while a chat answers queues behind the answer; both sides see their place and an estimated wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass

from core.chat_generate import SPEED
from core.slot import TrainingSlot


@dataclass(frozen=True)
class Waiting:
    """What a chat answer waiting for its turn on the GPU reports (yielded by stream_side_by_side).

    Attributes:
        place: jobs ahead of this answer in the process's line (1 = next; the one holding the GPU counts).
        wait_s: estimated seconds until its turn (core.slot's estimate), or None when not known yet.
        behind_chat: True when another chat answer holds the GPU now, False when a training run does.
    """

    place: int
    wait_s: float | None
    behind_chat: bool


class ChatTurn:
    """One chat answer in the training line (core.slot's Waiter): it holds the GPU for about two answers'
    worth of tokens at the speed measured on this machine."""

    def __init__(self, max_new_tokens: int) -> None:
        self.max_new_tokens = max_new_tokens

    def remaining_estimate_s(self) -> float | None:
        """Seconds this answer still needs at most (base + fine-tuned, each ``max_new_tokens``), from the last
        measured seconds per token; None before this process generated anything."""
        per_token = SPEED.seconds_per_token
        return None if per_token is None else 2 * self.max_new_tokens * per_token


def wait_for_turn(
    turn: ChatTurn,
    slot: TrainingSlot,
    stop: threading.Event,
    poll_s: float,
    chat_holds: Callable[[], bool],
) -> Generator[Waiting, None, bool]:
    """Join ``slot``'s line and yield Waiting about every ``poll_s`` s until ``turn`` holds the slot (returns
    True) or ``stop`` is set (leaves the line, returns False). ``chat_holds()`` says whether a chat answer (not a
    training run) holds the slot now. A caller closing the generator must ``slot.leave(turn)`` itself."""
    slot.join(turn)
    while True:
        place = slot.place(turn)
        if place == 0:
            return True
        if stop.is_set() or place is None:
            slot.leave(turn)
            return False
        yield Waiting(place, slot.wait_estimate_s(turn), behind_chat=chat_holds())
        stop.wait(poll_s)
