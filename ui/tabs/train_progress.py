"""The Train tab's progress bar (a pure HTML formatter the poll calls) and the log box's follow-the-end script."""

from __future__ import annotations

import html

from core.events import COMPLETED, FAILED, LOADING, QUEUED, SAVING, STOPPED, STOPPING, JobSnapshot
from ui.i18n import tr
from ui.views import fmt_duration

LOG_CLASS = "studio-train-log"
# Follows the log's end as lines arrive, unless the user scrolled up to read: only the user's own scrolling
# (wheel, touch, keys, scrollbar drag) changes "follow", so a value replaced by the poll never counts as one.
FOLLOW_LOG_JS = (
    """
() => {
  const box = document.querySelector('.LOG_CLASS textarea');
  if (!box) return;
  const atEnd = () => box.scrollHeight - box.scrollTop - box.clientHeight < 8;
  if (!box.dataset.followWired) {
    box.dataset.followWired = '1';
    box.dataset.follow = '1';
    let userAt = 0;
    const user = () => { userAt = performance.now(); };
    for (const ev of ['wheel', 'touchmove', 'keydown', 'pointerdown']) {
      box.addEventListener(ev, user, { passive: true });
    }
    box.addEventListener('scroll', () => {
      if (performance.now() - userAt < 1500) box.dataset.follow = atEnd() ? '1' : '0';
    }, { passive: true });
  }
  if (box.dataset.follow === '1') requestAnimationFrame(() => { box.scrollTop = box.scrollHeight; });
}
"""
).replace("LOG_CLASS", LOG_CLASS)

BAR_COLORS = {COMPLETED: "#16a34a", STOPPED: "#d97706", FAILED: "#dc2626"}


def progress_html(
    step: int, max_steps: int, eta_s: float | None, state: str, elapsed_s: float | None = None
) -> str:
    """The Train tab's progress bar: an HTML ``<progress>`` of optimizer steps with a line under it.

    Args:
        step / max_steps: optimizer steps done / planned (max_steps 0 while loading: an indeterminate bar).
        eta_s: seconds left (core.callbacks.StepClock's estimate), None while unknown.
        state: the job's status (core.events): idle shows nothing; queued and loading an indeterminate bar;
            training the steps and the time left; stopping and saving the steps and what is happening;
            completed, stopped and failed a final bar in green, amber or red.
        elapsed_s: seconds since training started, shown when given.

    Returns:
        HTML for a gr.HTML ("" when idle). Text in the page's language (``tr``); numbers are not translated.
    """
    if state == "idle" or not state:
        return ""
    waiting = {QUEUED: tr("Waiting for the machine..."), LOADING: tr("Loading data and model...")}
    if state in (COMPLETED, STOPPED, FAILED) and max_steps <= 0:  # ended before its first step: an empty bar
        bar = '<progress value="0" max="1" style="width:100%;height:1.2em"></progress>'
        left = tr("Nothing was trained.") if state != FAILED else tr("Failed before the first step.")
        right = ""
    elif state in waiting or max_steps <= 0:
        bar = '<progress style="width:100%;height:1.2em"></progress>'
        left = waiting.get(state, tr("Preparing..."))
        right = ""
    else:
        step = max(0, min(step, max_steps))
        pct = 100 * step / max_steps
        color = BAR_COLORS.get(state)
        style = "width:100%;height:1.2em" + (f";accent-color:{color}" if color else "")
        bar = f'<progress value="{step}" max="{max_steps}" style="{style}">{pct:.0f}%</progress>'
        left = tr("Step {step} of {max_steps} ({pct}%)").format(
            step=step, max_steps=max_steps, pct=f"{pct:.0f}"
        )
        if state == COMPLETED:
            right = tr("Done")
        elif state == STOPPED:
            right = tr("Stopped at step {step}").format(step=step)
        elif state == FAILED:
            right = tr("Failed at step {step}").format(step=step)
        elif state == STOPPING:
            right = tr("Stopping after this step...")
        elif state == SAVING:
            right = tr("Saving the adapter...")
        elif eta_s is None:
            right = tr("estimating the time left...")
        else:
            right = tr("about {eta} left").format(eta=fmt_duration(eta_s))
        if elapsed_s is not None and elapsed_s > 0:
            left += " · " + tr("{elapsed} elapsed").format(elapsed=fmt_duration(elapsed_s))
    label = html.escape(tr("Training progress"))
    return (
        f'<div class="studio-progress" role="group" aria-label="{label}">{bar}'
        '<div style="display:flex;justify-content:space-between;gap:1em;font-size:0.9em">'
        f"<span>{html.escape(left)}</span><span>{html.escape(right)}</span></div></div>"
    )


def progress_for(snap: JobSnapshot) -> str:
    """``progress_html`` of a job snapshot (what the poll shows under the status line)."""
    return progress_html(snap.step, snap.max_steps, snap.eta_s, snap.status, snap.elapsed_s)
