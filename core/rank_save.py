"""Saving the adapter of a multi-process (accelerate launch) run once, checked before it is published.

Under FSDP the Trainer's own save writes an adapter file with no tensors (measured on 2 H200s with peft 0.21.2 and
transformers 5.24: "0 tensors" for LoRA and QLoRA): the full state dict FSDP gathers has clean parameter names, but
peft finds its LoRA layers through ``named_modules`` of the wrapped model, whose names carry FSDP's
``_fsdp_wrapped_module.`` prefixes, so nothing matches. Here the gathered state dict's LoRA entries are written in
peft's own file format (``adapter_config.json`` + ``adapter_model.safetensors``, keys without the adapter name), and
every saved adapter passes core.health's checks (LoRA weights present, every B moved, all finite) before it is
renamed into place.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from core.health import require_healthy_adapter
from core.runs import publish_dir


def adapter_from_state_dict(state: dict[str, Any], adapter_name: str = "default") -> dict[str, Any]:
    """The LoRA tensors of a full model state dict, keyed as peft saves them.

    ``base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight`` becomes
    ``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`` (peft's
    ``get_peft_model_state_dict`` removes the adapter name the same way).
    """
    marker = f".{adapter_name}."
    return {
        key.replace(marker, ".", 1): value.detach().contiguous()
        for key, value in state.items()
        if "lora_" in key and marker in key
    }


def write_peft_adapter(peft_model: Any, tensors: dict[str, Any], folder: Path) -> None:
    """Write ``tensors`` (peft key format) and the model's LoRA config to ``folder`` as peft's save_pretrained does,
    so ``PeftModel.from_pretrained`` loads it."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.cpu() for k, v in tensors.items()}, str(folder / "adapter_model.safetensors"), {"format": "pt"}
    )
    config = copy.deepcopy(peft_model.peft_config[peft_model.active_adapter])
    config.inference_mode = True
    config.save_pretrained(str(folder))


def save_adapter_once(trainer: Any, tokenizer: Any, final: Path, learning_rate: float) -> None:
    """Save the adapter of a multi-process run to ``final`` once. Called on every rank (FSDP gathers the full
    state collectively); rank 0 writes a staging folder in the run folder, checks it and renames it into place.

    Raises:
        TrainingFailed: the adapter has no LoRA weights, an unmoved B or a non-finite weight (nothing published).
        FileExistsError: ``final`` exists (core.runs.publish_dir).
    """
    tmp = final.with_name(f".{final.name}.partial")  # the same path on every rank: the run folder is new
    model = trainer.model  # the PeftModel (trainer.model_wrapped is the DDP / FSDP wrapper)
    if trainer.is_fsdp_enabled:
        # collective: every rank takes part, rank 0 receives the full state on the CPU
        state = trainer.accelerator.get_state_dict(trainer.model_wrapped)
        if trainer.is_world_process_zero():
            tensors = adapter_from_state_dict(state, model.active_adapter)
            require_healthy_adapter(model, learning_rate, tensors)
            write_peft_adapter(model, tensors, tmp)
    else:
        require_healthy_adapter(model, learning_rate)  # DDP: every rank holds the whole adapter
        trainer.save_model(str(tmp))  # writes on the main process only (args.should_save)
    if trainer.is_world_process_zero():
        (tmp / "training_args.bin").unlink(missing_ok=True)  # as a single-process adapter folder
        tokenizer.save_pretrained(tmp)
        publish_dir(tmp, final)
    trainer.accelerator.wait_for_everyone()
