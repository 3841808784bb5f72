"""What the engine and the CLI take from the planner: "auto" gradient checkpointing resolved for the GPU a run
uses, and the JSON report of ``launch.py estimate`` / ``plan``. Pure arithmetic on core.vram and core.plan."""

from __future__ import annotations

from typing import Any

from core.config import TrainingConfig
from core.modelspec import ModelSpec
from core.plan import PlanResult, is_moe
from core.vram import HEADROOM, estimate_vram, fit_status, lora_targets


def resolve_gradient_checkpointing(
    cfg: TrainingConfig,
    spec: ModelSpec | None,
    has_cuda: bool,
    gpu_gib: float | None,
    fused_loss: bool = False,
) -> tuple[bool, str]:
    """Resolve ``gradient_checkpointing="auto"`` for the GPU the run uses: on only when the estimate without it
    does not fit 90% of ``gpu_gib``. Off on the CPU. True / False are kept as set.

    Returns:
        (on, a log line with both numbers, or why).
    """
    if isinstance(cfg.gradient_checkpointing, bool):
        return (
            cfg.gradient_checkpointing,
            f"Gradient checkpointing: {'on' if cfg.checkpointing_on else 'off'} (as set).",
        )
    if not has_cuda:
        return (
            False,
            "Gradient checkpointing: auto -> off (no CUDA GPU: the CPU's RAM is not the limit it saves).",
        )
    if spec is None or not gpu_gib:
        return False, "Gradient checkpointing: auto -> off (no model shape or GPU size to estimate with)."
    off = estimate_vram(
        spec, cfg.replace(gradient_checkpointing=False), cfg.method, fused_loss, upcast_non_quantized=False
    ).total_gib
    budget = gpu_gib * HEADROOM
    if off <= budget:
        return False, (
            f"Gradient checkpointing: auto -> off (the estimate without it, {off:.1f} GiB, fits {budget:.1f} GiB, "
            f"90% of this {gpu_gib:.1f} GiB GPU)."
        )
    on = estimate_vram(
        spec, cfg.replace(gradient_checkpointing=True), cfg.method, fused_loss, upcast_non_quantized=False
    ).total_gib
    return True, (
        f"Gradient checkpointing: auto -> on (without it the estimate is {off:.1f} GiB, over {budget:.1f} GiB, 90% "
        f"of this {gpu_gib:.1f} GiB GPU; with it {on:.1f} GiB)."
    )


def estimate_report(
    spec: ModelSpec, cfg: TrainingConfig, gpu_gib: float, result: PlanResult, num_processes: int = 1
) -> dict[str, Any]:
    """JSON-ready report of ``launch.py estimate`` / ``plan``: every method's estimate of ``cfg`` as set, the plan
    (its ``config`` is a complete TrainingConfig dict that ``launch.py train`` accepts), the RAM a merged export
    of the result needs (core.export_memory, ``merged_export_ram_gib``), and, for several GPUs,
    the memory per GPU under the strategy auto would choose (core.parallel.per_gpu_summary)."""
    from core.vram import estimate_all

    estimates = {} if is_moe(spec) else estimate_all(spec, cfg)  # the dense arithmetic would be wrong
    per_gpu = None
    if num_processes > 1 and estimates:
        from core.parallel import per_gpu_summary

        per_gpu = per_gpu_summary(cfg, spec, estimates, result.method, num_processes, gpu_gib)
    from core.export_memory import estimate_merge_memory

    targets = lora_targets(spec, cfg)
    merge = estimate_merge_memory(spec, "auto", "cpu", spec.lora_params(cfg.lora_r, targets))
    return {
        "model": cfg.model_name_or_path,
        "gpu_gib": gpu_gib,
        "merged_export_ram_gib": merge.total_gib,
        "recommendation": result.method,
        "reason": result.reason,
        "plan": result.to_dict(cfg),
        "per_gpu": per_gpu,
        "estimates": {
            m: {
                "total_gib": e.total_gib,
                "components_gib": e.components_gib,
                "trainable_params": e.trainable_params,
                "status": fit_status(e.total_gib, gpu_gib),
            }
            for m, e in estimates.items()
        },
    }
