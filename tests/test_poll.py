"""The Train tab's poll (ui/poll.py): rendered once per change, each page sent only what changed.

The fast tests drive PollRenderer with real JobSnapshot objects from a stand-in job (the only part of TrainingJob the
poll reads is ``snapshot()``); the slow one polls a real launched app over plain HTTP while it trains.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path

import gradio as gr
import pytest
from gradio.components.plot import PlotData

from core.events import JobSnapshot
from tests.conftest import ASSETS, running_app
from ui.poll import LOG_LINES, PollRenderer
from ui.views import status_markdown


class Job:
    """A job whose snapshot the test replaces, as TrainingJob replaces its own on every event."""

    def __init__(self, snap: JobSnapshot) -> None:
        self.snap = snap

    def snapshot(self) -> JobSnapshot:
        return self.snap


def row(step: int) -> dict[str, float]:
    return {
        "step": step,
        "loss": 2.0 - 0.1 * step,
        "learning_rate": 5e-4,
        "grad_norm": 1.0,
        "elapsed_s": step,
    }


def training(steps: int, logs: int) -> JobSnapshot:
    return JobSnapshot(
        status="training",
        run_dir="runs/run-1",
        step=steps,
        max_steps=10,
        history=tuple(row(s) for s in range(1, steps + 1)),
        logs=tuple(f"line {i}" for i in range(logs)),
        log_total=logs,
        message="Training...",
        info={"device": "cpu"},
    )


def xs(plot: str) -> list[float]:
    """The steps of the chart's first series (the per-batch loss) in a serialized plotly figure."""
    return json.loads(plot)["data"][0]["x"]


def size_bytes(answer: tuple) -> int:
    """Bytes of the answer as JSON (PlotData as gradio serializes it); the marker is state, never sent."""
    parts = [a.model_dump() if isinstance(a, PlotData) else a for a in answer[:-1]]
    return len(json.dumps(parts))


def test_a_fresh_page_gets_everything_then_only_what_changed():
    job, renderer = Job(training(3, 5)), PollRenderer()
    skip = gr.skip()

    status, chart, logs, start, stop, _bar, marker = first = renderer.poll(job, None)
    assert status == status_markdown(job.snap) and "step 3/10" in status
    assert isinstance(chart, PlotData) and '"train loss (each batch)"' in chart.plot
    assert logs == "\n".join(f"line {i}" for i in range(5))
    assert start == gr.update(interactive=False) and stop == gr.update(interactive=True)

    again = renderer.poll(job, marker)  # nothing changed: the status line alone
    assert again[0] == status and all(part == skip for part in again[1:5]), again
    assert size_bytes(again) < 1000 < 5 * 1000 < size_bytes(first), (size_bytes(again), size_bytes(first))

    job.snap = replace(job.snap, logs=(*job.snap.logs, "line 5"), log_total=6)  # a log line, no new point
    _, chart, logs, start, stop, _bar, marker = renderer.poll(job, again[-1])
    assert chart == skip and logs.endswith("line 4\nline 5") and start == stop == skip

    job.snap = replace(training(4, 6), message="step 4")  # a new point: the chart is sent, with it
    status, chart, logs, start, stop, _bar, marker = renderer.poll(job, marker)
    assert "step 4/10" in status and isinstance(chart, PlotData) and xs(chart.plot) == [1, 2, 3, 4]
    assert logs == skip and start == stop == skip

    job.snap = replace(job.snap, status="completed")  # the buttons flip once the job ends
    _, chart, logs, start, stop, _bar, marker = renderer.poll(job, marker)
    assert chart == logs == skip
    assert start == gr.update(interactive=True) and stop == gr.update(interactive=False)
    assert renderer.poll(job, marker)[3] == skip


def test_the_chart_is_built_once_per_history_length_for_every_page():
    job, renderer = Job(training(3, 5)), PollRenderer()
    pages = [renderer.poll(job, None) for _ in range(5)]  # five fresh pages
    for _ in range(3):
        pages = [renderer.poll(job, page[-1]) for page in pages]
    assert renderer.figures_built == 1
    job.snap = replace(training(4, 5))  # a new snapshot object, one more point
    charts = {id(renderer.poll(job, page[-1])[1]) for page in pages}
    assert renderer.figures_built == 2 and len(charts) == 1  # one PlotData shared by every page
    job.snap = replace(job.snap, message="Saving...")  # a new snapshot, same points: not rebuilt
    renderer.poll(job, None)
    assert renderer.figures_built == 2


def test_a_new_run_with_as_many_points_is_sent_again():
    job, renderer = Job(training(3, 5)), PollRenderer()
    marker = renderer.poll(job, None)[-1]
    other = tuple({**r, "loss": r["loss"] + 1} for r in job.snap.history)  # as many points, other losses
    job.snap = replace(job.snap, run_dir="runs/run-2", history=other)  # and as many log lines
    _, chart, logs, _, _, _, marker = renderer.poll(job, marker)
    assert isinstance(chart, PlotData) and json.loads(chart.plot)["data"][0]["y"] == [2.9, 2.8, 2.7]
    assert logs == "\n".join(f"line {i}" for i in range(5))
    job.snap = replace(job.snap, run_dir="runs/run-3")  # a chart drawn the same is not sent again
    assert renderer.poll(job, marker)[1] == gr.skip() and renderer.figures_built == 3


def test_the_log_box_shows_the_last_lines_only():
    job = Job(training(1, 200))
    logs = PollRenderer().poll(job, None)[2]
    assert logs.splitlines() == [f"line {i}" for i in range(200 - LOG_LINES, 200)]


def call_poll(url: str, session_hash: str | None) -> tuple[int, list]:
    """One poll over plain HTTP, as the REST API documents it; returns (answer bytes, outputs)."""
    body = {"data": [], **({"session_hash": session_hash} if session_hash else {})}
    req = urllib.request.Request(
        f"{url}gradio_api/call/poll", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    event = json.load(urllib.request.urlopen(req, timeout=60))["event_id"]
    raw = urllib.request.urlopen(f"{url}gradio_api/call/poll/{event}", timeout=60).read()
    line = next(x for x in raw.decode().splitlines() if x.startswith("data:"))
    return len(raw), json.loads(line[5:])


@pytest.mark.slow
def test_a_polling_page_over_http_is_sent_the_chart_only_when_a_point_is_added(tmp_path):
    from gradio_client import Client

    with running_app(tmp_path) as url:
        Client(url, verbose=False).predict(
            dataset_name=str(ASSETS / "humaneval_alpaca.jsonl"),
            max_steps=3,
            max_length=128,
            per_device_train_batch_size=1,
            monitor_rows=0,
            save_steps=0,
            output_dir="runs",
            api_name="/start",
        )
        page = uuid.uuid4().hex[:11]  # one browser tab's session
        answers = []
        deadline = time.time() + 600
        while time.time() < deadline:
            answers.append(call_poll(url, page))
            if "COMPLETED" in answers[-1][1][0] or "FAILED" in answers[-1][1][0]:
                break
            time.sleep(0.3)
        assert "COMPLETED" in answers[-1][1][0], answers[-1][1][0]
        charts = [outputs[1] for _, outputs in answers if outputs[1] and "plot" in outputs[1]]
        # the first answer, then a chart only when it changed (the run's device and estimate known, each of the
        # three logged steps): never the same chart twice, and most answers carry none
        plots = [chart["plot"] for chart in charts]
        assert all(a != b for a, b in zip(plots, plots[1:])), len(plots)
        assert 4 <= len(charts) <= 6 < 2 * len(charts) < len(answers), (len(charts), len(answers))
        assert xs(charts[-1]["plot"]) == [1, 2, 3]
        size, outputs = call_poll(url, page)  # nothing changed since: the status line, a few hundred bytes
        assert "COMPLETED" in outputs[0] and size < 1500 and "plot" not in json.dumps(outputs[1:]), size
        full, outputs = call_poll(url, None)  # a new page: everything, once
        assert full > 5 * size and xs(outputs[1]["plot"]) == [1, 2, 3] and "trainable params" in outputs[2]
        assert Path(tmp_path, "runs").is_dir()


CHART = """() => {
    const plot = [...document.querySelectorAll('.js-plotly-plot')].filter(p => p.offsetParent)[0];
    const loss = plot && (plot.data || []).find(t => (t.name || '').startsWith('train loss'));
    return loss ? loss.x.length : 0;
}"""


@pytest.mark.slow
def test_in_a_browser_the_chart_grows_a_reload_shows_it_whole_and_an_unchanged_poll_is_small(tmp_path):
    import shutil

    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from gradio_client import Client

    with running_app(tmp_path) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        answers = []  # the page's timer ticks: POST /gradio_api/run/predict (the poll skips the queue)
        page.on(
            "response", lambda r: answers.append(r) if r.url.endswith("/gradio_api/run/predict") else None
        )
        page.goto(url)
        page.get_by_role("tab", name="4. Train").click()
        Client(url, verbose=False).predict(
            dataset_name=str(ASSETS / "humaneval_alpaca.jsonl"),
            max_steps=6,
            max_length=128,
            per_device_train_batch_size=1,
            monitor_rows=0,
            save_steps=0,
            output_dir="runs",
            api_name="/start",
        )
        seen, reloaded = [], None
        deadline = time.time() + 600
        while time.time() < deadline:
            seen.append(page.evaluate(CHART))
            if reloaded is None and 0 < seen[-1] < 6:  # a reload mid-run re-attaches with every point so far
                reloaded = seen[-1]
                page.reload()
                answers.clear()  # the earlier page's answers went with it
                page.get_by_role("tab", name="4. Train").click()
                page.wait_for_function(f"({CHART})() >= {reloaded}", timeout=60_000)
            if page.get_by_text("COMPLETED").filter(visible=True).count():
                break
            page.wait_for_timeout(700)
        page.wait_for_function(f"({CHART})() === 6", timeout=30_000)
        assert reloaded and len({n for n in seen if 0 < n < 6}) >= 2, seen  # it grew live, across the reload
        during = [len(r.body()) for r in answers]
        answers.clear()
        page.wait_for_timeout(4000)  # four ticks with nothing new
        after = [r.body() for r in answers]
        assert len(after) >= 3 and all(len(b) < 1500 and b"plotly" not in b for b in after), [
            len(b) for b in after
        ]
        assert max(during) > 5000  # the chart itself did come to the reloaded page
        browser.close()


def test_elapsed_and_eta_move_between_steps_while_training():
    """A CPU step can take a minute: the status line's clock counts on every poll, not only when a step ends."""
    now = [100.0]
    snap = replace(training(3, 5), elapsed_s=10.0, eta_s=100.0)
    job, renderer = Job(snap), PollRenderer(clock=lambda: now[0])
    first = renderer.poll(job, None)[0]
    assert "elapsed 10s" in first and "ETA 1m 40s" in first
    now[0] += 5
    later = renderer.poll(job, None)[0]
    assert "elapsed 15s" in later and "ETA 1m 35s" in later and "step 3/10" in later
    job.snap = replace(snap, status="completed", eta_s=None)  # ended: the recorded time, not a running clock
    renderer.poll(job, None)
    now[0] += 60
    assert "elapsed 10s" in renderer.poll(job, None)[0]


def test_a_finished_run_deleted_later_says_so(tmp_path):
    folder = tmp_path / "run-1"
    folder.mkdir()
    job = Job(replace(training(3, 5), status="completed", run_dir=str(folder), eta_s=None))
    renderer = PollRenderer()
    assert "since been deleted" not in renderer.poll(job, None)[0]
    folder.rmdir()  # the Runs tab's Delete
    assert "This run's folder has since been deleted." in renderer.poll(job, None)[0]
