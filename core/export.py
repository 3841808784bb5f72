"""Adapter and merged exports, each written to a staging folder, verified, then moved into place.

A merged export reloads the base in 16-bit (never the 4-bit QLoRA weights), merges W' = W + (alpha/r) B A with
peft's ``merge_and_unload``, saves safetensors + tokenizer + chat template, and proves the result: the reloaded
merged model's logits must match base+adapter (computed unmerged in float32) within ``MERGE_TOLERANCE`` and must
differ from the base's.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.errors import ExportError
from core.runs import publish_dir, staging_dir, write_json_atomic

log = logging.getLogger(__name__)

# Verification bounds for a merged export, comparing the reloaded merged model with base+adapter evaluated unmerged
# in float32. Saving W + (alpha/r) B A in bfloat16 rounds every weight (relative step 2**-8), which on its own moves
# logits: measured on SmolLM2-135M after 20 LoRA steps, mean |dlogit| = 0.14 = 0.020 x the logits' standard
# deviation (7.25), top-1 agreement 100% (bench/RESULTS.md). A wrong merge (scale, missing module) or a merge into
# the wrong base moves logits by whole units. Bounds: mean |dlogit| <= MERGE_TOLERANCE x std and top-1 agreement
# >= MIN_TOP1_AGREEMENT; and the merged model must differ from the base (mean |dlogit| vs base > merge error).
MERGE_TOLERANCE = 0.05
MIN_TOP1_AGREEMENT = 0.98
PROBE_PROMPT = "Write a Python function that returns the sum of the squares of a list of numbers."


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and how it was checked.

    Attributes:
        kind: "merged" or "adapter".
        path: the export folder.
        zip_path: a zip of that folder, for download.
        mean_abs_diff_vs_reference: mean |merged - (base+adapter)| logit difference / logit std (merged only).
        mean_abs_diff_vs_base: mean |merged - base| logit difference / logit std (merged), or max |B| (adapter).
        top1_agreement: share of probe positions where merged and base+adapter pick the same next token.
        tolerance: the bound the first number had to stay under.
        size_bytes: total bytes of the export folder.
    """

    kind: str
    path: str
    zip_path: str
    mean_abs_diff_vs_reference: float | None
    mean_abs_diff_vs_base: float
    top1_agreement: float | None
    tolerance: float | None
    size_bytes: int

    def summary(self) -> str:
        """One line for the UI / CLI."""
        size = f"{self.size_bytes / 2**20:,.1f} MiB"
        if self.kind == "merged":
            return (f"Merged model saved to {self.path} ({size}). Verified on a probe prompt: reloaded logits match "
                    f"base+adapter (mean |Δ| = {self.mean_abs_diff_vs_reference:.4f} x std, tolerance "
                    f"{self.tolerance}; same top-1 token at {100 * (self.top1_agreement or 0):.1f}% of positions) "
                    f"and differ from the base (mean |Δ| = {self.mean_abs_diff_vs_base:.4f} x std).")
        return (f"Adapter saved to {self.path} ({size}); it loads with PeftModel.from_pretrained "
                f"(max |B| = {self.mean_abs_diff_vs_base:.4g}).")


def unique_path(path: Path) -> Path:
    """``path`` if free, else ``path-2``, ``path-3``... (exports are never overwritten)."""
    if not path.exists():
        return path
    n = 2
    while path.with_name(f"{path.name}-{n}").exists():
        n += 1
    return path.with_name(f"{path.name}-{n}")


def _run_info(run_dir: Path) -> tuple[dict[str, Any], Path]:
    cfg_path, adapter = run_dir / "config.json", run_dir / "adapter"
    if not cfg_path.is_file():
        raise ExportError(f"{run_dir}: not a run folder (no config.json).")
    if not (adapter / "adapter_config.json").is_file():
        raise ExportError(f"{run_dir}: no saved adapter yet; wait for training to finish or stop it first.")
    return json.loads(cfg_path.read_text(encoding="utf-8")), adapter


def _zip(folder: Path) -> Path:
    """Zip ``folder`` next to itself (``folder.zip``), written under a temporary name first."""
    final = folder.with_name(folder.name + ".zip")
    tmp = shutil.make_archive(str(folder.with_name(f".{folder.name}.zip-partial")), "zip", folder)
    Path(tmp).replace(final)
    return final


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def export_adapter(run_dir: str | Path, out: str | Path | None = None) -> ExportResult:
    """Copy the run's adapter to ``out`` (default ``RUN_DIR/adapter-export``), check it loads, and zip it.

    Raises:
        ExportError: no adapter, or ``out`` already exists.
    """
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    _, adapter = _run_info(run_dir)
    final = Path(out) if out else unique_path(run_dir / "adapter-export")
    if final.exists():
        raise ExportError(f"{final} already exists; exports are never overwritten. Choose another folder.")
    tmp = staging_dir(final)
    shutil.copytree(adapter, tmp, dirs_exist_ok=True)
    weights = load_file(str(tmp / "adapter_model.safetensors"))
    max_b = max((float(t.abs().max()) for k, t in weights.items() if "lora_B" in k), default=0.0)
    if max_b == 0.0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError("The adapter's B matrices are all zero (no optimizer step was taken), so it changes "
                          "nothing; train for at least one step.")
    publish_dir(tmp, final)
    result = ExportResult("adapter", str(final), str(_zip(final)), None, max_b, None, None, _size(final))
    return result


def export_merged(run_dir: str | Path, out: str | Path | None = None) -> ExportResult:
    """Merge the run's adapter into a 16-bit copy of its base, save, verify and zip.

    Args:
        run_dir: a run folder with config.json and adapter/.
        out: destination folder (default ``RUN_DIR/merged``, numbered if taken); must not exist.

    Returns:
        ExportResult with the measured logit differences.

    Raises:
        ExportError: missing adapter, destination exists, or verification failed (numbers in the message).
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from core.data import ensure_chat_template
    from core.model import load_tokenizer, resolve_model_path

    run_dir = Path(run_dir)
    cfg, adapter = _run_info(run_dir)
    final = Path(out) if out else unique_path(run_dir / "merged")
    if final.exists():
        raise ExportError(f"{final} already exists; exports are never overwritten. Choose another folder.")
    base_path = resolve_model_path(cfg["model_name_or_path"])
    tokenizer = load_tokenizer(base_path)
    ensure_chat_template(tokenizer)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    save_dtype = torch.float16 if cfg.get("bnb_4bit_compute_dtype") == "float16" and device == "cuda" else torch.bfloat16
    probe = tokenizer.apply_chat_template([{"role": "user", "content": PROBE_PROMPT}], add_generation_prompt=True,
                                          return_tensors="pt", return_dict=True)["input_ids"].to(device)

    def logits(model: Any) -> torch.Tensor:
        with torch.no_grad():
            return model(input_ids=probe).logits.float().cpu()

    # Reference: base + adapter unmerged, in float32 (exact W x + (alpha/r) B A x up to fp32 rounding).
    log.info("Computing base and base+adapter reference logits in float32")
    ref_model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32, device_map={"": device}), adapter)
    ref_model.eval()
    ref = logits(ref_model)
    with ref_model.disable_adapter():
        base = logits(ref_model)
    del ref_model

    log.info("Merging into a %s copy of the base", save_dtype)
    merged = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_path, dtype=save_dtype, device_map={"": device}), adapter
    ).merge_and_unload()
    tmp = staging_dir(final)
    try:
        merged.config.name_or_path = str(final)
        merged.save_pretrained(tmp)
        tokenizer.padding_side = "left"  # what generation wants
        tokenizer.save_pretrained(tmp)
        del merged
        reloaded = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32, device_map={"": device})
        reloaded.eval()
        got = logits(reloaded)
        del reloaded
        std = float(ref.std())
        diff_ref = float((got - ref).abs().mean()) / std
        diff_base = float((got - base).abs().mean()) / std
        top1 = float((got.argmax(-1) == ref.argmax(-1)).float().mean())
        if diff_ref > MERGE_TOLERANCE or top1 < MIN_TOP1_AGREEMENT:
            raise ExportError(f"Merged model does not match base+adapter: mean |Δlogit| = {diff_ref:.4f} x std "
                              f"(tolerance {MERGE_TOLERANCE}), top-1 agreement {100 * top1:.1f}% (needs "
                              f"{100 * MIN_TOP1_AGREEMENT:.0f}%). Nothing was written.")
        if diff_base <= diff_ref:
            raise ExportError(f"Merged model equals the base (mean |Δlogit| vs base {diff_base:.4g} x std <= merge "
                              f"rounding {diff_ref:.4g} x std): the adapter has no effect. Train for more steps.")
        result = ExportResult("merged", str(final), "", diff_ref, diff_base, top1, MERGE_TOLERANCE, _size(tmp))
        write_json_atomic(tmp / "lora_studio_export.json", {**asdict(result), "run_dir": str(run_dir),
                                                             "base": cfg["model_name_or_path"],
                                                             "dtype": str(save_dtype).replace("torch.", "")})
        publish_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult("merged", str(final), str(_zip(final)), diff_ref, diff_base, top1, MERGE_TOLERANCE,
                        _size(final))
