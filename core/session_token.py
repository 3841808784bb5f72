"""The session token a browser keeps: its session key plus an HMAC the server computes with a key that never leaves
the server, so the server accepts only keys it handed out.

Why not gr.BrowserState's ``secret``: Gradio encrypts the stored value *in the browser*, so the secret is part of the
component's config and every page (``GET /config``) receives it. Whatever is passed there is public; the app passes a
fixed, public passphrase (ui.session) and relies on this module instead: a value that is not ``<key>.<tag>`` with the
right tag (forged, tampered, or stored by an older version) gets a fresh session, never someone else's.

Token: ``<key>.<tag>``, ``key`` from core.workspace.new_key (URL-safe), ``tag`` = base64url(HMAC-SHA256(signing key,
"lora-studio-session-v2:" + key)) without padding (43 characters; RFC 2104 HMAC, FIPS 180-4 SHA-256).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

SIGNING_KEY_FILE = ".session-signing-key"
SIGNING_KEY_ENV = "LORA_STUDIO_SIGNING_KEY"
_CONTEXT = b"lora-studio-session-v2:"


def signing_key(root: Path) -> bytes:
    """The server-side HMAC key for session tokens, stable across restarts (so a restart keeps every visitor's
    session).

    ``$LORA_STUDIO_SIGNING_KEY`` when set (several app processes sharing one sessions folder), else 32 random bytes
    saved once in ``root/.session-signing-key`` (mode 0600, written through a temporary file and a hard link, so two
    processes starting at once agree on one key). Never derived from the old ``.browser-secret`` /
    ``$LORA_STUDIO_SECRET``: earlier versions sent that one to every page.

    Args:
        root: the sessions root folder (created if missing).

    Returns:
        The key's bytes (never shown, logged or sent).

    Raises:
        OSError: the folder or the key file cannot be written or read.
    """
    if os.environ.get(SIGNING_KEY_ENV):
        return os.environ[SIGNING_KEY_ENV].encode()
    path = root / SIGNING_KEY_FILE
    root.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f"{SIGNING_KEY_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
        try:
            os.link(tmp, path)  # never replaces a key another process wrote first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()


def _tag(key: str, secret: bytes) -> str:
    mac = hmac.new(secret, _CONTEXT + key.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def sign(key: str, secret: bytes) -> str:
    """The token ``<key>.<tag>`` the browser keeps for session ``key`` (see the module note)."""
    return f"{key}.{_tag(key, secret)}"


def verify(token: object, secret: bytes) -> str | None:
    """The session key inside ``token`` when its tag is right, else None (forged, tampered, empty, not a string,
    or a bare key as older versions stored). Compared in constant time (hmac.compare_digest)."""
    from core.workspace import valid_key

    if not isinstance(token, str) or len(token) > 256:
        return None
    key, dot, tag = token.rpartition(".")
    if not dot or not valid_key(key):
        return None
    return key if hmac.compare_digest(tag.encode(), _tag(key, secret).encode()) else None
