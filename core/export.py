"""Adapter and merged exports, each written to a staging folder, verified, then moved into place.

A merged export reloads the base in 16-bit (never the 4-bit QLoRA weights), merges W' = W + (alpha/r) B A with
peft's ``merge_and_unload``, saves safetensors + tokenizer + chat template, and proves the result: the reloaded
merged model's logits must match base+adapter (computed unmerged in float32) within a bound set by the saved dtype's rounding (``MERGE_TOLERANCE_EPS``) and must
differ from the base's.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.disk import check_free_space
from core.errors import ExportError
from core.export_files import (
    CHECKPOINT_STATE,
    adapter_export_bytes,
    deleted_message,
    destination,
    folder_size,
    merged_export_bytes,
    staged,
    zip_export,
)
from core.export_memory import adapter_params_in, check_merge_memory, estimate_merge_memory
from core.export_source import last_complete_checkpoint, run_info
from core.export_verify import (
    PROBE_PROMPT,
    adapter_checks,
    check,
    check_memory,
    fail_on,
    verify_adapter_loads,
)
from core.model import holding_model_lock
from core.modelcard import is_hub_id, shown_name
from core.runs import publish_dir, write_json_atomic

log = logging.getLogger(__name__)

__all__ = ["ExportResult", "export_adapter", "export_merged", "last_complete_checkpoint"]

# Verification of a merged export: the reloaded merged model is compared with base+adapter evaluated unmerged in
# float32, on a probe prompt, in units of the reference logits' standard deviation. Saving W + (alpha/r) B A in a
# 16-bit dtype rounds every weight (relative step eps = 2**-8 for bfloat16, 2**-11 for float16), and that alone
# moves logits: measured on SmolLM2-135M after 10-20 LoRA steps, bfloat16 gives mean |dlogit| = 0.027-0.028 x std,
# i.e. ~7 eps (bench/RESULTS.md). The bound is MERGE_TOLERANCE_EPS x eps of the saved dtype (0.0625 x std for
# bfloat16); a wrong merge (scale, missing module, wrong base) moves logits by whole units. The merged model must
# also differ from the base by more than the merge's own rounding, else the adapter's effect is lost in rounding.
MERGE_TOLERANCE_EPS = 16
MERGE_TOLERANCE_FLOOR = 1e-4  # float32 merged vs unmerged differ by ~2e-6 x std (summation order), never 0
MERGED_DTYPES = ("auto", "bfloat16", "float16", "float32")


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and how it was checked.

    Attributes:
        kind: "merged" or "adapter".
        path: the export folder.
        zip_path: a zip of that folder, for download ("" when none was written: see zip_note).
        mean_abs_diff_vs_reference: mean |merged - (base+adapter)| logit difference / logit std (merged only).
        mean_abs_diff_vs_base: mean |merged - base| logit difference / logit std (merged), or max |B| (adapter).
        top1_agreement: share of probe positions where merged and base+adapter pick the same next token.
        tolerance: the bound the first number had to stay under.
        size_bytes: total bytes of the export folder.
        tensors: LoRA tensors in the adapter (adapter exports).
        note: where the adapter came from when it was not the run's final ``adapter/`` (an interrupted run's
            last checkpoint), else "".
        zip_note: why there is no zip ("" when there is one): over ZIP_LIMIT_BYTES, or not enough disk for it
            (with the MB figures); the verified folder is there either way.
    """

    kind: str
    path: str
    zip_path: str
    mean_abs_diff_vs_reference: float | None
    mean_abs_diff_vs_base: float
    top1_agreement: float | None
    tolerance: float | None
    size_bytes: int
    tensors: int = 0
    note: str = ""
    zip_note: str = ""

    def summary(self) -> str:
        """One line for the UI / CLI (ending with why there is no zip, when there is none)."""
        note = f"{self.note[:1].upper()}{self.note[1:]}. " if self.note else ""
        return self._what(note) + (f" {self.zip_note}" if self.zip_note else "")

    def _what(self, note: str) -> str:
        size = f"{self.size_bytes / 2**20:,.1f} MiB"
        if self.kind == "merged":
            return note + (
                f"Merged model saved to {self.path} ({size}). Verified on a probe prompt: reloaded logits match "
                f"base+adapter (mean |Δ| = {self.mean_abs_diff_vs_reference:.4f} x std, tolerance "
                f"{self.tolerance:.4f}; same top-1 token at {100 * (self.top1_agreement or 0):.1f}% of positions) "
                f"and differ from the base (mean |Δ| = {self.mean_abs_diff_vs_base:.4f} x std)."
            )
        return note + (
            f"Adapter saved to {self.path} ({self.tensors} tensors, {size}); verified: it loads with "
            f"PeftModel.from_pretrained on the base and changes it (max |B| = {self.mean_abs_diff_vs_base:.4g})."
        )


def _folder_id(folder: Path) -> tuple[int, int] | None:
    """(device, inode) of ``folder``, None when it does not exist: a deleted and re-created folder differs."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_run_folder(run_dir: Path, ident: tuple[int, int] | None) -> None:
    """Raise ExportError (deleted_message) unless ``run_dir`` is still the folder ``ident`` (_folder_id) was
    taken of, with its config.json: called before the model card is written and before publishing."""
    if ident is None or _folder_id(run_dir) != ident or not (run_dir / "config.json").is_file():
        raise ExportError(deleted_message(run_dir))


def _guarded(run_dir: str | Path, work: Callable[[], ExportResult]) -> ExportResult:
    """``work()``; when it fails because the run folder went away meanwhile (deleted by another process: a
    write into its vanished staging folder, or check_run_folder), the error says so, and a run folder that a
    writer re-created (os.makedirs of the staging path) is removed again when empty: never left as a broken run.

    The run folder is held open meanwhile, so its inode cannot be reused: a folder deleted and re-created under
    the same name always has another identity (_folder_id), which check_run_folder and this function compare.
    """
    folder = Path(run_dir).expanduser().resolve()
    try:
        handle: int | None = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # missing (run_info says so), or a system that cannot open folders
        handle = None
    ident = _folder_id(folder)
    try:
        return work()
    except Exception as exc:
        if ident is None or _folder_id(folder) == ident:
            raise
        try:
            os.rmdir(
                folder
            )  # only an empty folder: whatever a writer re-created, its staging already removed
        except OSError:
            pass
        raise ExportError(deleted_message(folder)) from exc
    finally:
        if handle is not None:
            os.close(handle)


def portable_base(base: str) -> tuple[str, str]:
    """The base model as an export names it in adapter_config.json's ``base_model_name_or_path``, and a note.

    Args:
        base: the run's config.json ``model_name_or_path`` (what the user chose).

    Returns:
        (the hub id unchanged, ""), or for a local folder (its folder name only, never the absolute path; a note
        telling the user to set the base's path or hub id there, or to pass the base to PeftModel.from_pretrained).
    """
    if is_hub_id(base):
        return base, ""
    name = shown_name(base)
    return name, (
        f"the base is a local folder, so adapter_config.json names it by its folder name {name!r} only: set "
        "base_model_name_or_path to its path or hub id before sharing, or load the base yourself and pass it to "
        "PeftModel.from_pretrained"
    )


def write_portable_adapter_config(folder: Path, base: str) -> dict[str, Any]:
    """Rewrite ``folder/adapter_config.json`` with ``base_model_name_or_path`` = portable_base(base) (peft saved
    the resolved local path of the base, e.g. the packaged copy under ~/.cache/lora-studio); returns the
    verification check saying what it names."""
    name, note = portable_base(base)
    path = folder / "adapter_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg["base_model_name_or_path"] = name
    write_json_atomic(path, cfg)
    detail = f"adapter_config.json names the base {name!r}" + (f"; {note}" if note else " (its hub id)")
    return check("base model named without local paths", True, detail)


def _reference_dtype(num_params: int, device: str, available_gib: float | None = None) -> Any:
    """float32 for the base+adapter reference when it fits in 60% of the available memory, else bfloat16.

    ``available_gib`` None measures it (core.export_memory.available_memory_gib: MemAvailable within the cgroup
    limit on the CPU, free + cached on the GPU).
    """
    import torch

    from core.export_memory import available_memory_gib, verifies_in_float32

    free_gib = available_memory_gib(device) if available_gib is None else available_gib
    return torch.float32 if verifies_in_float32(num_params, free_gib) else torch.bfloat16


def _release_memory() -> None:
    """Give a freed model copy back before the next one loads, so the copies never add up.

    ``gc.collect`` drops reference cycles; glibc's ``malloc_trim(0)`` returns the freed pages of every arena to the
    kernel. Without it glibc kept the freed float32 reference in its per-thread arenas and the verification reload
    came on top (SmolLM2-135M on the CPU: 1,020 MiB anonymous peak instead of 554 MiB; bench/RESULTS.md). A no-op
    beyond gc where the C library has no malloc_trim (macOS, musl).
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass


def export_adapter(run_dir: str | Path, out: str | Path | None = None) -> ExportResult:
    """Copy the run's adapter to ``out`` (default ``RUN_DIR/adapter-export``), verify it and zip it.

    Checks (written to ``verification.json`` and the model card): the files are present; there is more than zero
    LoRA tensor and every target module of adapter_config.json has LoRA A and B tensors; every weight is finite;
    some B is non-zero; the adapter loads with ``PeftModel.from_pretrained`` on the base and changes its logits.
    The exported adapter_config.json names the base portably (portable_base: the hub id, or a local base's folder
    name only); verification.json holds folder names, never absolute paths. The run is marked in use
    (core.run_admin.in_use) while it is exported, so it cannot be deleted meanwhile.

    Raises:
        ExportError: no adapter, ``out`` already exists, a check failed (each failure named), or the run folder
            was deleted meanwhile (nothing written; its folder never re-created).
        DiskFullError: the disk cannot hold the adapter's files (refused before writing), or filled while
            writing (the staging folder is removed); MB free and needed in the message.
    """
    from core.run_admin import BEING_EXPORTED, in_use

    with in_use(run_dir, BEING_EXPORTED):
        return _guarded(run_dir, lambda: _export_adapter(run_dir, out))


@holding_model_lock
def _export_adapter(run_dir: str | Path, out: str | Path | None) -> ExportResult:
    import torch

    from core.model import refuse_custom_code, resolve_model_path
    from core.modelcard import card_name, write_model_card

    run_dir = Path(run_dir).resolve()
    ident = _folder_id(run_dir)
    cfg, adapter, note = run_info(run_dir)
    final = destination(run_dir, out, "adapter-export")
    base_path = resolve_model_path(cfg["model_name_or_path"])
    refuse_custom_code(base_path, shown_as=cfg["model_name_or_path"])  # before anything is written
    device = "cuda" if torch.cuda.is_available() else "cpu"
    check_memory(base_path, 2, device)
    with staged(final, adapter_export_bytes(adapter), "adapter export") as tmp:
        shutil.copytree(adapter, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*CHECKPOINT_STATE))
        checks, tensors, size, max_b = adapter_checks(tmp, tmp, shown_as=adapter)
        checks.append(write_portable_adapter_config(tmp, str(cfg["model_name_or_path"])))
        verify_adapter_loads(base_path, tmp, device, checks)  # loads the rewritten config, the base given
        fail_on(checks, tmp)
        verification = {"kind": "adapter", "checks": checks, "tensors": tensors, "bytes": size}
        if note:
            verification["source"] = note
        check_run_folder(run_dir, ident)  # the card reads the run's files: never "fine-tune of unknown"
        write_json_atomic(tmp / "verification.json", {**verification, "run_dir": run_dir.name})
        write_model_card(tmp, run_dir, "adapter", verification, card_name(final, run_dir))
        check_run_folder(run_dir, ident)
        publish_dir(tmp, final)
    zip_path, zip_note = zip_export(final)
    return ExportResult(
        "adapter", str(final), zip_path, None, max_b, None, None, folder_size(final), tensors, note, zip_note
    )


def export_merged(
    run_dir: str | Path,
    out: str | Path | None = None,
    dtype: str = "auto",
    max_shard_size: str = "5GB",
    available_gib: float | None = None,
) -> ExportResult:
    """Merge the run's adapter into a 16-bit copy of its base, save, verify and zip.

    Before anything loads or is written, the memory the merge needs (core.export_memory.estimate_merge_memory: one
    16-bit copy of the base, the adapter, runtime) is checked against what the merge device has, and the export is
    refused with the numbers when it does not fit (a merge that runs out of RAM is killed without a message).

    Args:
        run_dir: a run folder with config.json and adapter/.
        out: destination folder (default ``RUN_DIR/merged``, numbered if taken); must not exist.
        dtype: saved dtype: "auto" (the base checkpoint's 16-bit dtype, bfloat16 otherwise), "bfloat16",
            "float16", or "float32" (exact, twice the size; for adapters too small to survive 16-bit rounding).
        max_shard_size: largest safetensors file, e.g. "2GB" or "5GB" (transformers' save_pretrained argument).
        available_gib: memory the merge may use, GiB; None measures it (core.export_memory.available_memory_gib).
            Tests pass a small number to see the refusal.

    Returns:
        ExportResult with the measured logit differences.

    Raises:
        ExportError: missing adapter, not enough memory, destination exists, verification failed (numbers in
            the message), or the run folder was deleted meanwhile (nothing written; its folder never re-created).
        DiskFullError: the disk cannot hold the merged weights (core.export_files.merged_export_bytes; refused
            before any model loads), or filled while writing (the staging folder is removed, earlier exports
            stay); MB free and needed in the message.

    The run is marked in use (core.run_admin.in_use) while it is exported, so it cannot be deleted meanwhile;
    verification.json holds folder names, never absolute paths.
    """
    from core.run_admin import BEING_EXPORTED, in_use

    with in_use(run_dir, BEING_EXPORTED):
        return _guarded(run_dir, lambda: _export_merged(run_dir, out, dtype, max_shard_size, available_gib))


@holding_model_lock
def _export_merged(
    run_dir: str | Path,
    out: str | Path | None,
    dtype: str,
    max_shard_size: str,
    available_gib: float | None,
) -> ExportResult:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from core.model import SAFE_LOAD, inspect_model, load_tokenizer, resolve_model_path
    from core.modelcard import card_name, write_model_card
    from core.tokenization import ensure_chat_template

    if dtype not in MERGED_DTYPES:
        raise ExportError(f"dtype {dtype!r} is not one of {MERGED_DTYPES}.")
    run_dir = Path(run_dir).resolve()
    ident = _folder_id(run_dir)
    cfg, adapter, note = run_info(run_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # the base's config on the meta device: no weights downloaded or loaded before the memory check
    spec = inspect_model(cfg["model_name_or_path"])
    need = estimate_merge_memory(spec, dtype, device, adapter_params_in(adapter))
    available_gib = check_merge_memory(need, available_gib)
    log.info(
        "Merge needs about %.2f GiB of %s; %.2f GiB available", need.total_gib, need.where, available_gib
    )
    final = destination(run_dir, out, "merged")
    adapter_report, *_ = adapter_checks(
        adapter, None
    )  # the run's adapter: tensors, coverage, finite, B moved
    base_path = resolve_model_path(cfg["model_name_or_path"])
    tokenizer = load_tokenizer(base_path)
    ensure_chat_template(tokenizer)
    if dtype == "auto":
        stored = json.loads((Path(base_path) / "config.json").read_text(encoding="utf-8"))
        stored_dtype = stored.get("dtype") or stored.get("torch_dtype")
        dtype = stored_dtype if stored_dtype in ("bfloat16", "float16") else "bfloat16"
        if device == "cuda" and dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
            dtype = "float16"  # what this GPU computes in (T4, V100)
    save_dtype = getattr(torch, dtype)
    # the disk, before any model loads: every parameter in the saved dtype, the tokenizer, the card
    need_bytes = merged_export_bytes(spec.num_params, dtype, base_path)
    check_free_space(final.parent, need_bytes, "merged export")
    # finfo.eps is 2x the relative step; the floor covers float32 re-association (merged vs unmerged matmuls).
    tolerance = max(MERGE_TOLERANCE_EPS * torch.finfo(save_dtype).eps / 2, MERGE_TOLERANCE_FLOOR)
    encoded: Any = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROBE_PROMPT}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    probe = encoded["input_ids"].to(device)

    def logits(model: Any) -> torch.Tensor:
        with torch.no_grad():
            return model(input_ids=probe).logits.float().cpu()

    # Reference: base + adapter unmerged, in float32 (exact W x + (alpha/r) B A x up to fp32 rounding).
    ref_dtype = _reference_dtype(spec.num_params, device, available_gib)
    log.info("Computing base and base+adapter reference logits in %s", ref_dtype)
    ref_model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(
            base_path, dtype=ref_dtype, device_map={"": device}, **SAFE_LOAD
        ),
        adapter,
    )
    ref_model.eval()
    ref = logits(ref_model)
    with ref_model.disable_adapter():
        base = logits(ref_model)
    del ref_model
    _release_memory()

    log.info("Merging into a %s copy of the base", save_dtype)
    merged = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(
            base_path, dtype=save_dtype, device_map={"": device}, **SAFE_LOAD
        ),
        adapter,
    ).merge_and_unload()
    with staged(final, need_bytes, "merged export") as tmp:
        merged.config.name_or_path = final.name
        merged.config.use_cache = True  # training switched the KV cache off; generation wants it back
        if merged.generation_config is not None:
            merged.generation_config.use_cache = True
        merged.save_pretrained(tmp, max_shard_size=max_shard_size)
        tokenizer.padding_side = "left"  # what generation wants
        tokenizer.save_pretrained(tmp)
        del merged
        _release_memory()
        reloaded = AutoModelForCausalLM.from_pretrained(
            tmp, dtype=ref_dtype, device_map={"": device}, **SAFE_LOAD
        )
        reloaded.eval()
        got = logits(reloaded)
        del reloaded
        _release_memory()
        std = float(ref.std())
        diff_ref = float((got - ref).abs().mean()) / std
        diff_base = float((got - base).abs().mean()) / std
        top1 = float((got.argmax(-1) == ref.argmax(-1)).float().mean())
        if not all(math.isfinite(v) for v in (diff_ref, diff_base, std)):
            raise ExportError(
                "The merged model's logits are not finite (NaN/inf): the adapter holds NaN weights, "
                "usually from a diverged run (learning rate too high). Nothing was written."
            )
        if diff_ref > tolerance:
            raise ExportError(
                f"Merged model does not match base+adapter: mean |Δlogit| = {diff_ref:.4f} x std, "
                f"more than the {dtype} rounding bound {tolerance:.4f}. Nothing was written."
            )
        if diff_base <= diff_ref:
            raise ExportError(
                f"The adapter's effect (mean |Δlogit| vs base {diff_base:.4g} x std) is lost in {dtype} "
                f"rounding ({diff_ref:.4g} x std). Export with dtype float32, or train for more steps."
            )
        result = ExportResult(
            "merged", str(final), "", diff_ref, diff_base, top1, tolerance, folder_size(tmp)
        )
        files = sorted(p.name for p in tmp.iterdir())
        has_weights = any(n.endswith(".safetensors") for n in files)
        checks = [
            check(
                "files written",
                has_weights and "config.json" in files,
                f"{', '.join(files)} written"
                if has_weights and "config.json" in files
                else f"{'no *.safetensors weights' if not has_weights else 'no config.json'} among "
                f"{', '.join(files)}: save_pretrained did not write the model; nothing was published",
            ),
            check("reloads with AutoModelForCausalLM", True, f"from {final.name}"),
            check(
                "matches base+adapter",
                diff_ref <= tolerance,
                f"mean |Δlogit| {diff_ref:.4f} x std <= {tolerance:.4f}; top-1 agreement {100 * top1:.1f}%",
            ),
            check(
                "differs from the base", diff_base > diff_ref, f"mean |Δlogit| vs base {diff_base:.4f} x std"
            ),
        ]
        verification = {
            **asdict(result),
            "path": final.name,
            "checks": checks,
            "run_dir": run_dir.name,
            "base": portable_base(str(cfg["model_name_or_path"]))[0],
            "dtype": str(save_dtype).replace("torch.", ""),
            "max_shard_size": max_shard_size,
            **({"source": note} if note else {}),
        }
        check_run_folder(run_dir, ident)  # the card reads the run's files: never "fine-tune of unknown"
        write_json_atomic(tmp / "verification.json", verification)
        write_model_card(tmp, run_dir, "merged", verification, card_name(final, run_dir))
        check_run_folder(run_dir, ident)
        publish_dir(tmp, final)
    zip_path, zip_note = zip_export(final)
    return ExportResult(
        "merged",
        str(final),
        zip_path,
        diff_ref,
        diff_base,
        top1,
        tolerance,
        folder_size(final),
        note=note,
        zip_note=zip_note,
    )
