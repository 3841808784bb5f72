"""Resuming a run from a checkpoint: find a usable checkpoint, refuse the ones that cannot continue this config.

A resume starts a new run folder; the Trainer restores the adapter, optimizer, scheduler and RNG state from the
checkpoint (``Trainer.train(resume_from_checkpoint=...)``) and continues at the next step.

What "safetensors only" covers here: every set of weights (the adapter; the base and merged models elsewhere) is
read from safetensors, never unpickled; a checkpoint whose weights exist only as a pickled ``.bin`` is refused.
The Trainer's own training state (``optimizer.pt``, ``scheduler.pt``, ``scaler.pt``, ``rng_state*.pth``) exists
only as torch pickles, and the Trainer reads it with ``torch.load(weights_only=True)``: torch's restricted
unpickler, which builds tensors, containers and numbers and refuses any other object. Before that, each state file
is inspected without being unpickled (``torch.serialization.get_unsafe_globals_in_checkpoint``) and a file that
names anything beyond those (and the numpy arrays the Trainer allowlists for its RNG state) is refused here,
naming the file and what it holds, instead of torch's refusal that names no file and suggests
``weights_only=False``. LoRA Studio itself calls ``torch.load`` nowhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.config import TrainingConfig
from core.errors import ConfigError

# Files a full resume restores; a checkpoint without some of them still resumes, with a note.
STATE_FILES = {
    "optimizer.pt": "the optimizer restarts from zero moments",
    "scheduler.pt": "the learning-rate schedule restarts",
    "rng_state.pth": "data order and dropout are not reproduced exactly",
}


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            [
                f"resume_from_checkpoint: {path} cannot be read ({type(exc).__name__}: {exc}); pick another checkpoint."
            ]
        ) from None


def _problem(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` cannot be resumed from, or None."""
    state = checkpoint / "trainer_state.json"
    try:
        data = json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{state.name} unreadable ({type(exc).__name__})"
    if not isinstance(data, dict) or not isinstance(data.get("global_step"), int):
        return f"{state.name} has no global_step"
    if not (checkpoint / "adapter_model.safetensors").is_file():
        if (checkpoint / "adapter_model.bin").is_file():
            return "its adapter is only in adapter_model.bin, a pickle (only safetensors are loaded)"
        return "no adapter_model.safetensors"
    try:
        adapter = json.loads((checkpoint / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "adapter_config.json missing or unreadable"
    return None if isinstance(adapter, dict) else "adapter_config.json is not an object"


def resolve_checkpoint(path: str) -> Path:
    """The checkpoint folder to resume from: ``path`` itself (it holds trainer_state.json), or the highest usable
    ``checkpoint-N`` in ``path`` or ``path/checkpoints`` (a run folder; unusable ones are skipped).

    Raises:
        ConfigError: no usable checkpoint, the run it belongs to failed, or what was found is broken (named).
    """
    folder = Path(path).expanduser()
    if (folder / "trainer_state.json").is_file():
        candidates = [folder]
    else:
        candidates = []
        for parent in (folder / "checkpoints", folder):
            if parent.is_dir():
                candidates += [
                    c for c in parent.glob("checkpoint-*") if c.name.split("-")[-1].isdigit() and c.is_dir()
                ]
        candidates.sort(key=lambda c: int(c.name.split("-")[-1]), reverse=True)
    if not candidates:
        raise ConfigError(
            [
                f"resume_from_checkpoint: no checkpoint in {str(folder)!r} (looked for trainer_state.json and "
                "checkpoints/checkpoint-N); pick a run folder that saved one."
            ]
        )
    skipped = []
    for checkpoint in candidates:
        problem = _problem(checkpoint)
        if problem is None:
            _refuse_pickles(checkpoint)
            _refuse_unsafe_state(checkpoint)
            _refuse_failed_run(checkpoint)
            return checkpoint
        skipped.append(f"{checkpoint.name}: {problem}")
    raise ConfigError(
        [f"resume_from_checkpoint: no usable checkpoint in {str(folder)!r} ({'; '.join(skipped)})."]
    )


# Written by the Trainer into every checkpoint and never read back on resume.
NOT_LOADED = {"training_args.bin"}


def _refuse_pickles(checkpoint: Path) -> None:
    """Refuse a checkpoint holding a pickled ``.bin`` weights file, naming it.

    The Trainer loads ``pytorch_model.bin`` (or an adapter's ``adapter_model.bin``) in preference to, or instead
    of, the safetensors adapter, through ``torch.load``: unpickling can run code, and torch's own refusal names no
    file and suggests ``weights_only=False``. Only safetensors weights are loaded here, so such a file is refused
    before anything reads it.

    Raises:
        ConfigError: naming the first pickled file found and what to do.
    """
    pickles = sorted(f for f in checkpoint.rglob("*.bin") if f.is_file() and f.name not in NOT_LOADED)
    if pickles:
        found = pickles[0]
        raise ConfigError(
            [
                f"resume_from_checkpoint: {found} is a pickled PyTorch file; loading a pickle can run code, so "
                "LoRA Studio loads only safetensors weights and will not resume from it. Delete that file if "
                "you trust the checkpoint's adapter_model.safetensors, or pick a checkpoint this app saved."
            ]
        )


# What torch.load(weights_only=True) may build from a Trainer state file: torch's own allowlist (tensors, containers,
# numbers) plus the numpy types transformers.trainer_pt_utils.safe_globals adds for rng_state.pth.
TRAINER_SAFE_GLOBALS = {
    "numpy.dtype",
    "numpy.ndarray",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.dtypes.UInt32DType",
}
STATE_PICKLES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth")


def unsafe_state_files(checkpoint: Path) -> list[str]:
    """The Trainer state files of ``checkpoint`` that its ``torch.load(weights_only=True)`` would refuse, one line
    each naming the file and why; [] when all are loadable. Nothing is unpickled: the pickle's opcodes are read
    (``torch.serialization.get_unsafe_globals_in_checkpoint``, torch >= 2.5).
    """
    import torch.serialization

    lines = []
    for pattern in STATE_PICKLES:
        for path in sorted(checkpoint.glob(pattern)):
            try:
                names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
            except Exception as exc:  # not a torch zip file, truncated
                lines.append(f"{path} cannot be read ({type(exc).__name__}: {str(exc)[:120]})")
                continue
            unsafe = sorted(set(names) - TRAINER_SAFE_GLOBALS)
            if unsafe:
                lines.append(f"{path} holds objects a weights-only load refuses ({', '.join(unsafe[:5])})")
    return lines


def _refuse_unsafe_state(checkpoint: Path) -> None:
    """Refuse a checkpoint whose optimizer/scheduler/scaler/RNG state the Trainer could not load safely.

    Raises:
        ConfigError: naming each such file and what to do (delete it to resume without that state, see
            STATE_FILES for what is lost, or pick a checkpoint this app saved).
    """
    lines = unsafe_state_files(checkpoint)
    if lines:
        raise ConfigError(
            [
                f"resume_from_checkpoint: {line}; only tensors, numbers and containers are loaded from a "
                "checkpoint's training state (never code)."
                for line in lines
            ]
            + [
                "Delete those files to resume without that state (the optimizer or schedule restarts), or pick "
                "a checkpoint this app saved."
            ]
        )


def _refuse_failed_run(checkpoint: Path) -> None:
    """A checkpoint of a run that failed (diverged, learned nothing) would continue the failure."""
    for run_dir in (checkpoint.parent.parent, checkpoint.parent):
        result = run_dir / "result.json"
        if result.is_file():
            data = _json(result)
            if (
                isinstance(data, dict)
                and data.get("status") == "failed"
                and data.get("resumable") is not True
            ):
                raise ConfigError(
                    [
                        f"resume_from_checkpoint: {run_dir.name} failed ({str(data.get('message', ''))[:200]}); "
                        "its checkpoints would continue the failure. Start a new run instead."
                    ]
                )
            return


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer step a checkpoint was saved at (trainer_state.json's global_step)."""
    return int(_json(checkpoint / "trainer_state.json")["global_step"])


def missing_state(checkpoint: Path) -> list[str]:
    """One line per restorable state file the checkpoint lacks, with what that means."""
    return [
        f"{name} missing: {why}" for name, why in STATE_FILES.items() if not (checkpoint / name).is_file()
    ]


def check_resume_compatible(
    checkpoint: Path, cfg: TrainingConfig, targets: tuple[str, ...], base_path: str, total_steps: int
) -> None:
    """Raise ConfigError when the checkpoint cannot continue ``cfg``: another base model, rank, alpha or target
    modules (its weights and optimizer state would not fit), or no steps left (it is at or past total_steps)."""
    saved = _json(checkpoint / "adapter_config.json")
    problems = []
    base = str(saved.get("base_model_name_or_path") or "")
    if base and Path(base).name != Path(base_path).name and base not in (cfg.model_name_or_path, base_path):
        problems.append(
            f"model_name_or_path: the checkpoint adapts {base}, this config {cfg.model_name_or_path}."
        )
    if saved.get("r") != cfg.lora_r:
        problems.append(f"lora_r: the checkpoint has r={saved.get('r')}, this config {cfg.lora_r}.")
    if saved.get("lora_alpha") != cfg.lora_alpha:
        problems.append(
            f"lora_alpha: the checkpoint has {saved.get('lora_alpha')}, this config {cfg.lora_alpha}."
        )
    saved_targets = saved.get("target_modules") or []
    if sorted(saved_targets) != sorted(targets):
        problems.append(
            f"lora_target_modules: the checkpoint adapts {sorted(saved_targets)}, this config {sorted(targets)}."
        )
    step = checkpoint_step(checkpoint)
    if step >= total_steps:
        problems.append(
            f"max_steps: the checkpoint is at step {step} and this run would end at step {total_steps}; "
            f"raise max_steps above {step} (or num_train_epochs) to train more."
        )
    if problems:
        raise ConfigError([*problems, "Resume with the settings of the run that saved the checkpoint."])
