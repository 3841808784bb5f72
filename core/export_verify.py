"""Checks shared by the exports: named pass/fail checks, the probe prompt's tokens, and the memory guard."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

from core.errors import ExportError

PROBE_PROMPT = "Write a Python function that returns the sum of the squares of a list of numbers."


def check(name: str, passed: bool, detail: str) -> dict[str, Any]:
    """One verification line: {"name", "passed", "detail"} (written to verification.json and the model card)."""
    return {"name": name, "passed": bool(passed), "detail": detail}


def fail_on(checks: list[dict[str, Any]], tmp: Path | None) -> None:
    """Raise ExportError listing every failed check (after removing the staging folder ``tmp``, if any)."""
    failed = [c for c in checks if not c["passed"]]
    if failed:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(
            "Export failed verification, nothing was written: "
            + "; ".join(f"{c['name']}: {c['detail']}" for c in failed)
        )


def probe_ids(base_path: str, device: str) -> Any:
    """Token ids (1, T) of PROBE_PROMPT in the base's chat template, on ``device``."""
    from core.model import load_tokenizer
    from core.tokenization import ensure_chat_template

    tokenizer = load_tokenizer(base_path)
    ensure_chat_template(tokenizer)
    encoded: Any = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROBE_PROMPT}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    return encoded["input_ids"].to(device)


def check_memory(base_path: str, bytes_per_param: int, device: str) -> None:
    """Refuse an export that cannot fit: it loads a ``bytes_per_param`` copy of the base (about a 16-bit copy of
    the model for a merge). Raises ExportError with the numbers."""
    import torch

    from core.model import inspect_model

    need = inspect_model(base_path).num_params * bytes_per_param * 1.1  # + activations of one probe prompt
    if device == "cuda":
        free = torch.cuda.mem_get_info()[0]
        where = "GPU memory"
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        where = "RAM"
    if need > free:
        raise ExportError(
            f"Not enough free {where} to export: about {need / 2**30:.1f} GiB needed (a {bytes_per_param}-byte copy "
            f"of the base), {free / 2**30:.1f} GiB free. Close other programs or export on a larger machine."
        )


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def missing_adapter_files(folder: Path, shown_as: Path | None = None) -> str:
    """What is wrong with ``folder``'s adapter files, in one sentence; "" when both are there.

    Args:
        folder: the adapter folder (or an export's staging copy of it).
        shown_as: the folder to name in the message (the user's, not a staging copy); ``folder`` when None.

    Returns:
        Each missing file of ADAPTER_FILES named with what to do: a pickled ``adapter_model.bin`` in place of the
        safetensors file is named as such (LoRA Studio never unpickles weights).
    """
    where = shown_as or folder
    missing = [f for f in ADAPTER_FILES if not (folder / f).is_file()]
    if not missing:
        return ""
    if "adapter_model.safetensors" in missing and (folder / "adapter_model.bin").is_file():
        why = (
            f"{where} holds its weights only in adapter_model.bin, a pickle, and no adapter_model.safetensors; "
            "LoRA Studio reads safetensors only (loading a pickle can run code). Re-save the adapter with "
            "save_pretrained(..., safe_serialization=True) or train it again here"
        )
        missing.remove("adapter_model.safetensors")
        return why + (f"; {missing[0]} is missing too." if missing else ".")
    return (
        f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing from {where} "
        f"(it has {', '.join(sorted(p.name for p in folder.iterdir())) or 'no files'}): the adapter was not "
        "saved completely. Train the run again, or export from a run whose adapter/ holds both "
        f"{' and '.join(ADAPTER_FILES)}."
    )


def adapter_checks(
    folder: Path, staging: Path | None, shown_as: Path | None = None
) -> tuple[list[dict[str, Any]], int, int, float]:
    """Check an adapter folder: both files there, more than zero LoRA tensor, every target module of
    adapter_config.json with A and B tensors, finite weights, some B moved from zero.

    Args:
        folder: holds adapter_config.json and adapter_model.safetensors.
        staging: an export's staging folder, removed before raising (None: nothing to clean up).
        shown_as: the folder named in messages (the run's adapter when ``folder`` is a staging copy).

    Returns:
        (checks, tensor count, bytes, max |B|).

    Raises:
        ExportError: a check failed, a file is missing (named, with what to do) or cannot be read (the file
            named, with the reader's error).
    """
    import json

    import torch
    from safetensors.torch import load_file

    where = shown_as or folder
    problem = missing_adapter_files(folder, shown_as)
    checks = [check("adapter files", not problem, problem or f"{', '.join(ADAPTER_FILES)} present")]
    fail_on(checks, staging)
    name = "adapter_model.safetensors"
    try:
        weights = load_file(str(folder / name))
        name = "adapter_config.json"
        targets = json.loads((folder / name).read_text(encoding="utf-8")).get("target_modules")
    except Exception as exc:  # a truncated or corrupted file: name it, never a traceback
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise ExportError(
            f"{where / name} cannot be read ({type(exc).__name__}: {exc}): it is truncated or corrupted. "
            "Train the run again, or export an earlier checkpoint of it."
        ) from None
    targets = sorted(targets or []) if isinstance(targets, list) else sorted(str(targets).split(","))
    uncovered = [
        t
        for t in targets
        if not any(f".{t}.lora_A" in k for k in weights) or not any(f".{t}.lora_B" in k for k in weights)
    ]
    size = sum(t.numel() * t.element_size() for t in weights.values())
    finite = all(bool(torch.isfinite(t).all()) for t in weights.values())
    max_b = max(
        (float(t.nan_to_num(0.0).abs().max()) for k, t in weights.items() if "lora_B" in k), default=0.0
    )
    checks += [
        check("tensors", len(weights) > 0, f"{len(weights)} tensors, {size / 2**20:,.2f} MiB"),
        check(
            "every target module covered",
            bool(targets) and not uncovered,
            f"targets {targets}" + (f"; missing {uncovered}" if uncovered else ""),
        ),
        check("finite weights", finite, "no NaN/inf" if finite else "NaN/inf found: a diverged run"),
        check(
            "B moved from zero",
            max_b > 0,
            f"max |B| = {max_b:.4g}" if max_b > 0 else "all B are zero: the adapter changes nothing",
        ),
    ]
    fail_on(checks, staging)
    return checks, len(weights), size, max_b


def verify_adapter_loads(base_path: str, folder: Path, device: str, checks: list[dict[str, Any]]) -> None:
    """Append to ``checks`` the check that ``folder`` loads with ``PeftModel.from_pretrained`` on the base and
    changes its logits on the probe prompt (mean |Δlogit| / logit std > 0); the caller raises with fail_on.

    Args:
        base_path: local folder of the base model (safetensors only: core.model.SAFE_LOAD).
        folder: the adapter folder (adapter_config.json, adapter_model.safetensors).
        device: "cuda" (the base in bfloat16) or "cpu" (float32).
        checks: the list to append to.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from core.model import SAFE_LOAD

    probe = probe_ids(base_path, device)
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(
            base_path,
            dtype=torch.bfloat16 if device == "cuda" else torch.float32,
            device_map={"": device},
            **SAFE_LOAD,
        ),
        folder,
    )
    model.eval()
    with torch.no_grad():
        tuned = model(input_ids=probe).logits.float().cpu()
        with model.disable_adapter():
            plain = model(input_ids=probe).logits.float().cpu()
    del model
    change = float((tuned - plain).abs().mean() / plain.std())
    checks.append(
        check(
            "loads with PeftModel.from_pretrained and changes the base",
            math.isfinite(change) and change > 0,
            f"mean |Δlogit| vs base {change:.4g} x std",
        )
    )
