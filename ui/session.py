"""Which workspace and training job an event belongs to: one shared pair locally, one pair per browser on a demo.

A browser keeps a random session key in its local storage (gr.BrowserState), so a refreshed or reopened page finds
its runs again; the page's first event binds Gradio's per-page ``session_hash`` to that key, and every later event
of the page is resolved through ``request.session_hash``. The stored value is ``<key>.<tag>`` with an HMAC tag the
server computes with a key that never leaves it (core.session_token): a forged or tampered value gets a fresh
session. BrowserState's own encryption key is sent to every page in the app's config, so the app gives it a fixed,
public passphrase (PUBLIC_PASSPHRASE) and keeps its secret out of it. An API client (gradio_client, raw HTTP) that never binds
gets a workspace of its own derived from its session_hash. Nobody can name another session's folder: run folders
are checked to lie inside the caller's workspace before anything reads, lists, exports, chats with or serves them.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr

from core.errors import ConfigError
from core.job import TrainingJob
from core.session_token import sign, signing_key, verify
from core.workspace import Sessions, Workspace, new_key

STORAGE_KEY = "lora-studio-session"
# gr.BrowserState encrypts in the browser with this, so it is in every page's config (GET /config): public by
# design, fixed so a value stored before a restart still decrypts. The session is protected by the HMAC tag.
# Values stored by versions before issue 15 were encrypted with the old (served) secret: they no longer decrypt,
# the page gets a fresh session and the new value overwrites the old one under the same storage key.
PUBLIC_PASSPHRASE = "lora-studio: public passphrase; the stored session token is HMAC-signed server-side"


class SessionUI:
    """Maps Gradio requests to (Workspace, TrainingJob) through a core.workspace.Sessions registry."""

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions
        self._keys: dict[str, tuple[str, float]] = {}  # session_hash -> (key, bound at)
        self._lock = threading.Lock()
        self._signing = signing_key(sessions.root) if sessions.private else b""

    @property
    def private(self) -> bool:
        """True when each browser session has its own workspace (a shared demo)."""
        return self.sessions.private

    def browser_state(self) -> gr.BrowserState:
        """The component that keeps the session token in the browser (render inside the Blocks). Its ``secret`` is
        the public PUBLIC_PASSPHRASE: nothing secret is ever handed to it."""
        return gr.BrowserState("", storage_key=STORAGE_KEY, secret=PUBLIC_PASSPHRASE)

    def bind(self, token: str | None, request: gr.Request) -> str:
        """Page load: tie this page's session_hash to the session in the browser's token; a token that is missing,
        forged, tampered or from an older version gets a new session (never someone else's).

        Args:
            token: the value the browser kept (``<key>.<tag>``, core.session_token), "" when none.
            request: the page's request (its session_hash).

        Returns:
            The token to store back in the browser (the same one when it was valid; "" for a local install).
        """
        if not self.private:
            return token if isinstance(token, str) else ""
        key = verify(token, self._signing) or new_key()
        now = time.time()
        with self._lock:
            self._keys[request.session_hash or ""] = (str(key), now)
            if len(self._keys) > 10_000:  # forget pages bound longer ago than the sessions' time-to-live
                self._keys = {h: v for h, v in self._keys.items() if now - v[1] < self.sessions.ttl_s}
        return sign(key, self._signing)

    def key(self, request: gr.Request | None) -> str | None:
        """The session key for a request: the bound browser key, else one derived from its session_hash."""
        session_hash = getattr(request, "session_hash", None) or ""
        with self._lock:
            bound = self._keys.get(session_hash)
        if bound:
            return bound[0]
        if not session_hash:
            return None
        return "api-" + hashlib.sha256(f"lora-studio:{session_hash}".encode()).hexdigest()[:40]

    def get(self, request: gr.Request | None) -> tuple[Workspace, TrainingJob]:
        """(workspace, job) of the request's session. Raises gr.Error when a demo request carries no session."""
        try:
            return self.sessions.get(self.key(request))
        except ConfigError as exc:
            raise gr.Error(str(exc), title="No session") from None

    def workspace(self, request: gr.Request | None) -> Workspace:
        """The request's workspace."""
        return self.get(request)[0]

    def job(self, request: gr.Request | None) -> TrainingJob:
        """The request's training job."""
        return self.get(request)[1]

    def runs_dir(self, request: gr.Request | None, typed_output_dir: str) -> Path:
        """Folder whose runs this session may see: its own (demo) or the typed output_dir inside the workspace."""
        try:
            return self.workspace(request).output_dir(typed_output_dir)
        except ConfigError as exc:
            raise gr.Error(str(exc), title="Runs folder") from None

    def own_path(self, request: gr.Request | None, path: Any, field: str) -> str:
        """``path`` if it lies inside the session's workspace; gr.Error naming ``field`` otherwise."""
        try:
            return str(self.workspace(request).check_path(str(path or ""), field))
        except ConfigError as exc:
            raise gr.Error(str(exc), title="Not yours") from None
