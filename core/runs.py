"""Run folders and atomic file writes: nothing a user made is overwritten or left half-written."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.atomic import write_json_atomic, write_json_new  # noqa: F401  (re-exported: callers import them here)


def new_run_dir(output_dir: str | Path, prefix: str = "run") -> Path:
    """Create and return a fresh run folder ``output_dir/run-YYYYmmdd-HHMMSS[-n]``; never reuses one.

    ``os.mkdir`` without exist_ok is atomic, so two jobs started in the same second get different folders.
    """
    base = Path(output_dir).expanduser().resolve()
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        candidate = base / (f"{prefix}-{stamp}" + (f"-{n}" if n else ""))
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"{base}: could not create a new run folder")


def new_file_problems(out: str | None, name: str) -> list[str]:
    """Why ``out`` cannot become a new file (empty, a folder, existing, no such or no writable folder), each
    naming the option ``name``; [] when it can (or when ``out`` is None)."""
    if out is None:
        return []
    path = Path(out).expanduser()
    if not out.strip() or out.endswith(("/", os.sep)) or path.is_dir():
        return [f"{name}: {out!r} is not a file name; give a new .json file, e.g. {name} plan.json."]
    if path.exists():
        return [f"{name}: {out} exists; LoRA Studio never overwrites a file, pick a new name."]
    parent = path.parent
    if not parent.is_dir():
        return [f"{name}: the folder {parent} does not exist; create it first or pick another place."]
    if not os.access(parent, os.W_OK | os.X_OK):
        return [f"{name}: the folder {parent} is not writable; pick another place."]
    return []


def publish_dir(tmp: Path, final: Path) -> Path:
    """Move a fully written folder ``tmp`` to ``final``, which must not exist yet (never overwrites).

    Raises:
        FileExistsError: ``final`` exists; ``tmp`` is removed.
    """
    if final.exists():
        shutil.rmtree(tmp, ignore_errors=True)
        raise FileExistsError(f"{final} already exists; choose another folder or remove it first.")
    os.rename(tmp, final)
    return final


def staging_dir(final: Path) -> Path:
    """A temporary folder next to ``final`` (same file system, so publish_dir's rename is atomic), named
    ``.NAME.partial-<pid>-XXXX`` so remove_stale_staging can tell a dead process's leftovers from a live one's,
    and readable like any folder the user makes (mkdtemp's 0700 would follow the export)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-{os.getpid()}-", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    return tmp


_STAGING = re.compile(r"^\..+\.(?:partial|zip-partial)-(\d+)(?:-.*)?$")


def remove_stale_staging(folder: Path) -> list[str]:
    """Remove the staging folders and partial zips in ``folder`` whose writing process has died (kill -9, power
    loss mid-export: seen leaving a 517 MB ``.merged.partial-*``); returns their names. A live process's, and
    names without a pid, are left alone."""
    import psutil

    removed: list[str] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _STAGING.match(entry.name)
        if match is None or psutil.pid_exists(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry.name)
    return removed


def checkpoint_note(run_dir: Path) -> str:
    """ " Checkpoints saved before are kept: ..." when ``run_dir/checkpoints`` holds a complete checkpoint (its
    trainer_state.json, which the Trainer writes last), else ""; appended to the message of a run ended from
    outside (core.errors.WorkerEnded)."""
    if any((run_dir / "checkpoints").glob("checkpoint-*/trainer_state.json")):
        return (
            " Checkpoints saved before are kept: Export takes the last complete one, and Resume from this run "
            "folder continues it."
        )
    return ""


def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    """Every line of ``metrics.jsonl`` (one dict per logging step); [] if none."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------- the runs list
RUNNING_ELSEWHERE = (
    "running (another process)"  # no result.json yet, its recorded process alive (core.liveness)
)
INTERRUPTED = "interrupted"  # a run folder without result.json whose processes have all ended
RUN_FILES = ("config.json", "result.json", "metrics.jsonl")
_STAMP = re.compile(r"(\d{8}-\d{6})")


@dataclass(frozen=True)
class RunSummary:
    """One run folder as the Runs table shows it; every field is None when its file is missing or unreadable.

    Attributes:
        name / path: the folder's name and its absolute path.
        started_at: start time in seconds since the epoch (result.json's started_at, else the folder name's
            YYYYmmdd-HHMMSS stamp in local time, else the modification time of config.json or the folder).
        status: completed, stopped or failed (result.json); the live job's status for the folder it is writing;
            "running (another process)" when result.json is missing and a process recorded in process.json is
            alive (same pid and start time; core.liveness), "interrupted" when they have all ended (app killed,
            machine restarted); folders without process.json (older runs) fall back to the age of their log;
            "unreadable: <file>: <reason>" when config.json or result.json exists but is not a JSON object.
        steps: optimizer steps done (result.json, else the last step in metrics.jsonl).
        final_loss: result.json's final_loss, else the last training loss in metrics.jsonl.
        method: "lora", "lora8" or "qlora" (the rule of TrainingConfig.method), from config.json.
        model_name_or_path / lora_r / lora_alpha / learning_rate: from config.json.
        estimate_gib / device: the VRAM estimate (GiB) and "cuda" / "cpu" (result.json, written at the end).
        resumable: result.json says the run was ended from outside the training (killed, out of memory, disk
            full; core.errors.WorkerEnded): failed, but its checkpoints export and resume like an interrupted run's.
        problems: everything that could not be read, e.g. "config.json missing", "metrics.jsonl: 1 unreadable line
            skipped (line 7: ...)"; unreadable metrics lines do not change the status.
    """

    name: str
    path: str
    started_at: float
    status: str
    steps: int | None = None
    final_loss: float | None = None
    method: str | None = None
    model_name_or_path: str | None = None
    lora_r: int | None = None
    lora_alpha: int | None = None
    learning_rate: float | None = None
    estimate_gib: float | None = None
    device: str | None = None
    problems: tuple[str, ...] = ()
    resumable: bool = False


def _read_object(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(data, None) for a JSON object file, (None, None) when it is missing, (None, "<file>: reason") otherwise."""
    if not path.exists():
        return None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError covers JSONDecodeError and UnicodeDecodeError
        return None, f"{path.name}: {exc}"
    if not isinstance(data, dict):
        return None, f"{path.name}: not a JSON object ({type(data).__name__})"
    return data, None


def _number(value: Any) -> float | None:
    """A real JSON number (not a bool) as float, else None."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _integer(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number.is_integer() else None


def read_metrics_tolerant(run_dir: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Like read_metrics, but skips lines that are not JSON objects (a line torn by a crash) instead of raising.

    Returns:
        (rows, problems): the readable rows in file order, and at most one sentence describing the skipped lines
        or the read error ([] when all is well or the file is missing).
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as exc:
        return [], [f"metrics.jsonl: {exc}"]
    rows: list[dict[str, Any]] = []
    bad: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            bad.append(f"line {number}: {exc}")
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad.append(f"line {number}: not a JSON object")
    if not bad:
        return rows, []
    noun = "line" if len(bad) == 1 else "lines"
    return rows, [f"metrics.jsonl: {len(bad)} unreadable {noun} skipped ({bad[0]})"]


def _started_at(run_dir: Path, result: dict[str, Any] | None) -> float:
    """Start time (epoch seconds): result.json, the folder-name stamp, config.json's or the folder's mtime."""
    recorded = _number((result or {}).get("started_at"))
    if recorded is not None:
        return recorded
    match = _STAMP.search(run_dir.name)
    if match:
        try:
            return time.mktime(time.strptime(match.group(1), "%Y%m%d-%H%M%S"))
        except (ValueError, OverflowError):
            pass
    for candidate in (run_dir / "config.json", run_dir):
        try:
            return candidate.stat().st_mtime
        except OSError:
            continue
    return 0.0


def read_run(run_dir: str | Path, live_status: str | None = None) -> RunSummary:
    """Summarise one run folder from config.json, result.json and metrics.jsonl; never raises for bad files.

    Args:
        run_dir: the run folder.
        live_status: the status of the job currently writing to this folder (e.g. "training"), or None when no
            live job writes to it. Used only while result.json does not exist yet.
    """
    folder = Path(run_dir).expanduser().resolve()
    problems: list[str] = []
    config, config_problem = _read_object(folder / "config.json")
    result, result_problem = _read_object(folder / "result.json")
    if config is None and config_problem is None:
        problems.append("config.json missing")
    problems += [p for p in (config_problem, result_problem) if p]
    rows, metrics_problems = read_metrics_tolerant(folder)
    problems += metrics_problems

    unreadable = result_problem or config_problem
    if unreadable:
        status = f"unreadable: {unreadable}"
    elif result is not None:
        status = str(result.get("status") or "unknown")
    elif live_status:
        status = live_status
    else:
        from core.liveness import recorded_alive

        alive = recorded_alive(folder)
        if alive is None:  # no process record (a run from before process.json) or another host: the log's age
            alive = _recently_written(folder)
        status = RUNNING_ELSEWHERE if alive else INTERRUPTED
    logged_steps = [s for s in (_integer(r.get("step")) for r in rows) if s is not None]
    logged_losses = [x for x in (_number(r.get("loss")) for r in rows) if x is not None]
    steps = _integer(result.get("steps")) if result else None
    if steps is None and logged_steps:
        steps = logged_steps[-1]
    final_loss = (
        _number(result.get("final_loss")) if result else (logged_losses[-1] if logged_losses else None)
    )
    cfg = config or {}
    res = result or {}
    method = None
    if config is not None:  # the rule of TrainingConfig.method, without validating an old or edited config
        method = "qlora" if cfg.get("load_in_4bit") else "lora8" if cfg.get("load_in_8bit") else "lora"
    model = cfg.get("model_name_or_path")
    device = res.get("device")
    return RunSummary(
        name=folder.name,
        path=str(folder),
        started_at=_started_at(folder, result),
        status=status,
        steps=steps,
        final_loss=final_loss,
        method=method,
        model_name_or_path=model if isinstance(model, str) else None,
        lora_r=_integer(cfg.get("lora_r")),
        lora_alpha=_integer(cfg.get("lora_alpha")),
        learning_rate=_number(cfg.get("learning_rate")),
        estimate_gib=_number(res.get("estimate_gib")),
        device=device if isinstance(device, str) else None,
        problems=tuple(problems),
        resumable=res.get("resumable") is True,
    )


def _recently_written(run: Path, seconds: float = 120.0) -> bool:
    """True when train.log or metrics.jsonl changed in the last ``seconds``: a CLI run or another app trains it."""
    for name in ("train.log", "metrics.jsonl"):
        try:
            if time.time() - (run / name).stat().st_mtime < seconds:
                return True
        except OSError:
            continue
    return False


def list_runs(
    output_dir: str | Path, active_run_dir: str | Path | None = None, active_status: str = "training"
) -> list[RunSummary]:
    """Every run folder under ``output_dir``, newest first (by started_at, then name).

    A run folder is a sub-folder, not hidden (staging folders start with "."), that holds config.json,
    result.json or metrics.jsonl, or whose name starts with "run-" (a run killed before config.json was written).
    Missing or corrupt files never raise; they show in RunSummary.status / problems.

    Args:
        output_dir: the runs folder (TrainingConfig.output_dir); [] when it does not exist or cannot be listed.
        active_run_dir: the folder of the job that is running now, if any; it is reported with ``active_status``
            instead of "interrupted" until its result.json appears.
        active_status: the live job's status (JobSnapshot.status).
    """
    base = Path(output_dir or "runs").expanduser().resolve()
    active = Path(active_run_dir).expanduser().resolve() if active_run_dir else None
    try:
        children = sorted(base.iterdir()) if base.is_dir() else []
    except OSError:
        return []
    summaries = []
    for child in children:
        try:
            is_run = (
                not child.is_symlink()  # a link would list another folder (or the runs folder) twice
                and child.is_dir()
                and not child.name.startswith(".")
                and (child.name.startswith("run-") or any((child / f).exists() for f in RUN_FILES))
            )
        except OSError:
            continue
        if is_run:
            summaries.append(read_run(child, active_status if child == active else None))
    return sorted(summaries, key=lambda s: (s.started_at, s.name), reverse=True)
