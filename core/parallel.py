"""Planning a run over several processes: how many, which strategy and why, memory per GPU, the launch command.

Pure (no torch import), so the UI, the estimator and the CLI use it in milliseconds; core/distributed.py runs
the plan. Strategies are accelerate's: DDP (``--multi_gpu``: every process holds the whole model and gradients are
all-reduced) and FSDP (``--use_fsdp``: weights, gradients and optimizer states sharded across the processes,
gathered one wrapped layer at a time). Sources: PyTorch DDP notes ("Distributed Data Parallel", the reducer keeps
gradient buckets), Zhao et al. 2023 ("PyTorch FSDP", section 3: full sharding divides parameters, gradients and
optimizer states by the world size), the PEFT guide "FSDP with QLoRA" (bnb_4bit_quant_storage so 4-bit weights
shard).
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.config import TrainingConfig
from core.modelspec import ModelSpec
from core.vram import ALLOCATOR_FIXED_GIB, GIB, HEADROOM, VramEstimate

LAUNCH_PY = Path(__file__).resolve().parents[1] / "launch.py"
SINGLE, DDP, FSDP = "single", "ddp", "fsdp"


@dataclass(frozen=True)
class StrategyChoice:
    """How a run is spread over processes, and why.

    Attributes:
        strategy: "single" (one process, the app's thread), "ddp" or "fsdp".
        num_processes: processes (one per GPU; gloo processes on the CPU).
        reason: one sentence for the log and the UI.
    """

    strategy: str
    num_processes: int
    reason: str


def resolve_num_processes(cfg: TrainingConfig, visible_gpus: int) -> int:
    """Processes to run: cfg.num_processes, or for 0 (auto) one per visible CUDA GPU (1 without one)."""
    return cfg.num_processes if cfg.num_processes > 0 else max(1, visible_gpus)


def process_problems(cfg: TrainingConfig, visible_gpus: int, has_cuda: bool) -> list[str]:
    """What stops ``cfg``'s multi-process settings from running on this machine (empty when they can).

    Args:
        cfg: the run's config.
        visible_gpus: CUDA GPUs this process sees (torch.cuda.device_count()).
        has_cuda: CUDA is usable.
    """
    p: list[str] = []
    n = resolve_num_processes(cfg, visible_gpus)
    config_file = cfg.accelerate_config_file
    if config_file and not Path(config_file).expanduser().is_file():
        p.append(
            f"accelerate_config_file: {config_file!r} is not a file; write one with `accelerate config` or "
            "leave it empty."
        )
    if n > 1 and has_cuda and n > visible_gpus and not config_file:
        p.append(
            f"num_processes: {n} but {visible_gpus} GPU(s) are visible; use at most {visible_gpus} (one process "
            "per GPU), 0 for all, or an accelerate_config_file for several machines."
        )
    if n > 1 and not has_cuda and cfg.distributed_strategy == FSDP:
        p.append(
            "distributed_strategy: fsdp needs CUDA GPUs (accelerate's FSDP plugin); on the CPU use ddp or auto."
        )
    if n > 1 and cfg.resume_from_checkpoint:
        p.append(
            "resume_from_checkpoint: resuming is supported with one process only for now; set num_processes "
            "to 1 or start a new run."
        )
    return p


def choose_strategy(
    cfg: TrainingConfig, spec: ModelSpec | None, n: int, gpu_gib: float | None
) -> StrategyChoice:
    """DDP when the whole model trains within one GPU, else FSDP; "single" for one process.

    Args:
        cfg: the run's config (distributed_strategy "ddp"/"fsdp" is taken as set).
        spec: model shape for the memory estimate (None: no estimate, DDP for auto).
        n: processes (from resolve_num_processes).
        gpu_gib: memory of one GPU in GiB, None on the CPU.
    """
    from core.vram import estimate_vram

    if n <= 1:
        return StrategyChoice(SINGLE, 1, "one process: training runs in the app's own thread.")
    if cfg.distributed_strategy in (DDP, FSDP):
        name = cfg.distributed_strategy.upper()
        return StrategyChoice(cfg.distributed_strategy, n, f"{name} over {n} processes, as set.")
    if gpu_gib is None or spec is None:
        cores = os.cpu_count() or 1
        crowded = f" {n} processes share {cores} CPU cores, so each runs slower." if n > cores else ""
        return StrategyChoice(
            DDP,
            n,
            f"DDP over {n} CPU processes (gloo): no CUDA GPU, and FSDP needs one; each process holds the model."
            + crowded,
        )
    est = estimate_vram(spec, cfg, cfg.method)
    if cfg.gradient_checkpointing == "auto" and est.total_gib > gpu_gib * HEADROOM:
        # each rank resolves "auto" as one process does (core.plan_report.resolve_gradient_checkpointing): with
        # checkpointing on, the replicated run may still fit one GPU, and DDP is the faster of the two
        est = estimate_vram(spec, cfg.replace(gradient_checkpointing=True), cfg.method)
    if est.total_gib <= gpu_gib * HEADROOM or cfg.load_in_8bit:
        why = "8-bit weights cannot be sharded" if est.total_gib > gpu_gib * HEADROOM else "fastest"
        return StrategyChoice(
            DDP,
            n,
            f"DDP over {n} GPUs: the whole {cfg.method.upper()} run needs {est.total_gib:.1f} GiB of each "
            f"{gpu_gib:g} GiB GPU ({why}; only gradients travel).",
        )
    sharded = estimate_per_gpu(est, spec, FSDP, n).total_gib
    return StrategyChoice(
        FSDP,
        n,
        f"FSDP over {n} GPUs: replicated, each GPU would need {est.total_gib:.1f} GiB of {gpu_gib:g} GiB; "
        f"sharding weights, gradients and optimizer states brings it to {sharded:.1f} GiB per GPU.",
    )


def estimate_per_gpu(est: VramEstimate, spec: ModelSpec, strategy: str, n: int) -> VramEstimate:
    """Peak memory of one GPU when ``est`` (a one-process estimate) runs over ``n`` processes with ``strategy``.

    DDP: every rank holds the whole model; the reducer adds gradient buckets the size of the trainable
    gradients. FSDP (full shard): weights, LoRA weights, gradients and optimizer states divided by n, plus one
    wrapped decoder layer gathered whole, twice (the current layer and the prefetched next), and the root unit
    (embeddings and head) gathered whole; the per-GPU peak is the larger of that and the moment the root unit is
    wrapped (held twice), measured before training. Activations and
    logits are per rank (each rank runs its own micro-batch). The allocator overhead keeps its ratio to the rest.

    Returns:
        A VramEstimate in GiB whose notes name the strategy; ``est`` itself for "single" or n <= 1.
    """
    if strategy == SINGLE or n <= 1:
        return est
    c = dict(est.components_gib)
    overhead = c.pop("allocator overhead", 0.0)
    context = c.pop("CUDA context", 0.0)
    old_subtotal = sum(c.values())
    if strategy == DDP:
        c["DDP gradient buckets"] = c.get("gradients", 0.0)
        note = f"DDP over {n} GPUs: each GPU holds the whole model; plus gradient buckets for the all-reduce."
    else:
        root = min(spec.embedding_params * 2 / GIB, c.get("weights", 0.0))  # 16-bit embeddings and head
        layer = (c.get("weights", 0.0) - root) / max(1, spec.num_hidden_layers)
        for key in ("weights", "LoRA weights", "gradients", "optimizer states"):
            c[key] = c.get(key, 0.0) / n
        c["FSDP gathered layers"] = 2 * layer
        c["FSDP gathered embeddings and head"] = root  # the root unit, outside every decoder layer
        note = (
            f"FSDP over {n} GPUs: weights, gradients and optimizer states / {n}; two decoder layers gathered "
            "whole at a time; activations per GPU."
        )
    ratio = (overhead - ALLOCATOR_FIXED_GIB) / old_subtotal if old_subtotal > 0 else 0.0
    c["allocator overhead"] = sum(c.values()) * ratio + ALLOCATOR_FIXED_GIB
    c["CUDA context"] = context
    if strategy == FSDP:
        # Measured on 2 H200s (bench/RESULTS.md, session 4; scripts/gpu_cap --mem-trace): the model loads on the
        # CPU (QLoRA quantizes there too, core.model) and FSDP moves one unit at a time; wrapping the root unit
        # (embeddings and head, outside every decoder layer) briefly holds it twice, unsharded. When that moment
        # needs more than training, it sets the per-GPU peak.
        root = c["FSDP gathered embeddings and head"]
        wrapping = c.get("weights", 0.0) + 2 * root + ALLOCATOR_FIXED_GIB + context
        if wrapping > sum(c.values()):
            c["FSDP wrapping (embeddings and head held twice)"] = wrapping - sum(c.values())
            note += f" Peak while wrapping the embeddings and head: {wrapping:.1f} GiB."
    return replace(est, components_gib=c, notes=(*est.notes, note))


def per_gpu_summary(
    cfg: TrainingConfig,
    spec: ModelSpec,
    estimates: dict[str, VramEstimate],
    recommended: str,
    n: int,
    gpu_gib: float,
) -> dict[str, Any]:
    """Memory per GPU when the recommended method (LoRA when nothing fits one GPU, to try sharding) runs over
    ``n`` GPUs of ``gpu_gib`` GiB, with the strategy auto would choose and why (``launch.py estimate``).

    Returns:
        {"method", "num_processes", "distributed_strategy", "reason", "total_gib", "components_gib"} (GiB).
    """
    method = recommended if recommended in ("lora", "qlora") else "lora"
    run_cfg = cfg.replace(num_processes=n, load_in_4bit=method == "qlora")
    choice = choose_strategy(run_cfg, spec, n, gpu_gib)
    shared = estimate_per_gpu(estimates[method], spec, choice.strategy, n)
    return {
        "method": method,
        "num_processes": n,
        "distributed_strategy": choice.strategy,
        "reason": choice.reason,
        "total_gib": shared.total_gib,
        "components_gib": shared.components_gib,
    }


def launcher_args(cfg: TrainingConfig, n: int, strategy: str, has_cuda: bool, port: int) -> list[str]:
    """``accelerate launch`` options for ``n`` processes with ``strategy`` (without the script).

    torchrun starts the ranks in both cases: ``--multi_gpu`` is accelerate's switch for it, also on the CPU, where
    each rank then joins a gloo group (``--cpu`` would start a single process without mpirun). A config file from
    ``accelerate config`` replaces these options (several machines: it names the main machine and the ranks).
    """
    if cfg.accelerate_config_file:
        return ["--config_file", str(Path(cfg.accelerate_config_file).expanduser())]
    args = ["--num_machines", "1", "--num_processes", str(n), "--dynamo_backend", "no"]
    args += ["--mixed_precision", "no", "--main_process_port", str(port)]  # the Trainer sets bf16 / fp16
    if strategy == FSDP and has_cuda:
        # The PEFT "FSDP with QLoRA" recipe: wrap decoder layers, load on rank 0 only and broadcast, keep flat
        # parameters (frozen base and trainable LoRA mixed within a wrapped layer need use_orig_params false).
        args += ["--use_fsdp", "--fsdp_sharding_strategy", "FULL_SHARD"]
        args += [
            "--fsdp_auto_wrap_policy",
            "TRANSFORMER_BASED_WRAP",
            "--fsdp_cpu_ram_efficient_loading",
            "true",
        ]
        args += ["--fsdp_sync_module_states", "true", "--fsdp_use_orig_params", "false"]
        args += ["--fsdp_state_dict_type", "FULL_STATE_DICT"]
    else:
        args += ["--multi_gpu"]
    return args


def worker_command(
    cfg: TrainingConfig, run_dir: Path, n: int, strategy: str, has_cuda: bool, port: int
) -> list[str]:
    """The argv the job runs: ``python -m accelerate.commands.launch OPTIONS launch.py train-worker RUN_DIR``."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        *launcher_args(cfg, n, strategy, has_cuda, port),
        str(LAUNCH_PY),
        "train-worker",
        str(run_dir),
    ]


def cli_command(cfg: TrainingConfig, config_path: str = "CONFIG.json") -> str:
    """The headless command equivalent to starting ``cfg`` in the UI (CONFIG.json holds the other fields)."""
    parts = ["python", "launch.py", "train", config_path]
    if cfg.num_processes != 0:
        parts += ["--num-processes", str(cfg.num_processes)]
    if cfg.distributed_strategy != "auto":
        parts += ["--distributed-strategy", cfg.distributed_strategy]
    if cfg.accelerate_config_file:
        parts += ["--accelerate-config", cfg.accelerate_config_file]
    return shlex.join(parts)
