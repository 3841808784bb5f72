"""Detect the GPUs torch can see; describe what runs on a machine without one."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class DetectedGpu:
    """One CUDA device.

    Attributes:
        index: CUDA device index.
        name: torch.cuda.get_device_name().
        total_gib: total memory, GiB (2**30 bytes).
        free_gib: free memory at detection time, GiB.
        bf16: torch.cuda.is_bf16_supported() (compute capability >= 8.0).
        compute_capability: (major, minor).
    """

    index: int
    name: str
    total_gib: float
    free_gib: float
    bf16: bool
    compute_capability: tuple[int, int]


def detect_gpus() -> list[DetectedGpu]:
    """List CUDA GPUs (empty on a CPU-only machine or when torch has no CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    gpus = []
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        major, minor = torch.cuda.get_device_capability(i)
        gpus.append(
            DetectedGpu(
                i, torch.cuda.get_device_name(i), total / 2**30, free / 2**30, major >= 8, (major, minor)
            )
        )
    return gpus


def cpu_summary() -> str:
    """One line describing what trains on this machine when there is no CUDA GPU."""
    cores = os.cpu_count() or 1
    return (
        f"No CUDA GPU found: training runs on the CPU ({cores} cores) in float32 with LoRA. "
        "QLoRA 4-bit also runs on the CPU through bitsandbytes but is several times slower and saves "
        "no GPU memory, so LoRA is the better choice here; use a small model such as the embedded "
        "SmolLM2-135M."
    )


def resolve_dtype(requested: str, has_cuda: bool, bf16_ok: bool) -> str:
    """Turn TrainingConfig.dtype ("auto" or a name) into a concrete torch dtype name.

    auto: bfloat16 on a bf16 GPU, float16 on an older GPU, float32 on the CPU (16-bit matmuls on a CPU
    without AMX are slower than fp32, and fp16 training needs a GPU grad scaler).
    """
    if requested != "auto":
        return requested
    if not has_cuda:
        return "float32"
    return "bfloat16" if bf16_ok else "float16"


def usable_gpu_gib(index: int = 0) -> float:
    """Memory this process may use on CUDA GPU ``index``, GiB: the total times the caching allocator's
    per-process fraction (``torch.cuda.set_per_process_memory_fraction``, 1.0 unless someone capped it, as a
    shared GPU or bench/plan_check.py does), so plans and "auto" settings respect a capped GPU."""
    import torch

    total = torch.cuda.get_device_properties(index).total_memory / 2**30
    get_fraction = getattr(torch.cuda, "get_per_process_memory_fraction", None)  # torch >= 2.8
    fraction = float(get_fraction(index)) if get_fraction is not None else 1.0
    return total * min(1.0, fraction)
