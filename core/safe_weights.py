"""Safetensors only: whether a folder's weights can be read without unpickling anything.

LoRA Studio reads model and adapter weights from safetensors and never from pickled ``.bin`` files (``torch.load``
of a pickle can run code; with ``weights_only=True`` torch refuses most of them with a message that names no file).
peft's ``PeftModel.from_pretrained`` falls back to ``adapter_model.bin`` through ``torch.load`` when the
safetensors file is missing, so a folder is checked here before anything loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

ADAPTER_WEIGHTS = "adapter_model.safetensors"
PICKLED_ADAPTER = "adapter_model.bin"


def weights_problem(folder: Path, kind: Literal["adapter", "model"]) -> str | None:
    """Why ``folder``'s weights cannot be loaded as safetensors, or None when they can.

    Args:
        folder: an adapter folder (``kind="adapter"``: needs adapter_model.safetensors) or a model folder written
            by save_pretrained (``kind="model"``: needs model.safetensors or its shards, ``*.safetensors``).
        kind: which of the two.

    Returns:
        One sentence naming the pickled file found instead (or that there are no weights) and what to do.
    """
    if kind == "adapter":
        if (folder / ADAPTER_WEIGHTS).is_file():
            return None
        pickled = [folder / PICKLED_ADAPTER] if (folder / PICKLED_ADAPTER).is_file() else []
        wanted = ADAPTER_WEIGHTS
    else:
        if any(folder.glob("*.safetensors")):
            return None
        pickled = sorted(folder.glob("pytorch_model*.bin"))
        wanted = "model.safetensors (or its shards)"
    if pickled:
        return (
            f"{pickled[0]} is a pickled PyTorch file and {folder} has no {wanted}; LoRA Studio loads safetensors "
            "only (loading a pickle can run code). Re-save it with save_pretrained(..., safe_serialization=True), "
            "or export the run again here."
        )
    return f"{folder} has no {wanted}: the weights were not saved completely. Export or train the run again."
