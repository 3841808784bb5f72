"""Data only: model presets, default LoRA target modules per model family, and the GPU catalogue."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import DEFAULT_MODEL


@dataclass(frozen=True)
class ModelPreset:
    """A model offered in the preset dropdown.

    Attributes:
        model_name_or_path: hub id (or local folder).
        label: text shown in the dropdown.
        params_b: parameter count in billions, for the dropdown label only.
    """

    model_name_or_path: str
    label: str
    params_b: float


MODEL_PRESETS: tuple[ModelPreset, ...] = (
    ModelPreset(DEFAULT_MODEL, "SmolLM2-135M-Instruct (embedded, works offline)", 0.135),
    ModelPreset("HuggingFaceTB/SmolLM2-360M-Instruct", "SmolLM2-360M-Instruct", 0.36),
    ModelPreset("Qwen/Qwen2.5-0.5B-Instruct", "Qwen2.5-0.5B-Instruct", 0.49),
    ModelPreset("meta-llama/Llama-3.2-1B-Instruct", "Llama-3.2-1B-Instruct (gated)", 1.24),
    ModelPreset("Qwen/Qwen2.5-7B-Instruct", "Qwen2.5-7B-Instruct", 7.6),
    ModelPreset("mistralai/Mistral-7B-Instruct-v0.3", "Mistral-7B-Instruct-v0.3", 7.2),
    ModelPreset("meta-llama/Llama-3.1-8B-Instruct", "Llama-3.1-8B-Instruct (gated)", 8.0),
)

# Default LoRA targets by config.model_type. The seed chapter (26.5.2 and 26.6.4 point 3) recommends all linear
# layers of attention and MLP; module names per family are those of transformers' modeling files.
_LLAMA_LIKE = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TARGET_MODULES_BY_FAMILY: dict[str, tuple[str, ...]] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "mixtral": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "gemma3_text": _LLAMA_LIKE,
    "phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
    "gpt2": ("c_attn", "c_proj", "c_fc"),
    "gpt_neox": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
    "opt": ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"),
    "falcon": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
}


def default_target_modules(model_type: str, linear_names: list[str]) -> tuple[str, ...]:
    """Target modules for a model family, limited to names the model really has.

    Args:
        model_type: ``config.model_type`` (e.g. "llama").
        linear_names: leaf names of the model's nn.Linear modules (lm_head excluded).

    Returns:
        The family default intersected with ``linear_names``; for an unknown family, every linear name
        (peft's "all-linear" choice).
    """
    family = TARGET_MODULES_BY_FAMILY.get(model_type)
    if family:
        chosen = tuple(m for m in family if m in linear_names)
        if chosen:
            return chosen
    return tuple(linear_names)


@dataclass(frozen=True)
class GpuSpec:
    """A GPU in the catalogue.

    Attributes:
        name: marketing name.
        memory_gib: usable memory in GiB (2**30 bytes) as reported by the driver (nvidia-smi total).
        bf16: whether the GPU computes in bfloat16 (compute capability >= 8.0).
    """

    name: str
    memory_gib: float
    bf16: bool


# Memory from each vendor's datasheet, converted to GiB as the driver reports it (e.g. "24 GB" RTX 4090 = 24564 MiB
# = 23.99 GiB; "80 GB" A100/H100 = 81920 MiB = 80 GiB; H200 143771 MiB measured on our lent H200 = 140.4 GiB).
GPU_CATALOGUE: tuple[GpuSpec, ...] = (
    GpuSpec("NVIDIA T4 (16 GB)", 15.0, False),
    GpuSpec("NVIDIA RTX 3060 (12 GB)", 11.8, True),
    GpuSpec("NVIDIA RTX 4080 (16 GB)", 15.7, True),
    GpuSpec("NVIDIA RTX 3090 (24 GB)", 23.7, True),
    GpuSpec("NVIDIA RTX 4090 (24 GB)", 23.99, True),
    GpuSpec("NVIDIA L4 (24 GB)", 22.5, True),
    GpuSpec("NVIDIA A10G (24 GB)", 22.5, True),
    GpuSpec("NVIDIA V100 (32 GB)", 31.7, False),
    GpuSpec("NVIDIA A100 (40 GB)", 39.4, True),
    GpuSpec("NVIDIA L40S (48 GB)", 44.5, True),
    GpuSpec("NVIDIA RTX A6000 (48 GB)", 47.99, True),
    GpuSpec("NVIDIA RTX 6000 Ada (48 GB)", 47.99, True),
    GpuSpec("NVIDIA A100 (80 GB)", 79.2, True),
    GpuSpec("NVIDIA H100 (80 GB)", 79.6, True),
    GpuSpec("NVIDIA H200 (141 GB)", 140.4, True),
)


def gpu_by_name(name: str) -> GpuSpec | None:
    """The catalogue entry called ``name``, or None."""
    return next((g for g in GPU_CATALOGUE if g.name == name), None)


def smallest_gpu_for(total_gib: float) -> str:
    """Name of the smallest catalogue GPU whose 90% (core.vram.HEADROOM) holds ``total_gib``, or ""."""
    from core.vram import HEADROOM

    for gpu in sorted(GPU_CATALOGUE, key=lambda g: g.memory_gib):
        if total_gib <= gpu.memory_gib * HEADROOM:
            return gpu.name
    return ""


def gpu_usable_gib(name: str) -> float:
    """Usable GiB of the catalogue GPU called ``name``; 0 when unknown."""
    gpu = gpu_by_name(name)
    return gpu.memory_gib if gpu else 0.0


# The seed chapter's table 26.9.4 (GPU size x model size -> method), kept verbatim as the starting point that
# core.plan.plan_training() refines with the estimate: (gpu_gib, model_billions, method).
SEED_GUIDANCE: tuple[tuple[int, str, str], ...] = (
    (24, "7B", "QLoRA"),
    (24, "13B", "QLoRA"),
    (40, "7B", "LoRA"),
    (40, "13B", "QLoRA"),
    (80, "7B-13B", "LoRA"),
    (80, "70B", "QLoRA"),
)


def suggested_learning_rate(num_params: int) -> float:
    """Starting learning rate for LoRA by model size.

    2e-4 is the seed chapter's recipe (26.7.4) for 7B models; small models (< 1 B parameters) tolerate and need a
    larger step to move in a short run: 5e-4 lowered SmolLM2-135M's loss on its training rows within 10 steps
    (tests/test_e2e.py) where 2e-4 is hard to see through per-batch noise.
    """
    return 5e-4 if num_params < 1_000_000_000 else 2e-4
