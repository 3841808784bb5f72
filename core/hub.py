"""Push a verified export folder to the Hugging Face Hub with a token that is never logged, shown or saved.

The token travels only in the HTTP Authorization header that huggingface_hub sends; every message this module
raises or logs passes through ``redact``, and a logging filter masks it in any library log line during the push.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from core.errors import ExportError

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
# Hugging Face user access tokens start with hf_; anything that looks like one is masked even if it is not ours.
TOKEN_LIKE = re.compile(r"hf_[A-Za-z0-9]{8,}")


def redact(text: str, *secrets: str) -> str:
    """``text`` with every given secret (and anything shaped like a Hugging Face token) replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return TOKEN_LIKE.sub("***", text)


class _RedactFilter(logging.Filter):
    def __init__(self, secret: str):
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.secret)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def push_export(
    folder: str | Path,
    repo_id: str,
    token: str,
    private: bool = True,
    endpoint: str | None = None,
) -> str:
    """Create (or reuse) the model repo ``repo_id`` and upload a verified export folder to it.

    Args:
        folder: an export folder written by core.export (it holds verification.json).
        repo_id: "user/name" or "org/name".
        token: a Hugging Face token with write access; used for this call only, never stored or logged.
        private: create the repo as private (the default; no effect on an existing repo).
        endpoint: the hub URL (default huggingface.co; tests pass a local stand-in server).

    Returns:
        The repo URL.

    Raises:
        ExportError: bad repo id, missing token, an unverified folder, or the hub's refusal (token redacted).
    """
    from huggingface_hub import HfApi

    path = Path(folder)
    problems = []
    if not REPO_ID.match(repo_id or ""):
        problems.append(f"repo id {repo_id!r} must look like user/name (letters, digits, - _ .)")
    if not (token or "").strip():
        problems.append(
            "a Hugging Face token with write access is needed (https://huggingface.co/settings/tokens)"
        )
    verified = path / "verification.json"
    if not verified.is_file():
        problems.append(f"{path} is not a verified export (no verification.json); export first")
    else:
        checks = json.loads(verified.read_text(encoding="utf-8")).get("checks", [])
        if not checks or not all(c.get("passed") for c in checks):
            problems.append(f"{path} did not pass its verification; it is not pushed")
    if problems:
        raise ExportError("Cannot push: " + "; ".join(problems) + ".")
    token = token.strip()
    guard = _RedactFilter(token)
    loggers = [logging.getLogger(), logging.getLogger("huggingface_hub"), logging.getLogger("core")]
    for lg in loggers:
        lg.addFilter(guard)
    try:
        api = HfApi(endpoint=endpoint, token=token)
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(
            folder_path=str(path),
            repo_id=repo_id,
            repo_type="model",
            commit_message="Upload from LoRA Studio",
        )
    except Exception as exc:
        raise ExportError(redact(f"Push to {repo_id} failed: {type(exc).__name__}: {exc}", token)) from None
    finally:
        for lg in loggers:
            lg.removeFilter(guard)
    return str(url)
