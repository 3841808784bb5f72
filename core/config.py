"""TrainingConfig: the one flat, frozen description of a fine-tuning run.

Field names are the Hugging Face argument names (transformers ``TrainingArguments``, peft ``LoraConfig`` with a
``lora_`` prefix as in TRL's ``ModelConfig``, bitsandbytes ``BitsAndBytesConfig``). Each field's ``metadata["help"]``
is shown in the UI (``info=``) and in CLI errors. The UI and the CLI both build a config with ``from_dict``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from core.config_names import (  # noqa: F401  (re-exported: the UI builds its choices from these)
    ATTN_IMPLEMENTATIONS,
    COMPUTE_DTYPES,
    DATASET_FORMATS,
    DISTRIBUTED_STRATEGIES,
    DTYPES,
    OPTIMIZERS,
    QUANT_TYPES,
    SCHEDULERS,
)
from core.errors import ConfigError

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class TrainingConfig:
    """Everything needed to reproduce a LoRA / QLoRA run; saved as ``config.json`` in each run folder.

    Units: learning rate is per optimizer step; lengths are in tokens; fractions are 0..1.
    Defaults follow the seed chapter's PEFT recipe (r=8, lora_alpha=16, lora_dropout=0.05, learning_rate=2e-4).
    """

    model_name_or_path: str = field(
        default=DEFAULT_MODEL,
        metadata=_help(
            "Hugging Face hub id or local model folder. The default works offline (packaged copy)."
        ),
    )
    dataset_name: str = field(
        default="",
        metadata=_help(
            "Path to a CSV / TSV / JSON / JSONL / Parquet / XLSX file, or a hub dataset id (owner/name)."
        ),
    )
    dataset_format: str = field(
        default="auto",
        metadata=_help(
            "auto, alpaca, prompt_completion, messages (chat), sharegpt (conversations) or text (raw)."
        ),
    )
    dataset_column_mapping: tuple[tuple[str, str], ...] = field(
        default=(),
        metadata=_help(
            "Your columns for the format's fields, e.g. instruction=question, output=answer; "
            "unmapped fields are matched by name, other columns ignored."
        ),
    )
    dataset_split: str = field(default="train", metadata=_help("Hub datasets: the split to train on."))
    dataset_config: str = field(
        default="", metadata=_help("Hub datasets: the configuration (subset) name, if any.")
    )
    completion_only_loss: bool = field(
        default=True, metadata=_help("Train on the answers / assistant turns only (off: on the whole text).")
    )
    fold_system_message: bool = field(
        default=False,
        metadata=_help(
            "Move a leading system turn into the first user turn (for templates that refuse a system role)."
        ),
    )
    output_dir: str = field(
        default="runs", metadata=_help("Folder in which a new, never-overwritten run folder is created.")
    )
    load_in_4bit: bool = field(
        default=False, metadata=_help("QLoRA: load the frozen base in 4-bit with bitsandbytes.")
    )
    load_in_8bit: bool = field(
        default=False,
        metadata=_help("LoRA on an 8-bit base (bitsandbytes LLM.int8): between LoRA and QLoRA in memory."),
    )
    bnb_4bit_quant_type: str = field(
        default="nf4", metadata=_help("4-bit data type: nf4 (QLoRA paper) or fp4.")
    )
    bnb_4bit_use_double_quant: bool = field(
        default=True, metadata=_help("Quantize the quantization constants too (~0.4 bit/param saved).")
    )
    bnb_4bit_compute_dtype: str = field(
        default="bfloat16", metadata=_help("dtype the 4-bit layers compute in (bfloat16 on Ampere+).")
    )
    dtype: str = field(
        default="auto",
        metadata=_help(
            "Weights dtype for LoRA: auto = bfloat16 on a bf16 GPU, float16 on older GPUs, float32 on CPU."
        ),
    )
    lora_r: int = field(
        default=8, metadata=_help("LoRA rank r: trainable params per matrix = r x (in + out).")
    )
    lora_alpha: int = field(default=16, metadata=_help("LoRA alpha: the update is scaled by alpha / r."))
    lora_dropout: float = field(default=0.05, metadata=_help("Dropout on the LoRA input, 0..1."))
    lora_target_modules: tuple[str, ...] = field(
        default=(), metadata=_help("Linear module names to adapt; empty = the model family's default.")
    )
    learning_rate: float = field(default=2e-4, metadata=_help("Peak AdamW learning rate."))
    num_train_epochs: float = field(
        default=1.0, metadata=_help("Passes over the data (ignored if max_steps > 0).")
    )
    max_steps: int = field(default=-1, metadata=_help("Optimizer steps; -1 = use num_train_epochs."))
    per_device_train_batch_size: int = field(default=2, metadata=_help("Rows per micro-batch."))
    gradient_accumulation_steps: int = field(default=1, metadata=_help("Micro-batches per optimizer step."))
    max_length: int = field(default=512, metadata=_help("Tokens per row; longer rows are truncated."))
    warmup_steps: int = field(default=0, metadata=_help("Linear warm-up steps of the learning rate."))
    lr_scheduler_type: str = field(default="linear", metadata=_help("Learning-rate schedule after warm-up."))
    optim: str = field(
        default="adamw_torch",
        metadata=_help(
            "Optimizer: adamw_torch (2 fp32 states per trained parameter) or bitsandbytes' 8-bit "
            "adamw_8bit / paged_adamw_8bit (2 one-byte states; GPU only)."
        ),
    )
    gradient_checkpointing: bool | str = field(
        default="auto",
        metadata=_help(
            "Recompute activations in backward: less memory, ~1.4x the step time (bench/RESULTS.md). auto = on "
            "only when the run would not fit the GPU without it (always off on the CPU); true / false as set."
        ),
    )
    packing: bool = field(
        default=True,
        metadata=_help(
            "Padding-free packing: each micro-batch's rows become one sequence with their own positions, so no "
            "compute is spent on padding; the loss equals the unpacked loss."
        ),
    )
    attn_implementation: str = field(
        default="auto",
        metadata=_help(
            "Attention kernel: auto = flash varlen for packed rows on a CUDA GPU, else PyTorch SDPA."
        ),
    )
    use_liger_kernel: bool = field(
        default=True,
        metadata=_help("Liger-Kernel's fused norms, SwiGLU and cross-entropy on a CUDA GPU when installed."),
    )
    auto_micro_batch: bool = field(
        default=True,
        metadata=_help(
            "On a GPU, pick the micro-batch and checkpointing from the memory estimate, keeping the rows per "
            "optimizer step (batch x accumulation) unchanged."
        ),
    )
    save_steps: int = field(
        default=50,
        metadata=_help(
            "Save a resumable checkpoint every this many steps, and at the end or Stop (0 = only then)."
        ),
    )
    resume_from_checkpoint: str = field(
        default="",
        metadata=_help(
            "Continue a run: its folder (last checkpoint) or a checkpoint folder; a new run folder."
        ),
    )
    logging_steps: int = field(default=1, metadata=_help("Log loss every this many optimizer steps."))
    seed: int = field(default=42, metadata=_help("Random seed for LoRA init, shuffling and dropout."))
    monitor_rows: int = field(
        default=8,
        metadata=_help(
            "Training rows whose loss is re-measured ~5 times during the run: a smooth curve (0 = off)."
        ),
    )
    validation_split: float = field(
        default=0.0,
        metadata=_help("Rows held out for evaluation loss: a fraction (< 1) or a count (>= 1); 0 = none."),
    )

    num_processes: int = field(
        default=0,
        metadata=_help(
            "Training processes (accelerate's num_processes): 0 = auto, one per visible GPU (inside the app when "
            "there is at most one); 1 = inside the app's process; N > 1 = accelerate launch of N processes, one "
            "per GPU (gloo on the CPU)."
        ),
    )
    distributed_strategy: str = field(
        default="auto",
        metadata=_help(
            "With several processes: ddp (each GPU holds the whole model), fsdp (weights, gradients and optimizer "
            "states sharded across GPUs) or auto (DDP when the model fits one GPU, else FSDP)."
        ),
    )
    accelerate_config_file: str = field(
        default="",
        metadata=_help(
            "Optional accelerate config file (from `accelerate config`) for the launch, e.g. several machines; "
            "its settings win over num_processes."
        ),
    )

    # ------------------------------------------------------------------ validation
    def validate(self) -> list[str]:
        """Return every problem with this config (empty list when valid). Never raises."""
        from core.config_checks import config_problems

        return config_problems(self)

    # ------------------------------------------------------------------ conversion
    @property
    def lora_scaling(self) -> float:
        """alpha / r, the factor on B @ A in W' = W + (alpha / r) B A (seed chapter 26.4.1)."""
        return self.lora_alpha / self.lora_r

    @property
    def checkpointing_on(self) -> bool:
        """Whether gradient checkpointing is on as set: True only for ``True``; "auto" counts as off until the
        engine resolves it for the GPU the run uses (core.engine.plan_engine)."""
        return self.gradient_checkpointing is True

    @property
    def method(self) -> str:
        """ "qlora" (4-bit base), "lora8" (8-bit base) or "lora" (16/32-bit base): the estimator's method name."""
        return "qlora" if self.load_in_4bit else "lora8" if self.load_in_8bit else "lora"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict keyed by field name (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["lora_target_modules"] = list(self.lora_target_modules)
        d["dataset_column_mapping"] = dict(self.dataset_column_mapping)
        return d

    def replace(self, **changes: Any) -> TrainingConfig:
        """Copy with changes, validated like ``from_dict``. Raises ConfigError."""
        return TrainingConfig.from_dict({**self.to_dict(), **changes})

    @classmethod
    def field_names(cls) -> list[str]:
        """Names of every field, in declaration order."""
        return [f.name for f in fields(cls)]

    @classmethod
    def help_for(cls, name: str) -> str:
        """The help text of field ``name`` (shown as the UI ``info=``)."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}[name]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainingConfig:
        """Build and validate a config from plain values (JSON, CLI or UI).

        Strings like "8" or "2e-4" are accepted for numbers, "true"/"false" for booleans, and a comma-separated
        string or a list for ``lora_target_modules``. None (JSON null) is refused naming the field: a key left out
        takes its default, a null one is a mistake (``"max_steps": null`` used to mean an epoch silently).

        Raises:
            ConfigError: listing every unknown key, uncoercible value and validation problem at once.
        """
        if not isinstance(raw, dict):
            raise ConfigError([f"config must be a JSON object of field names, got {type(raw).__name__}."])
        problems: list[str] = []
        known = {f.name: f for f in fields(cls)}
        for key in raw:
            if key not in known:
                problems.append(f"{key}: unknown key; valid keys are {', '.join(known)}.")
        values: dict[str, Any] = {}
        for name, f in known.items():
            if name not in raw:
                continue
            if raw[name] is None:  # JSON null is not "the default": "max_steps": null silently meant an epoch
                problems.append(
                    f"{name}: null is not {_kind_of(name, f.default)}; leave the key out for the default."
                )
                continue
            try:
                if name == "dataset_column_mapping":
                    values[name] = _coerce_mapping(raw[name])
                    continue
                if name == "gradient_checkpointing":
                    values[name] = _coerce_checkpointing(raw[name])
                    continue
                values[name] = _coerce(raw[name], f.default, name)
            except (TypeError, ValueError) as exc:
                problems.append(f"{name}: {exc}")
        # Validate what could be read too (fields that failed above keep their defaults), so every problem is
        # reported in one go.
        problems += cls(**values).validate()
        if problems:
            raise ConfigError(problems)
        return cls(**values)

    @classmethod
    def from_json_file(cls, path: str | Path) -> TrainingConfig:
        """Read a JSON file of field names. Raises ConfigError (bad JSON, unknown keys, bad values)."""
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8-sig"))  # a BOM is fine
        except FileNotFoundError:
            raise ConfigError([f"{path}: file not found."]) from None
        except IsADirectoryError:
            raise ConfigError([f"{path}: is a folder; give the path of a JSON file."]) from None
        except UnicodeDecodeError as exc:
            raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8."]) from None
        except OSError as exc:
            raise ConfigError([f"{path}: cannot be read ({exc.strerror})."]) from None
        except json.JSONDecodeError as exc:
            raise ConfigError(
                [f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})."]
            ) from None
        except RecursionError:
            raise ConfigError(
                [
                    f"{path}: nested too deeply to read; a config is one object of field names and plain values."
                ]
            ) from None
        except ValueError as exc:  # Python refuses to convert integers of more than 4300 digits
            if "digits" in str(exc):
                raise ConfigError(
                    [f"{path}: holds a number too long to read; no field takes one that long."]
                ) from None
            raise ConfigError([f"{path}: cannot be read ({exc})."]) from None
        return cls.from_dict(raw)


def _kind_of(name: str, default: Any) -> str:
    """What field ``name`` (default ``default``) takes, in words ("a whole number", ...), for a refusal."""
    special = {
        "gradient_checkpointing": "true, false or auto",
        "dataset_column_mapping": "an object {field: column}",
        "lora_target_modules": "a list of module names",
    }
    if name in special:
        return special[name]
    if isinstance(default, bool):
        return "true/false"
    if isinstance(default, int):
        return "a whole number"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, tuple):
        return "a list"
    if isinstance(default, str):
        return "text"
    return "a value"


def _coerce(value: Any, default: Any, name: str) -> Any:
    """Convert ``value`` to the type of ``default``; raise ValueError with a readable reason."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.strip().lower() in ("true", "1", "yes")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(f"{value!r} is not true/false.")
    if isinstance(default, int):
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a whole number.")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                num = float(value.strip())
            except ValueError:
                raise ValueError(f"{value!r} is not a whole number.") from None
            if num.is_integer():
                return int(num)
        raise ValueError(f"{value!r} is not a whole number.")
    if isinstance(default, float):
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number.")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a number.") from None
    if isinstance(default, tuple):
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        if isinstance(value, (list, tuple)):
            return tuple(str(v).strip() for v in value)
        raise ValueError(f"{value!r} must be a list of module names or a comma-separated string.")
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"{value!r} must be text.")
        return value.strip()
    return value


def _coerce_checkpointing(value: Any) -> bool | str:
    """True, False or "auto" from a bool, 0/1, or text (true/false/on/off/yes/no/1/0/auto, any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        if text in ("true", "on", "yes", "1"):
            return True
        if text in ("false", "off", "no", "0"):
            return False
    raise ValueError(f"{value!r} is not true, false or auto.")


def _coerce_mapping(value: Any) -> tuple[tuple[str, str], ...]:
    """{field: column}, [[field, column], ...] or "field=column, ..." as sorted (field, column) pairs."""
    if isinstance(value, str):
        pairs = []
        for part in (p.strip() for p in value.split(",") if p.strip()):
            if "=" not in part:
                raise ValueError(f"{part!r} must look like field=column (e.g. instruction=question).")
            k, v = part.split("=", 1)
            pairs.append((k, v))
    elif isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, (list, tuple)) and all(
        isinstance(p, (list, tuple)) and len(p) == 2 for p in value
    ):
        pairs = [tuple(p) for p in value]
    else:
        raise ValueError(f"{value!r} must be an object {{field: column}} or text like instruction=question.")
    cleaned = {str(k).strip(): str(v).strip() for k, v in pairs if str(v).strip()}
    if any(not k for k in cleaned):
        raise ValueError("every mapping entry needs a field name.")
    return tuple(sorted(cleaned.items()))
