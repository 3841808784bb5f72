"""The Hugging Face Hub: what to say when it cannot be reached, and pushing a verified export folder to it with a
token that is never logged, shown or saved.

The token travels only in the HTTP Authorization header that huggingface_hub sends; every message this module
raises or logs passes through ``redact``, and a logging filter masks it in any library log line during the push.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from core.errors import ExportError

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
# Hugging Face user access tokens start with hf_; anything that looks like one is masked even if it is not ours.
TOKEN_LIKE = re.compile(r"hf_[A-Za-z0-9]{8,}")


# Exception class names (anywhere in the raised exception's chain) and message fragments that mean the hub could not
# be reached at all, as opposed to a missing, gated or broken repository.
NETWORK_ERROR_NAMES = frozenset(
    {
        "LocalEntryNotFoundError",
        "OfflineModeIsEnabled",
        "ConnectionError",
        "ConnectError",
        "ConnectTimeout",
        "TimeoutError",
        "TimeoutException",
        "ReadTimeout",
        "TransportError",
        "NetworkError",
        "gaierror",
    }
)
NETWORK_ERROR_TEXT = (
    "couldn't connect to",
    "couldn't reach",
    "name or service not known",
    "temporary failure in name resolution",
    "nodename nor servname",
    "network is unreachable",
    "connection refused",
    "timed out",
    "outgoing traffic has been disabled",
    "check your internet connection",
)
# ui/zh_data.py translates these templates, paragraph by paragraph: keep the two in step.
MODEL_UNREACHABLE = (
    "The Hugging Face Hub is not reachable ({reason}), so {name} cannot be fetched. Offline, only local model "
    "folders (written by save_pretrained) and the embedded default model ({default}) work for training; the "
    "{count} catalogue models (e.g. {examples}) work for the GPU memory estimate and plan."
)
NOT_CATALOGUED = "{name} is not in the offline catalogue either."
CONNECT_MODEL = "Connect and try again, or pick a local folder."
DATASET_UNREACHABLE = (
    "The Hugging Face Hub is not reachable ({reason}), so the hub dataset {name} cannot be fetched. Offline, only "
    "local data files and the samples work: connect and try again, or upload the file."
)
EXAMPLE_IDS = (
    "HuggingFaceTB/SmolLM2-360M-Instruct",
    "Qwen/Qwen2.5-7B-Instruct",
    "meta-llama/Llama-3.1-8B-Instruct",
)
REASON_OFFLINE = "offline: HF_HUB_OFFLINE=1"
REASON_DNS = "the host name does not resolve: no network or no DNS"
REASON_TIMEOUT = "the connection timed out"
REASON_NO_CONNECTION = "no connection"


def hub_offline() -> bool:
    """Whether huggingface_hub is told to stay offline (``HF_HUB_OFFLINE`` set to 1 / true / yes / on)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def unreachable_reason(exc: BaseException | None = None) -> str | None:
    """Why the hub could not be reached, in a few words, or None when ``exc`` is another kind of failure.

    Args:
        exc: the exception a hub call raised (its ``__cause__`` / ``__context__`` chain is searched too); None to
            ask about HF_HUB_OFFLINE only.

    Returns:
        REASON_OFFLINE when HF_HUB_OFFLINE is set; else, for a network failure in ``exc``, REASON_DNS,
        REASON_TIMEOUT or REASON_NO_CONNECTION; else None (a missing or gated repository, a bad config...).
    """
    if hub_offline():
        return REASON_OFFLINE
    seen: set[int] = set()
    texts: list[str] = []
    network = False
    current = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).lower()
        texts.append(text)
        if any(cls.__name__ in NETWORK_ERROR_NAMES for cls in type(current).__mro__):
            network = True
        if any(fragment in text for fragment in NETWORK_ERROR_TEXT):
            network = True
        current = current.__cause__ or current.__context__
    if not network:
        return None
    joined = " ".join(texts)
    if any(s in joined for s in ("name or service not known", "name resolution", "nodename nor servname")):
        return REASON_DNS
    if "timed out" in joined or "timeout" in joined:
        return REASON_TIMEOUT
    return REASON_NO_CONNECTION


def technical_cause(exc: BaseException) -> str:
    """``Cause: <type>: <message>`` of ``exc`` on one paragraph (kept below a readable message), tokens redacted."""
    text = " ".join(str(exc).split())
    return redact(f"Cause: {type(exc).__name__}: {text}" if text else f"Cause: {type(exc).__name__}")


def model_unreachable_message(name: str, reason: str, exc: BaseException | None = None) -> str:
    """The message for a model hub id that cannot be fetched because the hub is unreachable: that first, then
    what works offline, then (a paragraph below) the technical cause.

    Args:
        name: the hub id asked for.
        reason: ``unreachable_reason``'s words.
        exc: the failure, shown below as its cause (None: no cause paragraph).
    """
    from core.catalogue import catalogue_entries, catalogue_entry
    from core.config import DEFAULT_MODEL

    entries = catalogue_entries()
    examples = [e.hub_id for e in entries if e.hub_id in EXAMPLE_IDS]
    parts = [
        MODEL_UNREACHABLE.format(
            reason=reason, name=name, default=DEFAULT_MODEL, count=len(entries), examples=", ".join(examples)
        )
    ]
    if catalogue_entry(name) is None:
        parts.append(NOT_CATALOGUED.format(name=name))
    parts.append(CONNECT_MODEL)
    text = " ".join(parts)
    return text if exc is None else f"{text}\n\n{technical_cause(exc)}"


def dataset_unreachable_message(name: str, reason: str, exc: BaseException | None = None) -> str:
    """As ``model_unreachable_message``, for a hub dataset id."""
    text = DATASET_UNREACHABLE.format(reason=reason, name=name)
    return text if exc is None else f"{text}\n\n{technical_cause(exc)}"


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
