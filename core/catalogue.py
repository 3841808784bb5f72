"""Offline catalogue of model shapes: config.json facts of popular open causal LMs, shipped as package data.

``core/model_catalogue.json`` holds, per model, the config.json fields that build its shapes (read from the model's
config.json on the Hugging Face Hub as published, on the date in ``read_on``), the total parameter count with where it
comes from, the licence, the gated flag and whether the tokenizer ships a chat template. ``core.model.inspect_model``
builds a model's ModelSpec from it when the hub cannot be reached, so the estimate works with no network.

This module imports in milliseconds (json, dataclasses, importlib.resources only); transformers is imported inside
``catalogue_config``.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PretrainedConfig

CATALOGUE_FILE = "model_catalogue.json"
# Named in the offline error message: one small, one mid-size, one gated.
_EXAMPLE_IDS = (
    "HuggingFaceTB/SmolLM2-360M-Instruct",
    "Qwen/Qwen2.5-7B-Instruct",
    "meta-llama/Llama-3.1-8B-Instruct",
)

# config.json keys that give the number of routed experts, by family: Mixtral / gpt-oss "num_local_experts",
# Qwen-MoE / OLMoE "num_experts", DeepSeek "n_routed_experts".
_EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")
# config.model_type of the mixture-of-experts families transformers ships; used when only a model_type is known
# (a ModelSpec). Their experts may be fused 3-D parameters rather than nn.Linear modules.
MOE_MODEL_TYPES = frozenset(
    {
        "mixtral",
        "qwen2_moe",
        "qwen3_moe",
        "qwen3_next",
        "deepseek_v2",
        "deepseek_v3",
        "gpt_oss",
        "olmoe",
        "phimoe",
        "granitemoe",
        "granitemoeshared",
        "jamba",
        "dbrx",
        "jetmoe",
        "llama4",
        "llama4_text",
        "glm4_moe",
        "ernie4_5_moe",
        "minimax",
        "hunyuan_v1_moe",
    }
)
# Fields every catalogue entry carries (license and gated may be null: not verified).
_REQUIRED_ENTRY_KEYS = (
    "hub_id",
    "family",
    "params",
    "params_source",
    "has_chat_template",
    "read_on",
    "source",
    "config",
)
_REQUIRED_CONFIG_KEYS = (
    "model_type",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "tie_word_embeddings",
    "max_position_embeddings",
)


@dataclass(frozen=True)
class CatalogueEntry:
    """One model of the offline catalogue.

    Attributes:
        hub_id: Hugging Face Hub id, e.g. "Qwen/Qwen2.5-7B-Instruct" (the instruct variant where that is the usual
            pick; the base model has the same shapes).
        family: model family, e.g. "qwen2.5".
        params: total parameters (tied embeddings counted once), as stated; see ``params_source``.
        params_source: where ``params`` comes from: the model card's figure, or the exact count as the hub's
            safetensors metadata gives it / as computed from the shapes where the card gives only a size name.
        license: licence id as the hub lists it, e.g. "apache-2.0", "llama3.1".
        gated: True where the hub asks users to accept terms before downloading, False where it does not, None
            where not verified.
        has_chat_template: whether the tokenizer ships a chat template (True for instruct/chat models).
        read_on: ISO date the facts were read, e.g. "2026-11-30".
        source: where the facts were read (the model's config.json on the hub as published).
        config: config.json fields that build the model's shapes, ``model_type`` included (read-only mapping).
    """

    hub_id: str
    family: str
    params: int
    params_source: str
    license: str | None
    gated: bool | None
    has_chat_template: bool
    read_on: str
    source: str
    config: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def model_type(self) -> str:
        """config.json ``model_type``, e.g. "llama"."""
        return str(self.config["model_type"])

    @property
    def params_b(self) -> float:
        """``params`` in billions."""
        return self.params / 1e9

    @property
    def num_experts(self) -> int:
        """Routed experts per MoE layer (``num_local_experts`` / ``num_experts``); 0 for a dense model."""
        return _expert_count(self.config)

    @property
    def num_experts_per_tok(self) -> int:
        """Experts each token is routed to (``num_experts_per_tok``); 0 for a dense model."""
        return int(self.config.get("num_experts_per_tok") or 0) if self.num_experts else 0

    @property
    def moe_intermediate_size(self) -> int:
        """Hidden width of one expert's MLP: ``moe_intermediate_size`` (Qwen-MoE), else ``intermediate_size``
        (Mixtral: every expert is a full-width MLP); 0 for a dense model."""
        if not self.num_experts:
            return 0
        return int(self.config.get("moe_intermediate_size") or self.config["intermediate_size"])


def _expert_count(config: Mapping[str, Any]) -> int:
    for key in _EXPERT_KEYS:
        value = config.get(key)
        if isinstance(value, int) and value > 1:
            return value
    return 0


def _entry_from_json(raw: Mapping[str, Any]) -> CatalogueEntry:
    """Build one CatalogueEntry, checking the fields every entry must carry (ValueError naming what is missing)."""
    hub_id = raw.get("hub_id", "?")
    missing = [k for k in _REQUIRED_ENTRY_KEYS if k not in raw]
    missing += [f"config.{k}" for k in _REQUIRED_CONFIG_KEYS if k not in raw.get("config", {})]
    if missing:
        raise ValueError(f"{CATALOGUE_FILE}: entry {hub_id!r} lacks {missing}")
    return CatalogueEntry(
        hub_id=str(raw["hub_id"]),
        family=str(raw["family"]),
        params=int(raw["params"]),
        params_source=str(raw["params_source"]),
        license=raw.get("license"),
        gated=raw.get("gated"),
        has_chat_template=bool(raw["has_chat_template"]),
        read_on=str(raw["read_on"]),
        source=str(raw["source"]),
        config=MappingProxyType(dict(raw["config"])),
    )


@functools.lru_cache(maxsize=1)
def catalogue_entries() -> tuple[CatalogueEntry, ...]:
    """Every catalogue entry, in file order (smallest families first within each family), read once per process.

    Raises:
        ValueError: an entry lacks a required field or two entries share a hub id (a packaging bug).
    """
    text = resources.files("core").joinpath(CATALOGUE_FILE).read_text(encoding="utf-8")
    entries = tuple(_entry_from_json(raw) for raw in json.loads(text)["models"])
    ids = [e.hub_id.lower() for e in entries]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"{CATALOGUE_FILE}: duplicate hub ids {dupes}")
    return entries


@functools.lru_cache(maxsize=1)
def _by_id() -> dict[str, CatalogueEntry]:
    return {e.hub_id.lower(): e for e in catalogue_entries()}


def catalogue_entry(hub_id: str) -> CatalogueEntry | None:
    """The entry for ``hub_id`` (case-insensitive, surrounding spaces ignored), or None if it is not catalogued."""
    return _by_id().get(hub_id.strip().lower())


def catalogue_config(entry: CatalogueEntry) -> PretrainedConfig:
    """A transformers config with the entry's shapes: ``AutoConfig.for_model(model_type, **fields)``.

    No network and no file is read; build the model from it on the meta device to get exact shapes. Imports
    transformers (seconds on first use).
    """
    from transformers import AutoConfig

    # a deep copy: the config may keep (and edit) nested dicts such as rope_scaling
    fields = copy.deepcopy(dict(entry.config))
    model_type = fields.pop("model_type")
    config = AutoConfig.for_model(model_type, **fields)
    config.name_or_path = entry.hub_id
    return config


def is_moe(entry: object) -> bool:
    """Whether a model is a mixture of experts.

    Args:
        entry: a CatalogueEntry, a config mapping (config.json as a dict), a transformers config, or anything with a
            ``model_type`` attribute (e.g. a ModelSpec: then the family decides, see ``MOE_MODEL_TYPES``).

    Returns:
        True when the config routes tokens over more than one expert (``num_local_experts`` / ``num_experts`` /
        ``n_routed_experts`` > 1), or, with no expert count known, when its model_type is a MoE family. Their experts
        may be fused 3-D parameters rather than nn.Linear modules, so a LinearGroup-based estimate would be wrong.
    """
    if isinstance(entry, CatalogueEntry):
        return entry.num_experts > 0
    if isinstance(entry, Mapping):
        counts: Mapping[str, Any] = entry
        model_type = entry.get("model_type")
    else:
        text_config = getattr(entry, "get_text_config", None)
        config = text_config() if callable(text_config) else entry
        counts = {k: getattr(config, k, None) for k in _EXPERT_KEYS}
        model_type = getattr(entry, "model_type", None)
    if any(counts.get(k) is not None for k in _EXPERT_KEYS):  # the config says: trust its expert count
        return _expert_count(counts) > 0
    return model_type in MOE_MODEL_TYPES


# Class names (anywhere in an exception's MRO or its cause/context chain) that mean "the hub could not be reached":
# huggingface_hub raises LocalEntryNotFoundError when a download fails and the file is not cached (and
# OfflineModeIsEnabled offline); the HTTP clients raise ConnectError / TimeoutException / TransportError subclasses;
# the socket layer ConnectionError / TimeoutError.
_NETWORK_ERROR_NAMES = frozenset(
    {
        "LocalEntryNotFoundError",
        "OfflineModeIsEnabled",
        "ConnectionError",
        "TimeoutError",
        "TransportError",
        "NetworkError",
        "TimeoutException",
        "ConnectTimeout",
        "ReadTimeout",
        "gaierror",
    }
)


def is_network_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the hub could not be reached, as opposed to a
    missing repository, a gated one or a bad config. transformers wraps these in OSError("We couldn't connect to
    ...")."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(cls.__name__ in _NETWORK_ERROR_NAMES for cls in type(current).__mro__):
            return True
        if "couldn't connect to" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def offline_message(hub_id: str, reason: str = "offline") -> str:
    """The ModelError text for a hub id that is neither catalogued nor reachable.

    Args:
        hub_id: what the user asked for.
        reason: why the hub is not reachable, e.g. "offline: HF_HUB_OFFLINE=1" or "no connection".
    """
    entries = catalogue_entries()
    examples = ", ".join(e.hub_id for e in entries if e.hub_id in _EXAMPLE_IDS)
    return (
        f"{hub_id} is not in the offline catalogue and the Hugging Face Hub is not reachable ({reason}); connect, "
        f"or pick one of the {len(entries)} catalogue models (e.g. {examples}), or a local folder."
    )
