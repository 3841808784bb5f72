"""Messages of the Model, Data and GPU memory tabs: an empty dataset name, an unreachable hub, a failed model load,
and the tabs' run-time text in both languages (real files, the real embedded model, real Gradio handlers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import TrainingConfig
from core.datafiles import NO_DATASET, read_records
from core.errors import DataError, ModelError
from core.validation import count_usable_rows, validate_config

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
MADE_UP = "nobody-here-xyz/made-up-model-4711"


# ---- 1. no dataset chosen -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "   ", "\t\n"])
def test_an_empty_dataset_name_says_none_was_chosen_everywhere(name, embedded_path):
    cfg = TrainingConfig(dataset_name=name)
    for attempt in (
        lambda: count_usable_rows(cfg, stop_after=1),  # Start
        lambda: validate_config(cfg),  # Validate data and the CLI's validate (before the tokenizer loads)
        lambda: read_records(name),  # training reads the whole list
    ):
        with pytest.raises(DataError) as err:
            attempt()
        assert str(err.value) == NO_DATASET
        assert "folder" not in str(err.value) and "not found" not in str(err.value)


def test_the_cli_validate_of_a_config_without_data_says_none_was_chosen(tmp_path):
    config = tmp_path / "config.json"
    config.write_text('{"dataset_name": "  ", "max_length": 128}', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), "validate", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode != 0
    assert NO_DATASET in done.stdout + done.stderr
    assert "is a folder" not in done.stdout + done.stderr


def test_the_data_tab_validate_without_a_dataset_says_none_was_chosen(tmp_path):
    from core.workspace import Workspace
    from ui.tabs import data_tab

    ws = Workspace(tmp_path)
    out = data_tab.validate({"dataset_name": "   ", "model_name_or_path": "x"}, ws)
    assert NO_DATASET in out[0]


# ---- 2. the hub cannot be reached ---------------------------------------------------------------------------------


def test_a_made_up_hub_model_offline_says_the_hub_is_unreachable_first(monkeypatch):
    from core.model import inspect_model, resolve_model_path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for attempt in (inspect_model, resolve_model_path):
        with pytest.raises(ModelError) as err:
            attempt(MADE_UP)
        message = str(err.value)
        assert message.startswith("The Hugging Face Hub is not reachable (offline: HF_HUB_OFFLINE=1)"), (
            message
        )
        assert "only local model folders" in message and "embedded default model" in message
        assert "cannot build a causal LM" not in message
        first, cause = message.split("\n\n", 1)  # the technical cause stays, below
        assert MADE_UP in first and cause.startswith("Cause: ")


def test_a_hub_that_accepts_connections_but_answers_nothing_is_named_not_a_config_error(monkeypatch):
    """The user's case: the TCP probe passed, the HTTP fetch failed, and the message was "cannot build a causal LM
    from its config". A real fetch against a closed local port stands in for the unreachable hub."""
    import core.model
    from core.model import inspect_model

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: connection refused
    monkeypatch.setattr(core.model, "_hub_reachable", lambda timeout_s=3.0: True)
    with pytest.raises(ModelError) as err:
        inspect_model(MADE_UP)
    message = str(err.value)
    assert message.startswith("The Hugging Face Hub is not reachable ("), message
    assert "cannot build a causal LM" not in message.split("\n\n")[0]
    assert "\n\nCause: " in message


def test_a_made_up_hub_dataset_offline_says_the_hub_is_unreachable_first(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as err:
        read_records("nobody-here-xyz/made-up-data-4711")
    message = str(err.value)
    assert message.startswith("The Hugging Face Hub is not reachable (offline: HF_HUB_OFFLINE=1)"), message
    assert "only local data files and the samples work" in message
    assert "\n\nCause: ConnectionError" in message


def test_only_network_failures_are_called_unreachable(monkeypatch):
    from core.hub import REASON_DNS, REASON_OFFLINE, unreachable_reason

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert (
        unreachable_reason(ValueError("config.json has no model_type")) is None
    )  # a broken repo, not the hub
    assert unreachable_reason(None) is None
    try:  # a real DNS failure, chained the way huggingface_hub chains it
        try:
            import socket

            socket.getaddrinfo("no-such-host.invalid", 443)
        except OSError as dns:
            raise OSError("We couldn't connect to 'https://huggingface.co'") from dns
    except OSError as exc:
        assert unreachable_reason(exc) == REASON_DNS
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert unreachable_reason(None) == REASON_OFFLINE
