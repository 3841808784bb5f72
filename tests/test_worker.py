"""Every training runs in a worker process; a run's status comes from its recorded processes, not file ages.

Issue 15: polling visitors slowed an in-process training ~4x; a killed run read "running" for two minutes and a slow
live one "interrupted"; Stop while the model loaded still trained a step; a queued run stopped before it started
left a 0-step folder; a full disk left temporary files and no reason.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.config import TrainingConfig
from core.errors import DiskFullError
from core.job import TrainingJob
from core.liveness import PROCESS_FILE, record_process, recorded_alive
from core.runs import INTERRUPTED, RUNNING_ELSEWHERE, read_run, write_json_atomic
from core.slot import TrainingSlot
from tests.conftest import ASSETS
from tests.test_distributed import _cli_until_a_step, alive, processes_of


def cfg_for(tmp_path: Path, **changes) -> TrainingConfig:
    base = {
        "dataset_name": str(ASSETS / "humaneval_alpaca.jsonl"),
        "max_steps": 1,
        "max_length": 64,
        "completion_only_loss": False,  # 64 tokens hold few answers; every token is a target instead
        "per_device_train_batch_size": 1,
        "monitor_rows": 0,
        "save_steps": 0,
        "output_dir": str(tmp_path / "runs"),
    }
    return TrainingConfig.from_dict({**base, **changes})


def _old(path: Path, seconds: float = 3600) -> None:
    """Make ``path`` look written ``seconds`` ago (the age the old status rule guessed from)."""
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_a_run_trains_in_a_worker_process_that_ends_with_it(tmp_path, embedded_path):
    job = TrainingJob(TrainingSlot())
    run_dir = job.start(cfg_for(tmp_path))
    snap = job.wait(600)
    assert snap.status == "completed" and snap.step == 1, snap.message
    record = json.loads((run_dir / PROCESS_FILE).read_text())
    assert record["supervisor"]["pid"] == os.getpid()
    worker = record["worker"]["pid"]
    assert worker != os.getpid() and not alive(worker) and processes_of(run_dir) == []
    assert json.loads((run_dir / "launch.json").read_text())["distributed_strategy"] == "single"
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    # the worker's own log records reach train.log next to the lines the supervisor published
    log = (run_dir / "train.log").read_text()
    assert "Training started" in log and "core.model: Fused LoRA branch" in log
    assert read_run(run_dir).status == "completed"


def test_stop_while_queued_leaves_no_folder_and_stop_while_loading_trains_no_step(tmp_path, embedded_path):
    slot = TrainingSlot()
    first, second = TrainingJob(slot), TrainingJob(slot)
    first_dir = first.start(cfg_for(tmp_path, max_steps=200))
    second_dir = second.start(cfg_for(tmp_path, max_steps=200))
    assert second.snapshot().status == "queued"
    assert second.stop()
    snap = second.wait(60)
    assert snap.status == "stopped" and "waiting in the queue" in snap.message
    assert not second_dir.exists()  # no 0-step "stopped" folder in the runs list

    assert first.snapshot().status == "loading"
    assert first.stop()  # while the data and the model load
    snap = first.wait(600)
    assert snap.status == "stopped" and snap.step == 0, snap.message
    assert "before the first step" in snap.message
    result = json.loads((first_dir / "result.json").read_text())
    assert result["steps"] == 0 and result["adapter"] is None
    assert not (first_dir / "adapter").exists()
    events = [json.loads(line) for line in (first_dir / "events.jsonl").read_text().splitlines()]
    assert not [e for e in events if e["type"] in ("metrics", "progress")]  # not one step, not one log


def test_status_is_decided_by_the_recorded_process_not_the_age_of_the_log(tmp_path):
    run = tmp_path / "run-20261130-120000"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "train.log").write_text("loading\n")
    _old(run / "train.log")  # a live run whose step takes longer than 2 minutes
    record_process(run, "supervisor")  # this process: the run is queued or its worker is starting
    assert read_run(run).status == RUNNING_ELSEWHERE
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        record_process(run, "worker", worker.pid)
        assert recorded_alive(run) is True
        assert read_run(run).status == RUNNING_ELSEWHERE
    finally:
        worker.kill()
        worker.wait()
    (run / "train.log").write_text("a step a second ago\n")  # a killed run: fresh log, dead worker
    assert recorded_alive(run) is False  # though its supervisor (this process) lives on
    assert read_run(run).status == INTERRUPTED

    # the pid alone does not count: this test's own pid, recorded with another start time, is not the run's
    record = json.loads((run / PROCESS_FILE).read_text())
    record["worker"] = {**record["worker"], "pid": os.getpid()}
    record["worker"]["create_time"] -= 3600
    (run / PROCESS_FILE).write_text(json.dumps(record))
    assert read_run(run).status == INTERRUPTED

    # a record from another machine (a shared disk) cannot be checked: the age of the log decides
    record["worker"]["host"] = "another-host"
    (run / PROCESS_FILE).write_text(json.dumps(record))
    assert recorded_alive(run) is None and read_run(run).status == RUNNING_ELSEWHERE


def test_a_killed_worker_fails_the_run_with_the_signal_named_and_its_checkpoints_stay_usable(
    tmp_path, embedded_path
):
    """SIGKILL of the worker alone (what the kernel's out-of-memory killer does): the run fails naming the
    signal, and, ended from outside the training, its complete checkpoints still export and resume."""
    from core.export import export_adapter
    from core.resume import resolve_checkpoint

    job = TrainingJob(TrainingSlot())
    run_dir = job.start(cfg_for(tmp_path, max_steps=300, save_steps=1))
    deadline = time.monotonic() + 600
    while (
        not list(run_dir.glob("checkpoints/checkpoint-*/trainer_state.json")) and time.monotonic() < deadline
    ):
        assert job.is_running(), job.snapshot().message
        time.sleep(0.2)
    worker = json.loads((run_dir / PROCESS_FILE).read_text())["worker"]["pid"]
    os.kill(worker, signal.SIGKILL)
    snap = job.wait(120)
    assert snap.status == "failed"
    assert "killed by SIGKILL" in snap.message and "Checkpoints saved before are kept" in snap.message
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "failed" and result["resumable"] is True
    assert processes_of(run_dir) == []
    assert read_run(run_dir).resumable
    exported = export_adapter(run_dir, str(tmp_path / "adapter-out"))
    assert "ended early at step" in exported.summary()
    assert resolve_checkpoint(str(run_dir)).name.startswith("checkpoint-")  # Resume accepts it


def test_a_disk_that_fills_while_a_checkpoint_is_written_is_named_and_the_torn_checkpoint_removed(
    tmp_path, monkeypatch
):
    """torch.save's writer reports a full disk as "unexpected pos" (not ENOSPC); the free space says it."""
    import core.worker
    from core.worker import EventSink, _report_failure

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    (run_dir / "checkpoints" / "checkpoint-1" / "trainer_state.json").write_text("{}")
    torn = run_dir / "checkpoints" / "checkpoint-2"
    torn.mkdir()
    (torn / "optimizer.pt").write_bytes(b"\0" * 1000)  # cut short, no trainer_state.json
    sink = EventSink(run_dir / "events.jsonl", 0)
    sink.step = 2
    monkeypatch.setattr(core.worker, "free_bytes", lambda _path: 0)
    try:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 8970496 vs 8970384")
    except RuntimeError as exc:
        _report_failure(exc, run_dir, sink, 0)
    (record,) = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert record["user"] and record["resumable"]
    assert record["error"].startswith("Training stopped at step 2: disk full: ")
    assert "unfinished checkpoint-2 was removed" in record["error"]
    assert "Checkpoints saved before are kept" in record["error"]
    assert not torn.exists() and (run_dir / "checkpoints" / "checkpoint-1").is_dir()

    # a failure with room on the disk stays what it is, and is not resumable
    monkeypatch.setattr(core.worker, "free_bytes", lambda _path: 10**12)
    (run_dir / "events.jsonl").unlink()
    try:
        raise ValueError("a bug")
    except ValueError as exc:
        _report_failure(exc, run_dir, sink, 0)
    (record,) = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert record == {
        "type": "failed",
        "rank": 0,
        "user": False,
        "resumable": False,
        "error": "ValueError: a bug",
    }


def test_a_cli_killed_outright_reads_interrupted_at_once(tmp_path, embedded_path):
    """SIGKILL of ``launch.py train``: the worker ends with it (parent-death signal) and the run reads
    "interrupted" as soon as both are gone, though its log was written seconds ago."""
    cli, run_dir = _cli_until_a_step(tmp_path, 1)
    assert read_run(run_dir).status == RUNNING_ELSEWHERE
    cli.kill()
    cli.wait(30)
    deadline = time.monotonic() + 60
    while processes_of(run_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_of(run_dir) == []
    while recorded_alive(run_dir) and time.monotonic() < deadline:  # a process with its command line already
        time.sleep(0.1)  # released may take a moment more to exit
    assert time.time() - (run_dir / "train.log").stat().st_mtime < 120  # the old rule would say "running"
    assert read_run(run_dir).status == INTERRUPTED, (run_dir / PROCESS_FILE).read_text()


def _enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_start_on_a_full_disk_names_it_and_leaves_no_folder(tmp_path, monkeypatch):
    import core.job

    monkeypatch.setattr(core.job, "write_json_atomic", _enospc)
    with pytest.raises(DiskFullError, match=r"disk full: [\d.,]+ MB free on "):
        TrainingJob(TrainingSlot()).start(cfg_for(tmp_path))
    assert list((tmp_path / "runs").iterdir()) == []


def test_an_atomic_write_that_fails_leaves_no_temporary_file(tmp_path, monkeypatch):
    import core.runs

    target = tmp_path / "result.json"
    target.write_text('{"status": "old"}')
    monkeypatch.setattr(core.runs.os, "replace", _enospc)
    with pytest.raises(OSError):
        write_json_atomic(target, {"status": "new"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]
    assert json.loads(target.read_text()) == {"status": "old"}
