"""The Train tab's once-a-second poll, made cheap: render a job's state once per change, send a page only what changed.

Every open page (and every REST client) polls ``/poll`` once a second. Two caches keep that cheap:

- per job and language (``ui.i18n.current_lang``), the rendering of its latest snapshot: the status line (per snapshot object), the log text (per
  ``log_total``) and the chart, built and serialized to plotly JSON once per history length (``len(history)``, the
  run folder, the estimate and the device), shared by every page watching that job;
- per page, a marker (a ``gr.State``) of what it was last sent: the chart's and the log's render numbers and
  whether the job was active. An output that has not changed since is answered with ``gr.skip()``, so the browser
  re-renders nothing and an unchanged poll is a few hundred bytes: the status line alone, always sent, because it
  is small and an API client reads it on every call.

A page that has no marker yet (a fresh page load, a reload, a REST call without a ``session_hash``) gets the full
state once.
"""

from __future__ import annotations

import itertools
import os
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import gradio as gr
from gradio.components.plot import PlotData

from core.events import JobSnapshot
from core.job import TrainingJob
from ui.charts import training_figure
from ui.i18n import current_lang, tr
from ui.tabs.train_progress import progress_for
from ui.views import status_markdown

LOG_LINES = 60  # log lines shown in the Train tab's log box (the snapshot keeps up to 200)

# Render numbers, unique in this process: a page's marker compares them, so a rebuilt chart or log text is never
# mistaken for the one the page already has (an id() could be reused once the old object is freed).
_render_numbers = itertools.count(1)


@dataclass
class _Rendered:
    """One job's latest rendering; each part is rebuilt only when its key changes."""

    snap: JobSnapshot | None = None
    seen_at: float = 0.0  # the renderer's clock when this snapshot was first rendered
    status: str = ""
    progress: str = ""
    progress_number: int = 0
    figure_key: tuple[Any, ...] | None = None
    figure: PlotData | None = None
    figure_number: int = 0
    logs_key: tuple[str, int] | None = None
    logs: str = ""
    logs_number: int = 0


Marker = tuple[int, int, bool, int]  # (chart, log render numbers, job active, progress bar number) last sent


class PollRenderer:
    """Renders TrainingJob snapshots for the poll, once per change, and answers each page with what it lacks.

    Thread-safe enough for gradio's worker threads: two polls racing on a change may both render it (the same
    result), never a torn one, because each part is computed before it is stored.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """An empty cache; entries go away with their job (weak keys). ``clock`` (seconds) times how long a
        snapshot has stood, so a training job's elapsed time and ETA move every second between steps."""
        self._clock = clock
        self._cache: weakref.WeakKeyDictionary[TrainingJob, dict[str, _Rendered]] = (
            weakref.WeakKeyDictionary()
        )
        self.figures_built = 0  # charts built and serialized since start (tests read it)

    def render(self, job: TrainingJob) -> tuple[JobSnapshot, _Rendered]:
        """The job's snapshot and its rendering in the current language, rebuilding only the parts whose key changed.

        Chart key: (run folder, len(history), estimate GiB, device); log key: (run folder, log_total); status:
        the snapshot object itself (the job replaces it on every change).
        """
        snap = job.snapshot()
        per_lang = self._cache.get(job)
        if per_lang is None:
            per_lang = self._cache.setdefault(job, {})
        lang = current_lang()
        done = per_lang.get(lang)
        if done is None:
            done = per_lang.setdefault(lang, _Rendered())
        if done.snap is not snap:
            done.seen_at = self._clock()
            done.status = status_markdown(snap)
            progress = progress_for(snap)
            if progress != done.progress:
                done.progress, done.progress_number = progress, next(_render_numbers)
            done.snap = snap
        info = snap.info
        figure_key = (snap.run_dir, len(snap.history), info.get("estimate_gib"), info.get("device"))
        if done.figure_key != figure_key or done.figure is None:
            figure = training_figure(snap.history, info.get("estimate_gib"), info.get("device"))
            plot = PlotData(type="plotly", plot=figure.to_json())  # serialized once, not once per page
            self.figures_built += 1
            if (
                done.figure is None or done.figure.plot != plot.plot
            ):  # e.g. a new run with no point yet: the same
                done.figure, done.figure_number = plot, next(_render_numbers)
            done.figure_key = figure_key
        logs_key = (snap.run_dir, snap.log_total)
        if done.logs_key != logs_key:
            logs = "\n".join(snap.logs[-LOG_LINES:])
            done.logs, done.logs_number, done.logs_key = logs, next(_render_numbers), logs_key
        return snap, done

    def poll(self, job: TrainingJob, sent: Marker | None) -> tuple[Any, ...]:
        """One page's answer: (status, chart, log, Start button, Stop button, progress bar HTML, new marker).

        Args:
            job: the job this page watches.
            sent: the page's marker from its previous answer, or None for a page that has nothing yet.

        Returns:
            The status Markdown (always; while training its elapsed time and ETA count on between steps), then the chart (PlotData), the log text and the two buttons' updates, each
            replaced by ``gr.skip()`` when the page already shows it, the progress bar (ui.tabs.train_progress, also
            skipped when unchanged), and the marker to keep for the next poll.
        """
        snap, done = self.render(job)
        status = done.status
        since = self._clock() - done.seen_at
        if snap.status == "training" and snap.max_steps and since >= 1:  # a step can take minutes on a CPU
            eta = None if snap.eta_s is None else max(0.0, snap.eta_s - since)
            status = status_markdown(replace(snap, elapsed_s=(snap.elapsed_s or 0.0) + since, eta_s=eta))
        if not snap.is_active and snap.run_dir and not os.path.isdir(snap.run_dir):  # deleted in the Runs tab
            status += "\n\n" + tr("This run's folder has since been deleted.")
        active = snap.is_active
        marker: Marker = (done.figure_number, done.logs_number, active, done.progress_number)
        chart, log, buttons, bar = (
            (True, True, True, True)
            if sent is None or len(sent) != len(marker)
            else (sent[0] != marker[0], sent[1] != marker[1], sent[2] != active, sent[3] != marker[3])
        )
        same = gr.skip()
        return (
            status,
            done.figure if chart else same,
            done.logs if log else same,
            gr.update(interactive=not active) if buttons else same,
            gr.update(interactive=active) if buttons else same,
            done.progress if bar else same,
            marker,
        )
