"""Which adapter an export takes: the run's final ``adapter/``, or an interrupted run's last complete checkpoint,
with the refusals that say why there is none."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from core.errors import ExportError
from core.export_memory import adapter_params_in
from core.runs import INTERRUPTED, RUNNING_ELSEWHERE, read_run

log = logging.getLogger(__name__)


def last_complete_checkpoint(run_dir: Path) -> tuple[Path, int] | None:
    """The run's highest complete ``checkpoints/checkpoint-N`` and its N, or None.

    Complete: adapter_model.safetensors whose header reads (core.export_memory.adapter_params_in) and an
    adapter_config.json holding a JSON object. A checkpoint cut short by the kill is skipped for the one before.
    """
    parent = run_dir / "checkpoints"
    try:
        found = [c for c in parent.glob("checkpoint-*") if c.name.split("-")[-1].isdigit() and c.is_dir()]
    except OSError:
        return None
    for checkpoint in sorted(found, key=lambda c: int(c.name.split("-")[-1]), reverse=True):
        if not adapter_params_in(checkpoint):
            continue
        try:
            adapter_cfg = json.loads((checkpoint / "adapter_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(adapter_cfg, dict):
            return checkpoint, int(checkpoint.name.split("-")[-1])
    return None


def interrupted_note(checkpoint: Path, step: int, status: str = "interrupted") -> str:
    """What an export of an interrupted (or killed: ``status`` "failed") run's checkpoint says about where its
    adapter came from."""
    how = "interrupted" if status == "interrupted" else "ended early"
    return (
        f"run {how} at step {step}: exported the adapter of its last checkpoint ({checkpoint.name}); "
        "Resume from this run folder continues it"
    )


def run_info(run_dir: Path) -> tuple[dict[str, Any], Path, str]:
    """The run's config, the adapter folder to export and a note on where it came from ("" for ``adapter/``).

    A run with no final ``adapter/`` that nothing is training any more (core.runs.read_run says "interrupted":
    killed, power loss) gives the adapter of its last complete checkpoint instead.

    Raises:
        ExportError: not a run folder; still training; interrupted before its first checkpoint; or ended
            (completed, stopped, failed) without an adapter.
    """
    cfg_path, adapter = run_dir / "config.json", run_dir / "adapter"
    if not cfg_path.is_file():
        raise ExportError(f"{run_dir}: not a run folder (no config.json).")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    if (adapter / "adapter_config.json").is_file():
        return cfg, adapter, ""
    summary = read_run(run_dir)
    status = summary.status
    if status == RUNNING_ELSEWHERE:
        raise ExportError(
            f"{run_dir}: no saved adapter yet; it is still training (its recorded process is alive, or, "
            "without a record, its log changed in the last 2 minutes). "
            "Wait for training to finish or stop it first."
        )
    if status == INTERRUPTED or summary.resumable:  # killed, out of memory, disk full: checkpoints are sound
        found = last_complete_checkpoint(run_dir)
        if found is None:
            raise ExportError(
                f"{run_dir}: the run was {status} before its first checkpoint: it has no adapter and no "
                "complete checkpoint to export. Train it again (save_steps sets how often checkpoints are kept)."
            )
        checkpoint, step = found
        note = interrupted_note(checkpoint, step, status)
        log.info("%s", note)
        return cfg, checkpoint, note
    raise ExportError(
        f"{run_dir}: the run ended ({status}) without saving an adapter; there is nothing to export."
    )
