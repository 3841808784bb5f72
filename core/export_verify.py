"""Checks shared by the exports: named pass/fail checks, the probe prompt's tokens, and the memory guard."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from core.errors import ExportError

PROBE_PROMPT = "Write a Python function that returns the sum of the squares of a list of numbers."


def check(name: str, passed: bool, detail: str) -> dict[str, Any]:
    """One verification line: {"name", "passed", "detail"} (written to verification.json and the model card)."""
    return {"name": name, "passed": bool(passed), "detail": detail}


def fail_on(checks: list[dict[str, Any]], tmp: Path) -> None:
    """Raise ExportError listing every failed check (after removing the staging folder)."""
    failed = [c for c in checks if not c["passed"]]
    if failed:
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
