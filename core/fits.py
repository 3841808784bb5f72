"""What fits on my GPU: every catalogue model x method, planned at the user's max_length and effective batch.

Offline: each model's shape comes from the catalogue (core.catalogue, built on the meta device, no network), each
cell from core.plan.plan_training restricted to one method. Pure arithmetic once the shapes are built (~6 s for
the whole catalogue on 2 CPU cores, cached for the process).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from core.config import TrainingConfig
from core.modelspec import ModelSpec
from core.plan import PLAN_METHODS, candidate_plans, plan_training
from core.vram import fit_status

SIZE_BANDS: dict[str, tuple[float, float]] = {
    "all sizes": (0.0, float("inf")),
    "under 3B": (0.0, 3.0),
    "3B-10B": (3.0, 10.0),
    "10B-30B": (10.0, 30.0),
    "over 30B": (30.0, float("inf")),
}


@dataclass(frozen=True)
class FitCell:
    """One model x method.

    Attributes:
        status: "fits" (a plan within 90% of the GPU), "tight" (the leanest plan within 105%: the estimate's
            spread makes it a maybe), "does not fit", or "not planned" (mixture-of-experts models).
        total_gib: the chosen plan's estimate, or the leanest plan's when nothing fits (GiB); 0 when not planned.
        plan: the chosen plan in words, or the reason nothing fits.
    """

    status: str
    total_gib: float
    plan: str


@dataclass(frozen=True)
class FitRow:
    """One catalogue model on one GPU.

    Attributes:
        hub_id: the model's hub id.
        family: e.g. "qwen2.5".
        params_b: parameters, billions (as the model card states).
        cells: {method: FitCell} for "lora", "lora8", "qlora".
        best: the fastest plan over all methods in words, or why nothing fits.
        best_method: that plan's method, or "none".
        gated: whether the hub asks users to accept terms first (None: unknown).
    """

    hub_id: str
    family: str
    params_b: float
    cells: dict[str, FitCell]
    best: str
    best_method: str
    gated: bool | None


@functools.cache
def catalogue_spec(hub_id: str) -> ModelSpec:
    """The ModelSpec of a catalogue model from the catalogue's facts alone (meta device; no network).

    Raises:
        KeyError: ``hub_id`` is not in the catalogue.
    """
    from core.catalogue import catalogue_config, catalogue_entry
    from core.model import spec_from_config

    entry = catalogue_entry(hub_id)
    if entry is None:
        raise KeyError(hub_id)
    return spec_from_config(
        catalogue_config(entry),
        entry.hub_id,
        has_chat_template=entry.has_chat_template,
        dtype=str(entry.config.get("torch_dtype") or "bfloat16"),
        source=f"catalogue {entry.read_on}",
    )


def fit_rows(
    cfg: TrainingConfig,
    gpu_gib: float,
    size_band: str = "all sizes",
    family: str = "all families",
    max_batch: int = 1024,
    max_accumulation: int = 1024,
) -> list[FitRow]:
    """Every catalogue model (filtered by ``size_band``, a SIZE_BANDS key, and ``family``) on a GPU of ``gpu_gib``
    GiB, smallest first, each method planned with ``cfg``'s max_length, effective batch, rank and targets.

    Raises:
        ValueError: gpu_gib is not above 0, or an unknown size band.
    """
    from core.catalogue import catalogue_entries, is_moe

    low, high = SIZE_BANDS[size_band]
    rows: list[FitRow] = []
    for entry in sorted(catalogue_entries(), key=lambda e: e.params):
        if not low <= entry.params_b < high or family not in ("all families", entry.family):
            continue
        # only max_length, the effective batch, the rank and the dtype are the user's: the rest is planned
        run_cfg = cfg.replace(
            model_name_or_path=entry.hub_id, lora_target_modules=(), gradient_checkpointing="auto"
        )
        if is_moe(entry):
            why = "mixture-of-experts: not planned (the dense estimate would be wrong)"
            cells = {m: FitCell("not planned", 0.0, why) for m in PLAN_METHODS}
            rows.append(FitRow(entry.hub_id, entry.family, entry.params_b, cells, why, "none", entry.gated))
            continue
        spec = catalogue_spec(entry.hub_id)
        cells = {}
        for method in PLAN_METHODS:
            result = plan_training(
                spec,
                run_cfg,
                gpu_gib,
                methods=(method,),
                alternatives=0,
                max_batch=max_batch,
                max_accumulation=max_accumulation,
            )
            if result.chosen is not None and not result.chosen.shortened:
                cells[method] = FitCell("fits", result.chosen.total_gib, result.chosen.describe(method=False))
            else:  # at the user's max_length: within the estimate's spread (tight) or not at all
                tries = candidate_plans(
                    spec, run_cfg, (method,), max_batch=max_batch, max_accumulation=max_accumulation
                )
                if not tries:  # no split of the effective batch within the limits
                    cells[method] = FitCell("does not fit", 0.0, result.reason)
                    continue
                leanest = min(tries, key=lambda p: p.total_gib)
                status = fit_status(leanest.total_gib, gpu_gib)
                cells[method] = FitCell(status, leanest.total_gib, result.reason)
        overall = plan_training(
            spec, run_cfg, gpu_gib, alternatives=0, max_batch=max_batch, max_accumulation=max_accumulation
        )
        rows.append(
            FitRow(
                entry.hub_id,
                entry.family,
                entry.params_b,
                cells,
                overall.chosen.describe() if overall.chosen else overall.reason,
                overall.method,
                entry.gated,
            )
        )
    return rows


def families() -> list[str]:
    """Family names in the catalogue, sorted, after "all families"."""
    from core.catalogue import catalogue_entries

    return ["all families", *sorted({e.family for e in catalogue_entries()})]
