"""Shared demo safety: per-session workspaces, typed paths kept inside them, the training queue, old sessions cleaned
up; and the real app over HTTP proving one session cannot list, download, export or stop another's run."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from core.config import TrainingConfig
from core.errors import ConfigError
from core.job import TrainingJob
from core.slot import TrainingSlot
from core.workspace import Sessions, Workspace, check_name, new_key
from tests.conftest import ASSETS, running_app


def test_typed_names_and_folders_stay_inside_the_workspace(tmp_path):
    ws = Workspace(tmp_path / "ws")
    (tmp_path / "ws").mkdir()
    assert ws.output_dir("runs") == tmp_path / "ws" / "runs"
    assert ws.output_dir("team/runs-2") == tmp_path / "ws" / "team" / "runs-2"
    for bad in ("../runs", "/etc", "~/runs", "runs/../../x", "a b", "runs;rm", ".hidden", "ok/..", "é"):
        with pytest.raises(ConfigError, match="output_dir"):
            ws.output_dir(bad)
    (tmp_path / "outside").mkdir()
    (tmp_path / "ws" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(ConfigError, match="leads outside the workspace"):
        ws.output_dir("link")
    assert check_name("merged-v2.1", "export name") == "merged-v2.1"
    for bad in ("..", "a/b", "", "-x" * 40, "x\x00y"):
        with pytest.raises(ConfigError, match="export name"):
            check_name(bad, "export name")
    with pytest.raises(ConfigError, match="resume_from_checkpoint.*not in the workspace"):
        ws.bind(TrainingConfig(resume_from_checkpoint=str(tmp_path / "outside")))
    # a reloaded page gets the running job's settings back: the bound folder goes back to a name that binds again
    for typed in ("runs", "team/runs-2"):
        bound = ws.bind(TrainingConfig(output_dir=typed)).output_dir
        assert Path(bound).is_absolute() and ws.typed_output_dir(bound) == typed
        assert ws.output_dir(ws.typed_output_dir(bound)) == Path(bound)
    assert ws.typed_output_dir(str(tmp_path / "outside")) == "runs" and ws.typed_output_dir("") == "runs"


def test_a_private_session_binds_its_config_to_its_own_folders(tmp_path):
    sessions = Sessions(private=True, root=tmp_path / "sessions")
    key_a, key_b = new_key(), new_key()
    ws_a, job_a = sessions.get(key_a)
    ws_b, job_b = sessions.get(key_b)
    assert ws_a.root != ws_b.root and job_a is not job_b and sessions.get(key_a)[1] is job_a
    assert key_a not in str(ws_a.root)  # the folder is a hash: the key never reaches the disk
    sample = str(ASSETS / "humaneval_alpaca.jsonl")
    cfg = ws_a.bind(TrainingConfig(dataset_name=sample, output_dir="/etc"))  # typed output_dir is ignored
    assert cfg.output_dir == str(ws_a.runs_dir)
    (ws_b.uploads_dir).mkdir(parents=True)
    theirs = ws_b.uploads_dir / "data.jsonl"
    theirs.write_text('{"prompt": "a", "completion": "b"}\n')
    problems = None
    try:
        ws_a.bind(TrainingConfig(dataset_name=str(theirs), resume_from_checkpoint=str(ws_b.runs_dir)))
    except ConfigError as exc:
        problems = exc.problems
    assert problems is not None and len(problems) == 2  # both named at once
    assert "dataset_name" in problems[0] and "resume_from_checkpoint" in problems[1]
    assert ws_b.bind(TrainingConfig(dataset_name=str(theirs))).dataset_name == str(theirs)
    assert ws_a.bind(TrainingConfig(dataset_name="owner/dataset")).dataset_name == "owner/dataset"  # hub id
    # an accelerate config file would be read from anywhere on the server: refused before anything opens it
    with pytest.raises(ConfigError, match="accelerate_config_file: not available in a shared session"):
        ws_a.bind(TrainingConfig(dataset_name=sample, accelerate_config_file="/etc/hostname"))
    with pytest.raises(ConfigError, match="no session key"):
        sessions.get("short")
    # models: presets and hub ids, never another session's folder or any other local folder
    (ws_b.runs_dir / "run-1" / "merged").mkdir(parents=True)
    (ws_b.runs_dir / "run-1" / "merged" / "config.json").write_text("{}")
    for model in (str(ws_b.runs_dir / "run-1" / "merged"), "/etc", str(ASSETS), "x\x00y"):
        with pytest.raises(ConfigError, match="model_name_or_path"):
            ws_a.check_model(model)
    ws_b.check_model(str(ws_b.runs_dir / "run-1" / "merged"))  # its own export
    ws_a.check_model("Qwen/Qwen2.5-0.5B-Instruct")
    with pytest.raises(ConfigError, match=r"dataset_name: 'a+\.\.\.' is not") as caught:
        ws_a.check_dataset("a" * 5000)
    assert len(str(caught.value)) < 300  # long input is cut in messages


def test_idle_sessions_are_deleted_after_their_time_to_live_and_active_ones_kept(tmp_path):
    sessions = Sessions(private=True, ttl_s=3600, root=tmp_path / "sessions")
    ws_old, _ = sessions.get(new_key())
    ws_new, _ = sessions.get(new_key())
    (ws_old.runs_dir / "run-1").mkdir(parents=True)
    (ws_new.uploads_dir).mkdir(parents=True)
    ws_old.touch()
    ws_new.touch()
    old = time.time() - 7200
    os.utime(ws_old.root / ".last-seen", (old, old))
    assert sessions.cleanup() == [ws_old.key]
    assert not ws_old.root.exists() and ws_new.root.exists()
    assert sessions.cleanup(now=time.time() + 7200) == [ws_new.key]
    # a session that has written nothing yet (an API client) keeps its job within the time-to-live
    key = new_key()
    _, job = sessions.get(key)
    sessions.cleanup()
    assert sessions.get(key)[1] is job and not (sessions.root / Sessions.folder_name(key)).exists()
    sessions.cleanup(now=time.time() + 7200)
    assert sessions.get(key)[1] is not job
    local = Sessions(private=False, root=tmp_path / "local")
    assert local.cleanup(now=time.time() + 10**9) == []  # a local install keeps everything


class _Waiter:
    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining

    def remaining_estimate_s(self) -> float | None:
        return self.remaining


def test_the_slot_serves_jobs_in_order_with_place_and_wait():
    slot = TrainingSlot()
    first, second, third = _Waiter(120.0), _Waiter(60.0), _Waiter(None)
    assert slot.join(first) == 0 and slot.join(second) == 1 and slot.join(third) == 2
    assert slot.wait_estimate_s(second) == 120.0 and slot.wait_estimate_s(third) == 180.0
    seen: list[tuple[int, float | None]] = []
    got = threading.Event()
    stop = threading.Event()

    def wait_second() -> None:
        if slot.wait_turn(second, stop, lambda p, w: seen.append((p, w)), poll_s=0.02):
            got.set()

    thread = threading.Thread(target=wait_second)
    thread.start()
    time.sleep(0.2)
    assert not got.is_set() and seen and seen[-1] == (1, 120.0)
    slot.leave(first)
    thread.join(5)
    assert got.is_set() and slot.place(second) == 0 and slot.place(third) == 1
    first.remaining = None
    assert slot.wait_estimate_s(third) == 60.0
    stop.set()  # a stopped waiter leaves the line without ever holding the slot
    assert slot.wait_turn(third, stop) is False and slot.place(third) is None
    slot.leave(second)
    assert not slot.busy()


def test_a_second_job_waits_in_line_and_stop_leaves_the_queue(tiny_llama, tmp_path):
    slot = TrainingSlot()
    common = dict(
        model_name_or_path=str(tiny_llama),
        dataset_name=str(ASSETS / "humaneval_alpaca.jsonl"),
        max_length=256,
        monitor_rows=0,
        save_steps=0,
    )
    first, second, third = TrainingJob(slot), TrainingJob(slot), TrainingJob(slot)
    first.start(TrainingConfig(**common, max_steps=6, output_dir=str(tmp_path / "a")))
    run_b = second.start(TrainingConfig(**common, max_steps=2, output_dir=str(tmp_path / "b")))
    run_c = third.start(TrainingConfig(**common, max_steps=2, output_dir=str(tmp_path / "c")))
    snap_b, snap_c = second.snapshot(), third.snapshot()
    assert snap_b.status == "queued" and "number 2 in line" in snap_b.message, snap_b.message
    assert snap_c.status == "queued" and "number 3 in line" in snap_c.message
    assert third.stop()
    snap_c = third.wait(30)
    assert snap_c.status == "stopped" and "waiting in the queue" in snap_c.message
    assert not run_c.exists()  # a run that never started leaves no 0-step folder behind
    assert first.wait(300).status == "completed"
    snap_b = second.wait(300)
    assert snap_b.status == "completed" and snap_b.step == 2 and (run_b / "adapter").is_dir()
    assert not slot.busy()


# ------------------------------------------------------------------ the real app, private sessions, over HTTP


@pytest.mark.slow
def test_sessions_cannot_see_each_others_runs_over_http(tmp_path, embedded_path):
    import httpx
    from gradio_client import Client

    sessions = {"LORA_STUDIO_SESSIONS_DIR": str(tmp_path / "sessions")}
    with running_app(tmp_path, "--private-sessions", env=sessions) as url:
        alice, bob = Client(url, verbose=False), Client(url, verbose=False)
        data = str(ASSETS / "humaneval_alpaca.jsonl")
        started = alice.predict(
            dataset_name=data, max_steps=2, max_length=256, save_steps=0, monitor_rows=0, api_name="/start"
        )
        run_a = started.split("`")[1]
        assert "sessions" in run_a and Path(run_a).is_dir()
        queued = bob.predict(
            dataset_name=data, max_steps=1, max_length=256, save_steps=0, monitor_rows=0, api_name="/start"
        )
        assert queued.startswith("Queued") or queued.startswith("Started")
        # Bob sees only his own job and his own runs; stopping stops only his own.
        status = bob.predict(api_name="/poll")[0]
        assert run_a not in status
        assert run_a not in bob.predict("runs", api_name="/list_runs")[1]
        with pytest.raises(Exception, match="not in your session's files"):
            bob.predict(run_a, api_name="/export_adapter")
        with pytest.raises(Exception, match="not in your session's files"):
            bob.predict(run_a, None, "hi", 0.0, 0.9, 4, api_name="/chat")
        deadline = time.time() + 600
        while "COMPLETED" not in (status := alice.predict(api_name="/poll")[0]) and time.time() < deadline:
            assert "FAILED" not in status, status
            time.sleep(2)
        assert "COMPLETED" in status
        message, download, folder = alice.predict(run_a, api_name="/export_adapter")
        assert "Done" in message and Path(download).read_bytes()[:2] == b"PK"
        # Direct URLs to files in a session's folder are refused; the zip is served from gradio's cache only.
        adapter_file = Path(run_a) / "adapter" / "adapter_config.json"
        assert adapter_file.is_file()
        for path in (adapter_file, Path(folder) / "adapter_config.json"):
            assert httpx.get(f"{url}gradio_api/file={path}").status_code == 403
        assert Client(url, verbose=False).predict(api_name="/stop") == "Nothing is running."
        deadline = time.time() + 600
        while "COMPLETED" not in (status := bob.predict(api_name="/poll")[0]) and time.time() < deadline:
            time.sleep(2)
        assert "COMPLETED" in status and run_a not in status


def test_activity_is_written_at_most_once_a_minute_per_workspace(tmp_path):
    """A page polls every second; each poll used to rewrite .last-seen (a file write per visitor per second)."""
    sessions = Sessions(private=True, ttl_s=3600, root=tmp_path / "sessions")
    ws, _ = sessions.get(new_key())
    ws.uploads_dir.mkdir(parents=True)
    ws.touch()
    seen = ws.root / ".last-seen"
    old = time.time() - 30
    os.utime(seen, (old, old))
    for _ in range(5):
        ws.touch()
    assert abs(seen.stat().st_mtime - old) < 1  # not rewritten within the minute
