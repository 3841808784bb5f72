"""Runs tab: every run folder under the runs folder (also after an app restart), the charts and details of the one
picked (title, note, exports), and managing it: a title and a note (core.run_admin, run_meta.json), and deletion
with a confirmation step, refused while the run is in use."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from core import run_admin as admin
from core.run_admin import RunAdminError, list_exports, read_meta, resolve_run
from core.runs import RunSummary, read_metrics_tolerant, read_run
from ui.charts import training_figure
from ui.i18n import tr
from ui.tabs.runs_views import (  # noqa: F401  (tests and ui.app import them from here)
    _HTML,
    _ORDERED,
    _PUNCT,
    COLUMN_WIDTHS,
    METHOD_LABELS,
    NOTE_CELL_CHARS,
    PICK_HINT,
    RUN_HEADERS,
    STATUS_WORDS,
    _first_line,
    _mib,
    _when,
    export_lines,
    literal,
    run_markdown,
    runs_frame,
    runs_table,
    short_model,
    status_text,
)


def _read(run_dir: str | Path, live_run_dir: str | None = None, live_status: str = "") -> RunSummary:
    """read_run with the live job's status for the folder it writes (not "running (another process)")."""
    live = live_run_dir and Path(live_run_dir).resolve() == Path(run_dir).resolve()
    return read_run(run_dir, live_status if live else None)


def run_view(run_dir: str | None, live_run_dir: str | None = None, live_status: str = "") -> tuple[Any, str]:
    """(figure, markdown) for one run folder, read from disk; (None, hint) when none is given. The live job's
    folder (``live_run_dir``) shows ``live_status``."""
    if not run_dir:
        return None, tr(PICK_HINT)
    run = _read(run_dir, live_run_dir, live_status)
    rows, _ = read_metrics_tolerant(run_dir)  # problems are already in run.problems
    return training_figure(rows, run.estimate_gib, run.device), run_markdown(run)


def selected_folder(evt: gr.SelectData) -> str | None:
    """The run folder name (first column) of the table row that was clicked."""
    row = evt.row_value or []
    folder = row[0] if row else None
    if isinstance(folder, dict):  # a cell sent as {"value": ...}
        folder = folder.get("value")
    return str(folder) if folder else None


def message(exc: RunAdminError) -> str:
    """A RunAdminError in the page's language (a run status among its values translated too)."""
    values = dict(exc.values)
    if isinstance(values.get("status"), str):
        values["status"] = status_text(values["status"])
    if values.get("what") in (admin.BEING_EXPORTED, admin.OPEN_IN_CHAT):
        values["what"] = tr(values["what"])
    return tr(exc.template).format(**values)


# ---- handlers (plain values in, component values out; ui.app resolves the session's runs folder) ---------------
def pick(
    runs_dir: str | Path, folder: str | None, live_run_dir: str | None = None, live_status: str = ""
) -> tuple[Any, ...]:
    """A row was selected: (chart, details, selected folder name, title, note, manage panel, confirm panel,
    status). An unknown or unsafe folder shows why and hides the panel."""
    hidden = gr.update(visible=False)
    if not folder:
        return None, tr(PICK_HINT), "", "", "", hidden, hidden, ""
    try:
        run = resolve_run(runs_dir, folder)
    except RunAdminError as exc:
        return None, message(exc), "", "", "", hidden, hidden, ""
    figure, details = run_view(str(run), live_run_dir, live_status)
    meta, _ = read_meta(run)
    return figure, details, run.name, meta.title, meta.note, gr.update(visible=True), hidden, ""


def details_markdown(
    runs_dir: str | Path, folder: str | None, live_run_dir: str | None = None, live_status: str = ""
) -> str:
    """The selected run's details again (after a language switch or a save); the hint when none is selected."""
    if not folder:
        return tr(PICK_HINT)
    try:
        return run_markdown(_read(resolve_run(runs_dir, folder), live_run_dir, live_status))
    except RunAdminError as exc:
        return message(exc)


def save(runs_dir: str | Path, folder: str, title: str, note: str) -> tuple[str, Any]:
    """Save the selected run's title and note: (status line, refreshed details)."""
    try:
        meta = admin.save_meta(runs_dir, folder, title, note)
        run = resolve_run(runs_dir, folder)
    except RunAdminError as exc:
        return "**" + tr("Not saved.") + "** " + message(exc), gr.skip()
    shown = literal(meta.title) if meta.title else f"`{run.name}`"
    return tr("Saved the title and note of {name}.").format(name=shown), details_markdown(runs_dir, run.name)


def ask_delete(
    runs_dir: str | Path, folder: str, active_run_dir: str | None, active_status: str
) -> tuple[Any, str, str]:
    """First click on Delete: (confirm panel, its question, status). A run in use is refused here already."""
    hidden = gr.update(visible=False)
    try:
        run = resolve_run(runs_dir, folder)
        reason = admin.busy_reason(run, active_run_dir, active_status)
        if reason is not None:
            raise reason
    except RunAdminError as exc:
        return hidden, "", "**" + tr("Cannot delete.") + "** " + message(exc)
    meta, _ = read_meta(run)
    exports = list_exports(run)
    name = f"`{run.name}`" + (f" ({literal(meta.title)})" if meta.title else "")
    question = tr("Really delete {name}? Its folder goes with everything in it: checkpoints, adapter").format(
        name=name
    )
    if exports:
        question += tr(" and {n} export(s)").format(n=len(exports))
    question += ". " + tr("This cannot be undone.")
    return gr.update(visible=True), "**" + question + "**", ""


def cancel_delete() -> tuple[Any, str]:
    """Cancel: (confirm panel hidden, status)."""
    return gr.update(visible=False), tr("Nothing was deleted.")


def confirm_delete(
    runs_dir: str | Path, folder: str, active_run_dir: str | None, active_status: str
) -> tuple[Any, ...]:
    """Second click: delete (checked again: the run may have started meanwhile). Returns (confirm panel, status,
    selected folder, manage panel, chart, details); after a deletion the selection is cleared."""
    hidden = gr.update(visible=False)
    try:
        done = admin.delete_run(runs_dir, folder, active_run_dir, active_status)
    except RunAdminError as exc:
        return hidden, "**" + tr("Not deleted.") + "** " + message(exc), *(gr.skip(),) * 4
    text = tr("Deleted {name} ({size} freed, {n} export(s) with it).").format(
        name=f"`{done.name}`", size=_mib(done.size_bytes), n=done.exports
    )
    return hidden, text, "", hidden, None, tr(PICK_HINT)


# ---- layout and wiring ------------------------------------------------------------------------------------------
def render() -> dict[str, Any]:
    """Build the tab. Returns its components: caption, refresh, table, details, chart; manage (the panel shown
    once a run is selected), selected (gr.State: the folder name), title, note, save, delete, confirm (the
    confirmation panel), confirm_text, confirm_delete, cancel, status. ``wire`` connects them."""
    with gr.Row():
        caption = gr.Markdown(PICK_HINT)
        refresh = gr.Button("Refresh", scale=0, min_width=120)
    table = gr.Dataframe(
        headers=RUN_HEADERS, interactive=False, wrap=True, max_height=420, column_widths=COLUMN_WIDTHS
    )
    details = gr.Markdown()
    selected = gr.State("")
    with gr.Group(visible=False) as manage:
        with gr.Row():
            title = gr.Textbox(
                label="Title",
                info=f"A name for this run, up to {admin.TITLE_MAX_CHARS} characters; the folder keeps its name.",
                max_lines=1,
                scale=2,
            )
            note = gr.Textbox(
                label="Note", info=f"Free text, up to {admin.NOTE_MAX_CHARS} characters.", lines=2, scale=3
            )
        with gr.Row():
            save_button = gr.Button("Save title and note", scale=0, min_width=240)
            delete = gr.Button("Delete run...", variant="stop", scale=0, min_width=180)
        with gr.Row(visible=False) as confirm:
            confirm_text = gr.Markdown()
            confirm_delete_button = gr.Button("Delete", variant="stop", scale=0, min_width=120)
            cancel = gr.Button("Cancel", scale=0, min_width=120)
    status = gr.Markdown()
    chart = gr.Plot(label="Selected run")
    names = "caption refresh table details chart manage selected title note save delete confirm confirm_text"
    parts = (
        caption,
        refresh,
        table,
        details,
        chart,
        manage,
        selected,
        title,
        note,
        save_button,
        delete,
        confirm,
    )
    parts += (confirm_text, confirm_delete_button, cancel, status)
    return dict(zip([*names.split(), "confirm_delete", "cancel", "status"], parts, strict=True))


def wire(
    r: dict[str, Any],
    output_dir: gr.components.Component,
    runs_dir: Callable[[gr.Request, str], Path],
    active: Callable[[gr.Request], tuple[str | None, str]],
    triggers: tuple[Any, ...] = (),
) -> list[tuple[Callable[..., Any], list[Any], list[Any]]]:
    """Connect the tab's events (call inside the Blocks, after render()).

    Args:
        r: render()'s components.
        output_dir: the Train tab's runs-folder textbox.
        runs_dir: (request, typed output_dir) -> the session's runs folder, checked to lie in its workspace
            (ui.session.SessionUI.runs_dir; raises gr.Error otherwise).
        active: request -> (the live job's run folder or None, its JobSnapshot.status).
        triggers: more events that refresh the table, e.g. the page load's ``.then`` and the tab's ``.select``.

    Returns:
        (fn, inputs, outputs) steps that render the table and the details again in the page's language, for
        ui.language.wire's ``rerender``.
    """
    table_out = [r["table"], r["caption"]]

    def refresh(output: str, request: gr.Request) -> tuple[Any, str]:
        live, status = active(request)
        return runs_table(str(runs_dir(request, output)), live, status)

    # Buttons of a panel hidden at load keep the load-time language after a switch (Gradio re-labels mounted
    # components only): they are labelled again in the page's language each time their panel is shown.
    def labels(*texts: str) -> tuple[Any, ...]:
        return tuple(gr.update(value=tr(text)) for text in texts)

    def on_select(output: str, evt: gr.SelectData, request: gr.Request) -> tuple[Any, ...]:
        picked = pick(runs_dir(request, output), selected_folder(evt), *active(request))
        return (*picked, *labels("Save title and note", "Delete run..."))

    def on_details(output: str, folder: str, request: gr.Request) -> str:
        return details_markdown(runs_dir(request, output), folder, *active(request))

    def on_save(output: str, folder: str, title: str, note: str, request: gr.Request) -> tuple[str, str]:
        return save(runs_dir(request, output), folder, title, note)

    def on_ask(output: str, folder: str, request: gr.Request) -> tuple[Any, ...]:
        return (*ask_delete(runs_dir(request, output), folder, *active(request)), *labels("Delete", "Cancel"))

    def on_confirm(output: str, folder: str, request: gr.Request) -> tuple[Any, ...]:
        return confirm_delete(runs_dir(request, output), folder, *active(request))

    private = {"api_visibility": "private"}
    r["refresh"].click(refresh, output_dir, table_out, api_name="list_runs")
    for trigger in triggers:
        trigger(refresh, output_dir, table_out, **private)
    pick_out = [
        r["chart"], r["details"], r["selected"], r["title"], r["note"], r["manage"], r["confirm"], r["status"]
    ]  # fmt: skip
    r["table"].select(on_select, output_dir, [*pick_out, r["save"], r["delete"]], **private)
    r["save"].click(
        on_save, [output_dir, r["selected"], r["title"], r["note"]], [r["status"], r["details"]], **private
    ).then(refresh, output_dir, table_out, **private)
    ask_out = [r["confirm"], r["confirm_text"], r["status"], r["confirm_delete"], r["cancel"]]
    r["delete"].click(on_ask, [output_dir, r["selected"]], ask_out, **private)
    r["cancel"].click(cancel_delete, None, [r["confirm"], r["status"]], **private)
    confirm_out = [r["confirm"], r["status"], r["selected"], r["manage"], r["chart"], r["details"]]
    r["confirm_delete"].click(on_confirm, [output_dir, r["selected"]], confirm_out, **private).then(
        refresh, output_dir, table_out, **private
    )
    return [(refresh, [output_dir], table_out), (on_details, [output_dir, r["selected"]], [r["details"]])]
