"""Free disk space: measure it, refuse a write that clearly will not fit, and recognise a full disk in any error.

Shared by export (``core/export.py``) and training (``core/job.py``, ``core/runs.py``): every "disk full" the user
sees has one wording, ``disk full: N MB free on <dir>, M MB needed. Free space or choose another output folder.``

MB here is 1,000,000 bytes (as ``df -H`` and file managers count); free space is rounded down and the need rounded
up, so the figures never make a refusal look unnecessary.
"""

from __future__ import annotations

import errno
import math
import shutil
from pathlib import Path

from core.errors import DiskFullError

MB = 1_000_000
"""Bytes per MB in every message of this module."""

_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
_FULL_TEXT = "no space left on device"
_QUOTA_TEXT = "disk quota exceeded"


def existing_parent(path: str | Path) -> Path:
    """The nearest existing folder at or above ``path`` (``path`` itself when it is an existing folder).

    Args:
        path: a file or folder that may not exist yet (an export's ``.partial`` folder, a run folder).

    Returns:
        An existing directory; ``Path("/")`` at worst for an absolute path, the working directory for a relative one.
    """
    p = Path(path).expanduser().absolute()
    while not p.is_dir():
        if p.parent == p:
            break
        p = p.parent
    return p


def free_bytes(path: str | Path) -> int:
    """Bytes free to this user on the filesystem that holds ``path``.

    Args:
        path: a file or folder; need not exist (its nearest existing parent is measured).

    Returns:
        ``shutil.disk_usage(...).free`` in bytes (what ``df`` shows as available: root's reserved blocks excluded).

    Raises:
        OSError: the filesystem cannot be queried (permission denied on every parent).
    """
    return int(shutil.disk_usage(existing_parent(path)).free)


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) says the disk or the user's quota is full.

    Recognised: an ``OSError`` with errno ENOSPC or EDQUOT; a ``shutil.Error`` (``copytree``) whose list of
    ``(src, dst, reason)`` holds such a reason; any error whose text contains "No space left on device" or
    "Disk quota exceeded" (safetensors' Rust writer and torch raise plain ``RuntimeError``/``SafetensorError``
    with the OS text); and any of these as the ``__cause__`` or ``__context__`` of ``exc``.

    Args:
        exc: the exception caught (None gives False).

    Returns:
        True when the failure is a full disk or quota, False otherwise.
    """
    seen: set[int] = set()
    stack: list[BaseException] = [exc] if exc is not None else []
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, DiskFullError):
            return True
        if isinstance(e, shutil.Error):
            for item in e.args[0] if e.args and isinstance(e.args[0], list) else []:
                reason = item[-1] if isinstance(item, tuple) and item else item
                if isinstance(reason, BaseException):
                    stack.append(reason)
                elif _FULL_TEXT in str(reason).lower() or _QUOTA_TEXT in str(reason).lower():
                    return True
        elif isinstance(e, OSError) and e.errno in _FULL_ERRNOS:
            return True
        text = str(e).lower()
        if _FULL_TEXT in text or _QUOTA_TEXT in text:
            return True
        for nxt in (e.__cause__, e.__context__):
            if nxt is not None:
                stack.append(nxt)
    return False


def _mb(n_bytes: int, *, up: bool) -> str:
    """``n_bytes`` in MB: one decimal under 10 MB, else a whole number with thousands separators."""
    x = n_bytes / MB
    if x < 10:
        x = math.ceil(x * 10) / 10 if up else math.floor(x * 10) / 10
        return f"{x:.1f}"
    return f"{math.ceil(x) if up else math.floor(x):,}"


def disk_full_message(path: str | Path, needed_bytes: int | None = None) -> str:
    """The one wording of a full disk, measured now.

    Args:
        path: the file or folder being written (its nearest existing parent is named and measured).
        needed_bytes: bytes the write needs in all, when known; omitted from the message when None.

    Returns:
        ``"disk full: N MB free on <dir>, M MB needed. Free space or choose another output folder."`` (without
        ", M MB needed" when ``needed_bytes`` is None). When the free space cannot be measured it says so instead
        of a number.
    """
    where = existing_parent(path)
    try:
        free = f"{_mb(free_bytes(where), up=False)} MB free"
    except OSError:
        free = "free space unknown"
    need = f", {_mb(needed_bytes, up=True)} MB needed" if needed_bytes is not None else ""
    return f"disk full: {free} on {where}{need}. Free space or choose another output folder."


def check_free_space(path: str | Path, needed_bytes: int, what: str) -> None:
    """Refuse, before writing anything, a write that cannot fit.

    Args:
        path: where ``what`` will be written (may not exist yet).
        needed_bytes: bytes the write needs in all (an estimate: callers add their own margin).
        what: the thing being written, for the message ("merged weights", "checkpoint").

    Raises:
        DiskFullError: ``free_bytes(path) < needed_bytes``; the message is ``"<what>: " +``
            :func:`disk_full_message`. A filesystem that cannot be measured is not refused (the write itself
            will tell).
    """
    try:
        free = free_bytes(path)
    except OSError:
        return
    if free < needed_bytes:
        raise DiskFullError(f"{what}: {disk_full_message(path, needed_bytes)}")
