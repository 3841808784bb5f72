"""Workspaces: where a user's uploads, runs and downloads live, and the checks that keep typed paths inside them.

Local single-user install: one workspace, the folder the app was started in (or ``$LORA_STUDIO_WORKSPACE``);
``output_dir`` is a folder name inside it. Shared demo (a Hugging Face Space, or ``--private-sessions``): each
browser session gets its own workspace under the sessions root, named by a hash of a random key the browser keeps,
and may touch nothing outside it; sessions idle for longer than the time-to-live are deleted with their files.

The sessions root defaults to ``<system temp>/lora-studio-sessions``: Gradio copies a file a handler returns into
its own cache (served under an unguessable, seeded hash) only from the temp folder, the working folder or its
``allowed_paths``, and the last would let anyone who knows a path download it directly.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from core.config import TrainingConfig
from core.datafiles import is_hub_id
from core.errors import ConfigError
from core.job import TrainingJob

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
KEY_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
DEFAULT_TTL_S = 6 * 3600.0  # a visitor's files live 6 hours after their last request (--session-ttl-hours)
ASSETS = Path(__file__).resolve().parents[1] / "assets"
LAST_SEEN = ".last-seen"
TOUCH_EVERY_S = 60.0  # activity is written at most once a minute per workspace (the time-to-live is hours)
_TOUCHED: dict[Path, float] = {}  # workspace root -> monotonic time of its last activity write


def new_key() -> str:
    """A fresh session key: 192 random bits, URL-safe (the browser keeps it; whoever holds it is that session)."""
    return secrets.token_urlsafe(24)


def valid_key(key: str | None) -> bool:
    """Whether ``key`` looks like a key from new_key() (anything else is replaced by a fresh one)."""
    return bool(key) and bool(KEY_RE.match(key or ""))


def check_name(value: str, field: str) -> str:
    """Return ``value`` if it is a safe single folder or file name; raise ConfigError naming ``field`` if not.

    Allowed: 1-64 characters of letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit (so no
    ``..``, no hidden names, no separators).
    """
    if NAME_RE.match(value or "") and ".." not in value:
        return value
    raise ConfigError(
        [
            f"{field}: {value!r} is not allowed. Use 1-64 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit (no '..', slashes or spaces)."
        ]
    )


def shown(value: str, limit: int = 120) -> str:
    """``value`` quoted for a message, cut to ``limit`` characters (user input is never echoed at length)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'"


def _is_local_path(value: str) -> bool:
    try:
        return Path(value).expanduser().exists()
    except (OSError, ValueError):  # NUL bytes, names too long
        return False


def inside(path: str | Path, root: Path) -> bool:
    """Whether ``path`` resolves (symlinks followed) to ``root`` or something under it."""
    try:
        resolved = Path(path).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    root = root.resolve()
    return resolved == root or root in resolved.parents


@dataclass(frozen=True)
class Workspace:
    """One user's folders.

    Attributes:
        root: the workspace folder; every path the user can type or pick resolves inside it.
        private: True for a shared demo's per-session workspace (output_dir is fixed, local files outside the
            workspace cannot be read); False for a local install.
        key: the session key's hash (the folder name) for a private workspace, "" for a local one.
    """

    root: Path
    private: bool = False
    key: str = ""

    @property
    def runs_dir(self) -> Path:
        """Where a private session's runs go (a local install uses its output_dir, inside root)."""
        return self.root / "runs"

    @property
    def uploads_dir(self) -> Path:
        """Kept copies of uploaded data files."""
        return self.root / "uploads"

    @property
    def downloads_dir(self) -> Path:
        """Files offered for download (validation reports, zips) in a private workspace."""
        return self.root / "downloads"

    def output_dir(self, typed: str) -> Path:
        """The runs folder for a typed ``output_dir``: fixed for a private session; for a local install a relative
        path inside root, checked.

        Raises:
            ConfigError: absolute, ``..``, odd characters, or a symlink that leads outside the workspace.
        """
        if self.private:
            return self.runs_dir
        text = (typed or "runs").strip()
        parts = Path(text).parts
        if Path(text).is_absolute() or text.startswith("~") or not parts:
            raise ConfigError(
                [
                    f"output_dir: {text!r} must be a folder name inside the workspace {self.root} (not an "
                    "absolute path). Start the app in another folder, or set LORA_STUDIO_WORKSPACE, to keep "
                    "runs elsewhere."
                ]
            )
        for part in parts:
            check_name(part, "output_dir")
        target = self.root / text
        if not inside(target, self.root):
            raise ConfigError([f"output_dir: {text!r} leads outside the workspace {self.root} (a symlink)."])
        return target

    def typed_output_dir(self, bound: str | Path | None) -> str:
        """The Runs folder box's value for a bound ``output_dir`` (an absolute folder, as config.json keeps it):
        its path relative to the workspace when inside it (what ``output_dir()`` takes back), else "runs"."""
        if bound:
            try:
                relative = Path(bound).expanduser().resolve().relative_to(self.root.resolve())
            except (ValueError, OSError):
                return "runs"
            return relative.as_posix() if relative.parts else "runs"
        return "runs"

    def check_path(self, path: str | Path, field: str) -> Path:
        """``path`` resolved, if inside this workspace; else ConfigError naming ``field``."""
        if path and inside(path, self.root):
            return Path(path).expanduser().resolve()
        where = "your session's files" if self.private else f"the workspace {self.root}"
        raise ConfigError([f"{field}: {shown(str(path))} is not in {where}; pick one from the list."])

    def check_dataset(self, dataset_name: str) -> None:
        """A private session may train on its own uploads, the packaged samples or a hub dataset id, nothing else.

        Raises:
            ConfigError: a local path outside the session's uploads and the samples.
        """
        if not self.private or not dataset_name:
            return
        if inside(dataset_name, self.uploads_dir) or inside(dataset_name, ASSETS):
            return
        if "\x00" not in dataset_name and is_hub_id(dataset_name) and not _is_local_path(dataset_name):
            return
        raise ConfigError(
            [
                f"dataset_name: {shown(dataset_name)} is not one of your uploads or the samples; upload the file."
            ]
        )

    def check_model(self, model_name_or_path: str) -> None:
        """A private session may use the presets, a hub id (not a local path) or a folder of its own.

        Raises:
            ConfigError: any other local folder (another session's export, a model kept on the server).
        """
        from core.presets import MODEL_PRESETS

        name = (model_name_or_path or "").strip()
        if not self.private or name in {p.model_name_or_path for p in MODEL_PRESETS}:
            return
        if inside(name, self.root):
            return
        hub_like = "\x00" not in name and name.count("/") == 1 and not name.startswith((".", "/", "~"))
        if hub_like and not _is_local_path(name):
            return
        raise ConfigError(
            [
                f"model_name_or_path: {shown(name)} is not a preset or a hub id; on this shared demo local "
                "folders other than your own are not readable."
            ]
        )

    def bind(self, cfg: TrainingConfig) -> TrainingConfig:
        """``cfg`` with output_dir placed in this workspace and every user path checked (all problems at once).

        Raises:
            ConfigError: output_dir / resume_from_checkpoint / dataset_name outside the workspace, or an
                accelerate_config_file in a private session.
        """
        problems: list[str] = []
        output_dir = cfg.output_dir
        try:
            output_dir = str(self.output_dir(cfg.output_dir))
        except ConfigError as exc:
            problems += exc.problems
        for check, value in (
            (self.check_dataset, cfg.dataset_name),
            (self.check_model, cfg.model_name_or_path),
        ):
            try:
                check(value)
            except ConfigError as exc:
                problems += exc.problems
        try:
            if cfg.resume_from_checkpoint:
                self.check_path(cfg.resume_from_checkpoint, "resume_from_checkpoint")
        except ConfigError as exc:
            problems += exc.problems
        if self.private and cfg.accelerate_config_file:
            # reading an arbitrary server path would tell a visitor which files exist and their YAML keys
            problems.append(
                "accelerate_config_file: not available in a shared session (several machines are set up by "
                "whoever runs the server); leave it empty."
            )
        if problems:
            raise ConfigError(problems)
        return replace(cfg, output_dir=output_dir)

    def touch(self) -> None:
        """Record activity (the cleanup keeps a session for its time-to-live after this). The folder itself is
        made by the first upload or run, so sessions that never write anything leave nothing on disk."""
        if not self.private:
            return
        now = time.monotonic()
        if now - _TOUCHED.get(self.root, -TOUCH_EVERY_S) < TOUCH_EVERY_S:  # a page polls every second
            return
        if self.root.is_dir():
            (self.root / LAST_SEEN).touch()
            _TOUCHED[self.root] = now


def local_workspace() -> Workspace:
    """The single-user workspace: ``$LORA_STUDIO_WORKSPACE`` or the current folder."""
    return Workspace(Path(os.environ.get("LORA_STUDIO_WORKSPACE") or Path.cwd()).resolve())


def sessions_root() -> Path:
    """``$LORA_STUDIO_SESSIONS_DIR`` or ``<system temp>/lora-studio-sessions`` (see the module note)."""
    default = Path(tempfile.gettempdir()) / "lora-studio-sessions"
    return Path(os.environ.get("LORA_STUDIO_SESSIONS_DIR") or default).resolve()


class Sessions:
    """Workspaces and TrainingJobs by session key; one shared pair for a local install.

    Args:
        private: per-session workspaces (a shared demo) or one local workspace.
        ttl_s: seconds a private session's files are kept after its last request (cleanup()).
        job: the local install's job (tests pass their own); private sessions get a job each.
        root: the sessions root (private) or the workspace (local); defaults as above.
    """

    def __init__(
        self,
        private: bool,
        ttl_s: float = DEFAULT_TTL_S,
        job: TrainingJob | None = None,
        root: Path | None = None,
    ) -> None:
        self.private = private
        self.ttl_s = ttl_s
        self.root = (root or (sessions_root() if private else local_workspace().root)).resolve()
        self._local = (Workspace(self.root), job or TrainingJob())
        self._jobs: dict[str, TrainingJob] = {}
        self._used: dict[str, float] = {}  # session folder name -> last request (time.time())
        self._lock = threading.Lock()
        self._last_cleanup = 0.0

    @staticmethod
    def folder_name(key: str) -> str:
        """The folder of a key: its SHA-256, 32 hex digits (the key itself never reaches the disk)."""
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def get(self, key: str | None) -> tuple[Workspace, TrainingJob]:
        """(workspace, job) for a session key (ignored for a local install). Runs cleanup at most once a minute.

        Raises:
            ConfigError: a private install asked without a valid key.
        """
        if not self.private:
            return self._local
        if not valid_key(key):
            raise ConfigError(["session: this page has no session key; reload the page."])
        if time.monotonic() - self._last_cleanup > 60:
            self.cleanup()
        name = self.folder_name(str(key))
        ws = Workspace(self.root / name, private=True, key=name)
        ws.touch()
        with self._lock:
            job = self._jobs.setdefault(name, TrainingJob())
            self._used[name] = time.time()
        return ws, job

    def cleanup(self, now: float | None = None) -> list[str]:
        """Delete private session folders idle for more than ttl_s (a session with a job in line or training is
        kept). Returns the deleted folder names. A local install deletes nothing."""
        self._last_cleanup = time.monotonic()
        if not self.private or not self.root.is_dir():
            return []
        now = time.time() if now is None else now
        removed = []
        for folder in self.root.iterdir():
            if not folder.is_dir() or folder.is_symlink():
                continue
            with self._lock:
                job = self._jobs.get(folder.name)
                if job is not None and job.snapshot().is_active:
                    continue
                seen = folder / LAST_SEEN
                last = seen.stat().st_mtime if seen.exists() else folder.stat().st_mtime
                if now - last <= self.ttl_s:
                    continue
                self._jobs.pop(folder.name, None)
                self._used.pop(folder.name, None)
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
        with self._lock:  # idle jobs of sessions that never wrote a file (API calls without a session)
            for name in [n for n, j in self._jobs.items() if not j.snapshot().is_active]:
                if not (self.root / name).exists() and now - self._used.get(name, now) > self.ttl_s:
                    del self._jobs[name]
                    self._used.pop(name, None)
        return removed
