"""The offline catalogue of model shapes: every entry builds (meta device) to its stated size; offline lookups.

No test here touches the network: conftest sets HF_HUB_OFFLINE=1, and the tests that need it offline set it again.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

import core.model as core_model
from core.catalogue import (
    CatalogueEntry,
    catalogue_config,
    catalogue_entries,
    catalogue_entry,
    is_moe,
    is_network_error,
)
from core.errors import ModelError
from core.model import inspect_model
from tests.conftest import ROOT

ENTRIES = catalogue_entries()


def _built_params(entry: CatalogueEntry) -> int:
    with torch.device("meta"):  # shapes only: nothing is allocated, so 70B builds in well under a second
        model = AutoModelForCausalLM.from_config(catalogue_config(entry))
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.hub_id for e in ENTRIES])
def test_every_entry_builds_to_its_stated_parameter_count(entry):
    built = _built_params(entry)
    assert abs(built - entry.params) <= 0.01 * entry.params, (
        f"{entry.hub_id}: built {built:,} vs stated {entry.params:,} ({entry.params_source})"
    )


def test_the_catalogue_covers_what_it_promises():
    assert len(ENTRIES) >= 30
    ids = [e.hub_id.lower() for e in ENTRIES]
    assert len(ids) == len(set(ids))
    sizes = [e.params for e in ENTRIES]
    assert min(sizes) < 0.2e9 and max(sizes) > 65e9
    assert any(is_moe(e) for e in ENTRIES)
    families = {e.family for e in ENTRIES}
    assert {
        "llama-2",
        "llama-3.1",
        "llama-3.2",
        "qwen2.5",
        "qwen3",
        "mistral",
        "gemma-2",
        "phi-3",
        "smollm2",
    } <= (families)


def test_every_entry_carries_the_required_facts():
    raw = json.loads((ROOT / "core" / "model_catalogue.json").read_text(encoding="utf-8"))
    for model in raw["models"]:
        for key in ("hub_id", "family", "params", "params_source", "license", "gated", "has_chat_template"):
            assert key in model, (model["hub_id"], key)
        assert model["read_on"] == "2026-11-30"
        assert "config.json" in model["source"]
    for entry in ENTRIES:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", entry.hub_id), entry.hub_id
        assert entry.params_source
        assert entry.gated in (True, False, None)
        for key in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "max_position_embeddings",
        ):
            assert isinstance(entry.config[key], int) and entry.config[key] > 0, (entry.hub_id, key)
        assert isinstance(entry.config["tie_word_embeddings"], bool)
        if is_moe(entry):
            assert entry.num_experts > 1 and 0 < entry.num_experts_per_tok < entry.num_experts
            assert entry.moe_intermediate_size > 0
        else:
            assert entry.num_experts == entry.num_experts_per_tok == entry.moe_intermediate_size == 0


def test_lookup_is_case_insensitive_and_unknown_ids_are_none():
    entry = catalogue_entry("  qwen/QWEN2.5-7b-instruct ")
    assert entry is not None and entry.hub_id == "Qwen/Qwen2.5-7B-Instruct"
    assert catalogue_entry("nobody/no-such-model") is None


def test_moe_entries_expose_their_experts():
    mixtral = catalogue_entry("mistralai/Mixtral-8x7B-Instruct-v0.1")
    qwen_moe = catalogue_entry("Qwen/Qwen3-30B-A3B")
    assert mixtral is not None and qwen_moe is not None
    assert (mixtral.num_experts, mixtral.num_experts_per_tok, mixtral.moe_intermediate_size) == (8, 2, 14336)
    assert (qwen_moe.num_experts, qwen_moe.num_experts_per_tok, qwen_moe.moe_intermediate_size) == (
        128,
        8,
        768,
    )
    dense = catalogue_entry("Qwen/Qwen3-8B")
    assert dense is not None and not is_moe(dense)
    # a live config and a config.json mapping answer the same
    assert is_moe(catalogue_config(mixtral)) and not is_moe(catalogue_config(dense))
    assert is_moe({"model_type": "qwen3_moe", "num_experts": 128}) and not is_moe({"model_type": "llama"})


def test_offline_lookup_builds_the_spec_from_the_catalogue(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = inspect_model("meta-llama/Llama-2-7b-hf")
    assert (spec.hidden_size, spec.num_hidden_layers, spec.intermediate_size) == (4096, 32, 11008)
    assert (
        spec.num_params == 6_738_415_616
    )  # the seed chapter's 6,742,609,920 less r=8 LoRA on q, v (4,194,304)
    assert spec.source == "catalogue 2026-11-30"
    assert spec.dtype == "float16" and spec.has_chat_template is False
    assert spec.lora_params(8, ["q_proj", "v_proj"]) == 4_194_304
    chat = inspect_model("qwen/qwen2.5-0.5b-instruct")  # any case, as typed
    assert chat.has_chat_template is True and chat.num_key_value_heads == 2 and chat.model_type == "qwen2"


def test_an_moe_spec_still_builds_with_the_right_size(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = inspect_model("mistralai/Mixtral-8x7B-Instruct-v0.1")
    assert spec.num_params == 46_702_792_704 and spec.model_type == "mixtral"
    assert is_moe(spec)


def test_a_non_catalogue_id_offline_names_the_catalogue(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as err:
        inspect_model("nobody-here/not-a-real-model-xyz")
    message = str(err.value)
    assert "not in the offline catalogue" in message and "Hugging Face Hub is not reachable" in message
    assert f"{len(ENTRIES)} catalogue models" in message and "local folder" in message


def test_a_network_failure_online_falls_back_to_the_catalogue(monkeypatch):
    # The hub looks reachable to inspect_model, but huggingface_hub itself is offline (conftest), so the config
    # fetch fails the way a dropped connection does: no network is touched.
    monkeypatch.setattr(core_model, "_hub_offline", lambda: False)
    monkeypatch.setattr(core_model, "_hub_reachable", lambda: True)
    spec = inspect_model("Qwen/Qwen3-0.6B")
    assert spec.source.startswith("catalogue") and spec.num_params == 596_049_920


def test_network_errors_are_told_apart_from_other_failures():
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as inner:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files") from inner
    except OSError as wrapped:
        assert is_network_error(wrapped)
    assert not is_network_error(ValueError("Unrecognized model in nobody/x. Should have a `model_type` key"))


def test_a_local_folder_still_reads_its_config_json(tmp_path):
    entry = catalogue_entry("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert entry is not None
    (tmp_path / "config.json").write_text(json.dumps(dict(entry.config)))
    spec = inspect_model(str(tmp_path))
    assert spec.source == "config.json" and spec.num_params == entry.params


def test_the_catalogue_module_is_light():
    code = (
        "import sys, core.catalogue as c; c.catalogue_entries(); "
        "print([m for m in ('torch', 'transformers') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
