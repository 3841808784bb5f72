"""The GPU memory planner: the fastest training plan that fits a GPU, from the estimate and measured step costs.

Pure arithmetic on top of core.vram (no torch import). A plan fixes the settings the user leaves free: the method
(LoRA on a 16-bit base, LoRA on an 8-bit base, QLoRA), gradient checkpointing, the micro-batch split of the
effective batch (``per_device_train_batch_size * gradient_accumulation_steps`` is kept), and the optimizer (torch
AdamW or bitsandbytes' paged 8-bit AdamW). ``max_length`` is never shortened silently: plans that need a shorter
one are marked ``shortened`` and offered after every plan at the user's length.

Plans are ordered by the estimated time of one optimizer step (``step_cost``), from the step times measured on an
H200 (bench/RESULTS.md, "session 5 · Planner inputs"): for each method and checkpointing setting a micro-batch
costs the larger of a floor (the host launching kernels) and a rate per token (the GPU's work), so splitting a
micro-batch is expensive where the floor dominates and checkpointing where the rate does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.config import TrainingConfig
from core.modelspec import ModelSpec
from core.presets import gpu_usable_gib, smallest_gpu_for
from core.step_cost import step_cost
from core.vram import HEADROOM, VramEstimate, estimate_vram, fit_status, lora_targets

PLAN_METHODS = ("lora", "lora8", "qlora")
METHOD_LABELS = {
    "lora": "LoRA (16-bit base)",
    "lora8": "LoRA on an 8-bit base",
    "qlora": "QLoRA (4-bit base)",
}
PAGED_OPTIM = "paged_adamw_8bit"

# When nothing fits at the user's max_length, the planner offers the longest multiple of LENGTH_STEP that does.
LENGTH_STEP = 64
# TrainingConfig's limits on per_device_train_batch_size and gradient_accumulation_steps (core.config_checks).
MAX_BATCH = 1024
MAX_ACCUMULATION = 1024


@dataclass(frozen=True)
class Plan:
    """One way to train that fits: the settings, their memory estimate and their relative speed.

    Attributes:
        method: "lora", "lora8" or "qlora".
        gradient_checkpointing: recompute activations in backward.
        per_device_train_batch_size: rows per micro-batch.
        gradient_accumulation_steps: micro-batches per optimizer step (batch x accumulation = the effective
            batch the user set).
        optim: "adamw_torch" or "paged_adamw_8bit" (or the user's own 8-bit choice).
        max_length: tokens per row; below the user's only when ``shortened``.
        estimate: the memory estimate of these settings (core.vram.estimate_vram).
        step_cost: estimated time of one optimizer step, ms on the H200 it was measured on (see step_cost).
        relative_time: step_cost over the fastest plan's (1.0 for the fastest; 1.4 = 40% slower).
        status: "fits" (within 90% of the GPU) for every offered plan.
        shortened: max_length is below the user's (rows longer than it are cut).
    """

    method: str
    gradient_checkpointing: bool
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    optim: str
    max_length: int
    estimate: VramEstimate
    step_cost: float
    relative_time: float = 1.0
    status: str = "fits"
    shortened: bool = False

    @property
    def total_gib(self) -> float:
        """Estimated peak GPU memory, GiB."""
        return self.estimate.total_gib

    def config_fields(self) -> dict[str, Any]:
        """The TrainingConfig fields this plan sets, by Hugging Face name."""
        return {
            "load_in_4bit": self.method == "qlora",
            "load_in_8bit": self.method == "lora8",
            "gradient_checkpointing": self.gradient_checkpointing,
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "optim": self.optim,
            "max_length": self.max_length,
        }

    def apply(self, cfg: TrainingConfig) -> TrainingConfig:
        """``cfg`` with this plan's fields (validated). Raises ConfigError."""
        return cfg.replace(**self.config_fields())

    def changes(self, cfg: TrainingConfig) -> list[str]:
        """Human-readable "field: old -> new" for each field this plan changes in ``cfg``."""
        before = cfg.to_dict()
        return [
            f"{name}: {_show(before[name])} -> {_show(value)}"
            for name, value in self.config_fields().items()
            if before[name] != value
        ]

    def describe(self, method: bool = True) -> str:
        """One line: method (unless ``method`` is False), checkpointing, micro-batch x accumulation, optimizer,
        length, memory."""
        parts = [METHOD_LABELS[self.method]] if method else []
        parts += [
            f"checkpointing {'on' if self.gradient_checkpointing else 'off'}",
            f"micro-batch {self.per_device_train_batch_size} x {self.gradient_accumulation_steps} accumulation",
        ]
        if self.optim != "adamw_torch":
            parts.append(self.optim)
        if self.shortened:
            parts.append(f"max_length {self.max_length} (shortened)")
        return ", ".join(parts) + f": {self.total_gib:.1f} GiB"


@dataclass(frozen=True)
class PlanResult:
    """The planner's answer for one model, settings and GPU.

    Attributes:
        gpu_gib: the GPU's usable memory, GiB.
        budget_gib: 90% of it (core.vram.HEADROOM), what a plan may use.
        plans: the fastest plan first, then up to ``alternatives`` others that differ in method or
            checkpointing, fastest first; plans with a shortened max_length come after all others.
        reason: why the first plan was chosen, or why nothing fits, with the numbers.
        smallest_gpu: when nothing fits, the smallest catalogue GPU on which the leanest plan would fit (name),
            or "" when none would.
    """

    gpu_gib: float
    budget_gib: float
    plans: tuple[Plan, ...]
    reason: str
    smallest_gpu: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def chosen(self) -> Plan | None:
        """The recommended plan, or None when nothing fits."""
        return self.plans[0] if self.plans else None

    @property
    def method(self) -> str:
        """The chosen plan's method, or "none"."""
        return self.plans[0].method if self.plans else "none"

    def to_dict(self, cfg: TrainingConfig) -> dict[str, Any]:
        """JSON-ready: the chosen plan as TrainingConfig fields (``config``), and every plan's facts."""
        chosen = self.chosen
        return {
            "gpu_gib": self.gpu_gib,
            "budget_gib": self.budget_gib,
            "method": self.method,
            "reason": self.reason,
            "smallest_gpu": self.smallest_gpu or None,
            "config": chosen.apply(cfg).to_dict() if chosen else None,
            "plans": [
                {
                    **p.config_fields(),
                    "method": p.method,
                    "total_gib": round(p.total_gib, 3),
                    "relative_time": round(p.relative_time, 3),
                    "shortened": p.shortened,
                    "changes": p.changes(cfg),
                }
                for p in self.plans
            ],
        }


def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def is_moe(spec: ModelSpec) -> bool:
    """Whether ``spec`` is a mixture-of-experts model (by config.model_type: core.catalogue.MOE_MODEL_TYPES)."""
    from core.catalogue import is_moe as catalogue_is_moe

    return catalogue_is_moe(spec)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def candidate_plans(
    spec: ModelSpec,
    cfg: TrainingConfig,
    methods: tuple[str, ...] = PLAN_METHODS,
    checkpointing: tuple[bool, ...] = (False, True),
    split_batch: bool = True,
    optims: tuple[str, ...] | None = None,
    max_length: int | None = None,
    max_batch: int = MAX_BATCH,
    max_accumulation: int = MAX_ACCUMULATION,
) -> list[Plan]:
    """Every combination of the free settings with its estimate and step cost (fitting or not), unsorted.

    Args:
        spec: the model's shape.
        cfg: the user's settings; its effective batch (batch x accumulation) is kept.
        methods: methods to consider.
        checkpointing: checkpointing settings to consider.
        split_batch: try every divisor of the effective batch as the micro-batch (else only the user's).
        optims: optimizers to consider (default: torch AdamW, paged 8-bit AdamW and the user's).
        max_length: tokens per row (default: the user's).
        max_batch, max_accumulation: the largest micro-batch and accumulation a plan may set (TrainingConfig's
            limits by default; the UI passes its sliders' maxima so an applied plan always fits the form).
    """
    length = max_length or cfg.max_length
    effective = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    batches = [
        b
        for b in (_divisors(effective) if split_batch else [cfg.per_device_train_batch_size])
        if b <= max_batch and effective // b <= max_accumulation
    ]
    optim_choices = optims or tuple(dict.fromkeys((cfg.optim, "adamw_torch", PAGED_OPTIM)))
    out: list[Plan] = []
    for method in methods:
        for ckpt in checkpointing:
            for batch in batches:
                accumulation = effective // batch
                for optim in optim_choices:
                    trial = TrainingConfig(
                        **{
                            **{k: getattr(cfg, k) for k in TrainingConfig.field_names()},
                            "load_in_4bit": method == "qlora",
                            "load_in_8bit": method == "lora8",
                            "gradient_checkpointing": ckpt,
                            "per_device_train_batch_size": batch,
                            "gradient_accumulation_steps": accumulation,
                            "optim": optim,
                            "max_length": length,
                        }
                    )
                    # upcast_non_quantized=False: the engine keeps norms and embeddings of a k-bit base in 16 bit
                    est = estimate_vram(spec, trial, method, upcast_non_quantized=False)
                    out.append(
                        Plan(
                            method=method,
                            gradient_checkpointing=ckpt,
                            per_device_train_batch_size=batch,
                            gradient_accumulation_steps=accumulation,
                            optim=optim,
                            max_length=length,
                            estimate=est,
                            step_cost=step_cost(
                                method,
                                ckpt,
                                batch * length,
                                accumulation,
                                optim,
                                spec.num_params,
                                spec.num_hidden_layers,
                            ),
                            shortened=length < cfg.max_length,
                        )
                    )
    return out


def _order_key(plan: Plan, cfg: TrainingConfig) -> tuple[float, int, int]:
    # fastest first; on a tie, the user's own optimizer and the larger micro-batch
    return (round(plan.step_cost, 6), int(plan.optim != cfg.optim), -plan.per_device_train_batch_size)


def plan_training(
    spec: ModelSpec,
    cfg: TrainingConfig,
    gpu_gib: float,
    methods: tuple[str, ...] | None = None,
    checkpointing: bool | str | None = None,
    split_batch: bool = True,
    alternatives: int = 3,
    max_batch: int = MAX_BATCH,
    max_accumulation: int = MAX_ACCUMULATION,
) -> PlanResult:
    """The fastest plan that fits ``gpu_gib`` (within 90%), with up to ``alternatives`` others.

    Args:
        spec: the model's shape (config only).
        cfg: the user's settings. Its effective batch and max_length are kept; the method, checkpointing,
            micro-batch and optimizer are searched unless fixed below.
        gpu_gib: usable GPU memory, GiB.
        methods: the methods to consider (default all three; pass ``(cfg.method,)`` to keep the user's).
        checkpointing: True / False to fix it; None or "auto" to search (default: ``cfg.gradient_checkpointing``
            when it is True or False, else searched).
        split_batch: search the micro-batch split of the effective batch.
        alternatives: how many other plans to list after the chosen one.
        max_batch, max_accumulation: the largest micro-batch and accumulation steps a plan may set.

    Returns:
        PlanResult. When nothing fits at the user's max_length but does at a shorter one, those plans are
        offered (marked ``shortened``) and the reason says so; when nothing fits at all, ``plans`` is empty and
        ``smallest_gpu`` names the smallest catalogue GPU that would do.

    Raises:
        ValueError: gpu_gib is not above 0.
    """
    if not gpu_gib > 0:
        raise ValueError(f"gpu_gib {gpu_gib} must be above 0")
    budget = gpu_gib * HEADROOM
    wanted = cfg.gradient_checkpointing if checkpointing is None else checkpointing
    ckpts: tuple[bool, ...] = (wanted,) if isinstance(wanted, bool) else (False, True)
    chosen_methods = methods or PLAN_METHODS
    if is_moe(spec):
        return PlanResult(
            gpu_gib,
            budget,
            (),
            f"{spec.model_name_or_path} is a mixture-of-experts model ({spec.model_type}): its experts are not "
            "the dense per-layer linear layers this estimator counts, and only a few run per token, so the "
            "estimate would be wrong. LoRA Studio does not plan it; pick a dense model.",
        )
    n_lora = spec.lora_params(cfg.lora_r, lora_targets(spec, cfg))
    if n_lora >= spec.num_params:
        return PlanResult(
            gpu_gib,
            budget,
            (),
            f"At lora_r {cfg.lora_r} LoRA trains {n_lora / 1e6:,.1f} M parameters, not fewer than the model's "
            f"{spec.num_params / 1e6:,.1f} M, so it is no longer low-rank. Lower lora_r (the textbook suggests "
            "4-64).",
        )

    def fitting_at(length: int | None) -> list[Plan]:
        return [
            p
            for p in candidate_plans(
                spec, cfg, chosen_methods, ckpts, split_batch, None, length, max_batch, max_accumulation
            )
            if p.total_gib <= budget
        ]

    every = candidate_plans(
        spec, cfg, chosen_methods, ckpts, split_batch, None, None, max_batch, max_accumulation
    )
    if not every:
        return PlanResult(
            gpu_gib,
            budget,
            (),
            f"No split of the effective batch ({cfg.per_device_train_batch_size} x "
            f"{cfg.gradient_accumulation_steps}) keeps the micro-batch within {max_batch} and the accumulation "
            f"within {max_accumulation}; lower per_device_train_batch_size x gradient_accumulation_steps.",
        )
    fitting = [p for p in every if p.total_gib <= budget]
    shortened: list[Plan] = []
    if not fitting:  # the longest max_length (a multiple of LENGTH_STEP) at which some plan fits
        low, high = 0, min(cfg.max_length - 1, spec.max_position_embeddings or cfg.max_length) // LENGTH_STEP
        while low < high:
            mid = (low + high + 1) // 2
            if fitting_at(mid * LENGTH_STEP):
                low = mid
            else:
                high = mid - 1
        if low:
            shortened = fitting_at(low * LENGTH_STEP)
    pool = fitting or shortened
    if not pool:
        leanest = min(every, key=lambda p: p.total_gib)
        gpu = smallest_gpu_for(leanest.total_gib)
        where = (
            f"It would fit on an {gpu} ({gpu_usable_gib(gpu):g} GiB usable)."
            if gpu
            else "No single GPU in the catalogue is large enough."
        )
        return PlanResult(
            gpu_gib,
            budget,
            (),
            f"Nothing fits {gpu_gib:g} GiB (limit {budget:.1f} GiB at 90%): the leanest plan, "
            f"{leanest.describe()}, of which the weights alone are "
            f"{leanest.estimate.components_gib['weights']:.1f} GiB. {where}",
            smallest_gpu=gpu,
        )
    best: dict[tuple[str, bool], Plan] = {}
    for p in sorted(pool, key=lambda p: _order_key(p, cfg)):
        best.setdefault((p.method, p.gradient_checkpointing), p)
    ranked = list(best.values())[: 1 + alternatives]
    fastest = ranked[0].step_cost
    ranked = [
        Plan(
            **{
                **p.__dict__,
                "relative_time": p.step_cost / fastest,
                "status": fit_status(p.total_gib, gpu_gib),
            }
        )
        for p in ranked
    ]
    top = ranked[0]
    if shortened:
        reason = (
            f"Nothing fits {gpu_gib:g} GiB at max_length {cfg.max_length}; with max_length {top.max_length} "
            f"(longer rows are cut) the fastest plan is {top.describe()}."
        )
    else:
        reason = f"Fastest plan within {budget:.1f} GiB (90% of {gpu_gib:g} GiB): {top.describe()}."
        slower = [p for p in every if p.step_cost < top.step_cost and p.total_gib > budget]
        if slower:
            faster = min(slower, key=lambda p: p.total_gib)  # the closest call among the faster plans
            reason += f" Faster plans need more: the leanest of them, {faster.describe()}, is over the limit."
    return PlanResult(gpu_gib, budget, tuple(ranked), reason)
