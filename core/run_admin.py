"""Run management for the Runs tab: a display title and a note per run, the exports a run holds, and deletion.

A run keeps its folder name for life: config.json, result.json, the model cards of its exports, the process
records and every "Resume from" a user pasted name the folder, so renaming it would break them. The name a
person gives a run is a *title* in ``RUN_DIR/run_meta.json`` ({"title", "note", "updated_at"}), written
atomically (core.atomic.write_json_atomic).

Deleting a run is refused while anything uses it (its training is queued or running, in this app or another
process, an export of it is being written, Chat is loading or answering with it, or the live run resumes from it).
Users in this process register with ``in_use(run_dir, what)`` (core.export, core.chat); deletion checks that
registry and renames the folder under the same lock, so nothing can start using a run between the check and the
rename. A run folder must be a direct,
non-symlinked child of the session's runs folder. The folder is first renamed to a hidden
``.deleting-<name>-<pid>-<random>`` name in the same folder (one atomic rename: list_runs skips hidden names, so
a half-deleted run is never listed as a run), then removed; leftovers of a deleting process that died are
removed by remove_stale_deletions.

Errors are RunAdminError, carrying an English template and its values, so the UI can show them in the page's
language (``tr(exc.template).format(**exc.values)``) and the CLI verbatim (``str(exc)``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.atomic import write_json_atomic
from core.errors import StudioError
from core.run_exports import RunExport, folder_bytes, list_exports  # noqa: F401  (the Runs tab's imports)

META_FILE = "run_meta.json"
TITLE_MAX_CHARS = 80
NOTE_MAX_CHARS = 2000
DELETING_PREFIX = ".deleting-"
RECENT_WRITE_S = 120.0  # as core.runs: a run without a process record whose log changed this recently trains
_STAGING = re.compile(r"^\..+\.(?:partial|zip-partial)-(\d+)(?:-.*)?$")  # core.runs.staging_dir / zip_export
_DELETING = re.compile(r"^\.deleting-.+-(\d+)-[0-9a-f]{8}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

BEING_EXPORTED = "being exported"
OPEN_IN_CHAT = "open in Chat"
_users_lock = threading.RLock()  # guards _users; delete_run holds it from its check to its rename
_users: dict[
    Path, list[str]
] = {}  # resolved run folder -> what uses it now in this process (one entry a use)


class RunAdminError(StudioError):
    """A run cannot be renamed, annotated or deleted; the message names the run and what to do.

    Attributes:
        template: the English message with ``{placeholders}`` (a key for the UI's translation table).
        values: the values to format it with.
    """

    def __init__(self, template: str, **values: Any) -> None:
        self.template = template
        self.values = values
        super().__init__(template.format(**values))


@dataclass(frozen=True)
class RunMeta:
    """What a person wrote about a run: ``title`` (one line, <= TITLE_MAX_CHARS) and ``note`` (free text,
    <= NOTE_MAX_CHARS); "" when not set."""

    title: str = ""
    note: str = ""


def read_meta(run_dir: str | Path) -> tuple[RunMeta, str | None]:
    """(meta, None) from ``run_dir/run_meta.json``; (RunMeta(), None) when there is none; (RunMeta(), reason)
    when it cannot be read (never raises: a broken note must not hide the run)."""
    path = Path(run_dir) / META_FILE
    if not path.is_file():
        return RunMeta(), None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return RunMeta(), f"{META_FILE}: {exc}"
    if not isinstance(data, dict):
        return RunMeta(), f"{META_FILE}: not a JSON object"
    title, note = data.get("title", ""), data.get("note", "")
    return RunMeta(title if isinstance(title, str) else "", note if isinstance(note, str) else ""), None


def clean_title(title: str | None) -> str:
    """``title`` stripped, spaces collapsed; "" for None.

    Raises:
        RunAdminError: longer than TITLE_MAX_CHARS, or holding a line break or another control character.
    """
    text = (title or "").strip()
    if _CONTROL.search(text):
        raise RunAdminError("The title must be one line without control characters; remove the line break.")
    text = " ".join(text.split())
    if len(text) > TITLE_MAX_CHARS:
        raise RunAdminError(
            "The title has {n} characters; at most {limit} are allowed. Shorten it (the note can be longer).",
            n=len(text),
            limit=TITLE_MAX_CHARS,
        )
    return text


def clean_note(note: str | None) -> str:
    """``note`` with surrounding whitespace stripped and line ends as \\n; "" for None.

    Raises:
        RunAdminError: longer than NOTE_MAX_CHARS, or holding a control character other than tab and newline.
    """
    text = (note or "").replace("\r\n", "\n").replace("\r", "\n").strip()
    if _CONTROL.search(text.replace("\n", "").replace("\t", "")):
        raise RunAdminError("The note holds a control character; remove it (line breaks and tabs are fine).")
    if len(text) > NOTE_MAX_CHARS:
        raise RunAdminError(
            "The note has {n} characters; at most {limit} are allowed. Shorten it.",
            n=len(text),
            limit=NOTE_MAX_CHARS,
        )
    return text


def resolve_run(runs_dir: str | Path, folder: str | Path | None) -> Path:
    """The run folder ``folder`` (a path or a bare name) if it is a real run directly inside ``runs_dir``.

    Args:
        runs_dir: the session's runs folder (already checked to lie in its workspace).
        folder: the run folder's path as the Runs table shows it, or its name.

    Returns:
        The absolute run folder, ``runs_dir.resolve() / name``.

    Raises:
        RunAdminError: nothing given; not directly inside ``runs_dir`` (another folder, ``..``, a crafted name);
            a symlink; a hidden name (staging or deleting folders); missing, or not a run folder (no config.json,
            result.json or metrics.jsonl and not named run-*).
    """
    from core.runs import RUN_FILES

    if not folder or not str(folder).strip():
        raise RunAdminError("Pick a run in the table first.")
    base = Path(runs_dir).expanduser().resolve()
    given = Path(str(folder)).expanduser()
    name = given.name
    candidate = base / name
    if given.is_absolute() or len(given.parts) > 1:
        # the folder that holds it must be the runs folder itself (links above it followed: /tmp -> /private/tmp);
        # the run itself must not be a link (checked below), so nothing outside the runs folder is ever touched
        parent = Path(os.path.normpath(given if given.is_absolute() else base / given)).parent
        if parent.resolve() != base:
            raise RunAdminError(
                "{folder} is not a run of the runs folder {base}; pick a run from the table.",
                folder=str(folder)[:200],
                base=str(base),
            )
    if not name or name in (".", "..") or name.startswith("."):
        raise RunAdminError("{name!r} is not a run folder name; pick a run from the table.", name=name[:200])
    if candidate.is_symlink():
        raise RunAdminError(
            "{folder} is a symbolic link, not a run folder; LoRA Studio never deletes through a link. "
            "Remove the link yourself if you want it gone.",
            folder=str(candidate),
        )
    if not candidate.is_dir():
        raise RunAdminError(
            "{folder} does not exist (any more); press Refresh to update the list.", folder=str(candidate)
        )
    if not (name.startswith("run-") or any((candidate / f).exists() for f in RUN_FILES)):
        raise RunAdminError(
            "{folder} is not a run folder (no config.json, result.json or metrics.jsonl); nothing was changed.",
            folder=str(candidate),
        )
    return candidate


def save_meta(runs_dir: str | Path, folder: str | Path, title: str | None, note: str | None) -> RunMeta:
    """Store ``title`` and ``note`` for the run ``folder`` in its run_meta.json (atomically; the folder is not
    renamed). Allowed while the run trains: the training never reads this file.

    Returns:
        The stored RunMeta (cleaned: see clean_title, clean_note).

    Raises:
        RunAdminError: see resolve_run, clean_title, clean_note; or the file cannot be written (reason given).
    """
    run = resolve_run(runs_dir, folder)
    meta = RunMeta(clean_title(title), clean_note(note))
    try:
        write_json_atomic(
            run / META_FILE, {"title": meta.title, "note": meta.note, "updated_at": time.time()}
        )
    except OSError as exc:
        raise RunAdminError(
            "Could not save the title and note of {name}: {reason}.",
            name=run.name,
            reason=exc.strerror or exc,
        ) from None
    return meta


def _key(run_dir: str | Path) -> Path:
    return Path(run_dir).expanduser().resolve()


@contextmanager
def in_use(run_dir: str | Path, what: str) -> Iterator[None]:
    """Mark ``run_dir`` as used by ``what`` (BEING_EXPORTED, OPEN_IN_CHAT) in this process for the block: deleting
    it is refused meanwhile (busy_reason names ``what``). Thread-safe; uses may nest and overlap."""
    key = _key(run_dir)
    with _users_lock:
        _users.setdefault(key, []).append(what)
    try:
        yield
    finally:
        with _users_lock:
            users = _users.get(key, [])
            if what in users:
                users.remove(what)
            if not users:
                _users.pop(key, None)


def users_of(run_dir: str | Path) -> list[str]:
    """What uses ``run_dir`` in this process now (see in_use), oldest first; [] when nothing does."""
    with _users_lock:
        return list(_users.get(_key(run_dir), []))


def _pid_alive(pid: int) -> bool:
    import psutil

    return psutil.pid_exists(pid)


def _recently_written(run: Path) -> bool:
    for name in ("train.log", "metrics.jsonl"):
        try:
            if time.time() - (run / name).stat().st_mtime < RECENT_WRITE_S:
                return True
        except OSError:
            continue
    return False


def busy_reason(
    run: Path, active_run_dir: str | Path | None = None, active_status: str = ""
) -> RunAdminError | None:
    """Why ``run`` cannot be deleted now, or None when nothing uses it.

    In use: it is the live job's folder while that job is active (queued, loading, training, stopping, saving);
    it has no result.json and a process recorded in its process.json is alive (core.liveness: another app or a
    CLI run), or, without a record, its log changed in the last RECENT_WRITE_S seconds; this process exports it
    or Chat loads or answers with it (in_use); an export of it is being written (a staging folder of a live
    process inside it); or the live job resumes from it.
    """
    from core.events import ACTIVE
    from core.liveness import recorded_alive

    users = users_of(run)
    if users:
        return RunAdminError(
            "{name} is {what} right now; wait until that finishes, then delete it.",
            name=run.name,
            what=users[0],
        )
    active = Path(active_run_dir).expanduser().resolve() if active_run_dir else None
    live = active is not None and (active_status in ACTIVE or not active_status)
    if live and active == run:
        return RunAdminError(
            "{name} is {status}; stop it in the Train tab (or wait until it ends), then delete it.",
            name=run.name,
            status=active_status or "training",
        )
    if not (run / "result.json").exists():
        alive = recorded_alive(run)
        if alive is None:
            alive = _recently_written(run)
        if alive:
            return RunAdminError(
                "{name} is still queued or training in another process (its recorded process is alive); "
                "stop it there first, then delete it.",
                name=run.name,
            )
    try:
        entries = list(run.iterdir())
    except OSError:
        entries = []
    for entry in entries:
        match = _STAGING.match(entry.name)
        if match and _pid_alive(int(match.group(1))):
            return RunAdminError(
                "An export of {name} is being written right now; wait until it finishes, then delete the run.",
                name=run.name,
            )
    if live and active is not None:
        try:
            cfg = json.loads((active / "config.json").read_text(encoding="utf-8"))
            source = cfg.get("resume_from_checkpoint") if isinstance(cfg, dict) else None
        except (OSError, ValueError):
            source = None
        if isinstance(source, str) and source:
            resolved = Path(source).expanduser().resolve()
            if resolved == run or run in resolved.parents:
                return RunAdminError(
                    "The run now training ({active}) resumes from {name}; delete {name} after that run has ended.",
                    active=active.name,
                    name=run.name,
                )
    return None


@dataclass(frozen=True)
class Deleted:
    """A deleted run: its folder ``name``, the bytes freed and the number of exports that went with it."""

    name: str
    size_bytes: int
    exports: int


def delete_run(
    runs_dir: str | Path,
    folder: str | Path | None,
    active_run_dir: str | Path | None = None,
    active_status: str = "",
) -> Deleted:
    """Delete the run ``folder`` of ``runs_dir`` with everything in it (checkpoints, adapter, exports, zips).

    The folder is renamed to a hidden ``.deleting-*`` name first (atomic; the runs list no longer shows it),
    then removed with shutil.rmtree (which never follows symlinks inside it).

    Args:
        runs_dir: the session's runs folder.
        folder: the run's path or name (see resolve_run).
        active_run_dir / active_status: the live job's folder and JobSnapshot.status (see busy_reason).

    Returns:
        Deleted with the name, bytes freed and exports removed.

    Raises:
        RunAdminError: see resolve_run and busy_reason; or the rename failed (nothing was deleted), or the removal
            stopped part way (the hidden leftover is named; it is never listed as a run).
    """
    run = resolve_run(runs_dir, folder)
    with _users_lock:  # no export or chat can start using the run between this check and the rename
        reason = busy_reason(run, active_run_dir, active_status)
        if reason is not None:
            raise reason
        size, exports = folder_bytes(run), len(list_exports(run))
        doomed = run.with_name(f"{DELETING_PREFIX}{run.name}-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            os.rename(run, doomed)
        except OSError as exc:
            raise RunAdminError(
                "Could not delete {name}: {reason}. Nothing was deleted.",
                name=run.name,
                reason=exc.strerror or exc,
            ) from None
    errors: list[str] = []
    shutil.rmtree(doomed, onerror=lambda _f, path, exc: errors.append(f"{path}: {exc[1]}"))
    if doomed.exists():
        raise RunAdminError(
            "{name} is no longer listed, but some of its files could not be removed ({reason}); they are in "
            "{leftover}. Remove that folder yourself.",
            name=run.name,
            reason=errors[0] if errors else "unknown",
            leftover=str(doomed),
        )
    return Deleted(run.name, size, exports)


def remove_stale_deletions(runs_dir: str | Path) -> list[str]:
    """Finish the deletions that a process which has since died left behind in ``runs_dir`` (``.deleting-*``
    folders whose pid is gone); returns their names. A live process's are left to it."""
    removed: list[str] = []
    try:
        entries = list(Path(runs_dir).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _DELETING.match(entry.name)
        if match is None or _pid_alive(int(match.group(1))) or entry.is_symlink() or not entry.is_dir():
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry.name)
    return removed
