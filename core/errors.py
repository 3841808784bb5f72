"""Typed errors raised by the engine; the UI and CLI show their messages verbatim."""

from __future__ import annotations


class StudioError(Exception):
    """Base class of every error the engine raises on purpose."""


class ConfigError(StudioError, ValueError):
    """A TrainingConfig (or CLI/UI input) has one or more problems.

    Attributes:
        problems: every problem found, one human-readable line each (all are collected before raising).
    """

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("Invalid configuration:\n" + "\n".join(f"  - {p}" for p in self.problems))


class DataError(StudioError, ValueError):
    """A dataset cannot be used; the message names the file, row (1-based) or field and what to do."""


class ModelError(StudioError):
    """A model cannot be found, converted or loaded; the message says what was tried."""


class JobBusyError(StudioError):
    """A training job is already running; only one runs at a time per process."""


class ExportError(StudioError):
    """An export failed or did not verify; the message gives the measured numbers."""


class TrainingFailed(StudioError):
    """A run ended without a usable adapter (diverged, stuck at zero loss, unmoved LoRA B); nothing was saved."""


class WorkerEnded(StudioError):
    """The training process was ended from outside the training (killed by a signal, out of GPU memory, the disk
    filled): the run failed, but the checkpoints it saved before are sound, so export and resume accept them
    (result.json records ``"resumable": true``)."""


class DiskFullError(StudioError):
    """The disk (or the user's quota) holding an output is full; the message gives MB free and needed, the folder,
    and what to do (``core.disk.disk_full_message``)."""
