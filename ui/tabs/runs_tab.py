"""Runs tab: every run folder under the runs folder (also after an app restart), the charts and details of the one
picked (title, note, exports), and managing it: a title and a note (core.run_admin, run_meta.json), and deletion
with a confirmation step, refused while the run is in use."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from core import run_admin as admin
from core.events import ACTIVE, TERMINAL
from core.run_admin import RunAdminError, RunExport, RunMeta, list_exports, read_meta, resolve_run
from core.runs import INTERRUPTED, RUNNING_ELSEWHERE, RunSummary, list_runs, read_metrics_tolerant, read_run
from ui.charts import training_figure
from ui.i18n import tr

PICK_HINT = "Select a row to see that run's charts, details and exports, and to rename or delete it."
# English headers (tr() at run time), short so that none breaks inside a word. Folder comes first: the folder's
# name is the row's key (selection) and what the Train tab's "Resume from" and the Export tab show; the title, when
# one was given, next to it. The full path is in the details.
RUN_HEADERS = "Folder|Title|Started|Status|Steps|Final loss|Method|Model|r / α|LR|Exports|Note".split("|")
# Shares of the table's width, measured in Chromium at a 1400 px window (the table is 1214 px, cells in Gradio's
# monospace font, ~8.4 px a character plus 16 px padding): Folder 200 px holds run-YYYYmmdd-HHMMSS-n (21
# characters) on one line; Status 109 px "interrupted"; r/α 67 px "64/128"; Exports 85 px its header; dates break
# only at the space, titles and notes at spaces, model names at spaces and after hyphens.
COLUMN_WIDTHS = ["16.5%", "9.5%", "8.5%", "9%", "5%", "6%", "6%", "12.5%", "5.5%", "6%", "7%", "8.5%"]
METHOD_LABELS = {"full": "Full", "lora": "LoRA", "lora8": "LoRA 8-bit", "qlora": "QLoRA"}
STATUS_WORDS = (*TERMINAL, INTERRUPTED, RUNNING_ELSEWHERE, *ACTIVE, "unknown")  # shown through tr()
NOTE_CELL_CHARS = 40


def _when(epoch_s: float) -> str:
    """Local date and time to the minute (the space lets the cell wrap between date and time); "?" if none."""
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch_s))
    except (OverflowError, ValueError, OSError):
        return "?"


def status_text(status: str, short: bool = False) -> str:
    """A run status in the page's language. An "unreadable: <file>: <reason>" status keeps its file and reason,
    or only the file with ``short`` (the table: the reason is in the details)."""
    if status.startswith("unreadable: "):
        reason = status.removeprefix("unreadable: ")
        return tr("unreadable: {reason}").format(reason=reason.split(":", 1)[0] if short else reason)
    return tr(status) if status in STATUS_WORDS else status


def short_model(model: str | None) -> str:
    """The last part of a hub id or path (``HuggingFaceTB/SmolLM2-135M-Instruct`` -> ``SmolLM2-135M-Instruct``):
    the table cell; the full id is in the details."""
    if not model:
        return ""
    return model.rstrip("/").rsplit("/", 1)[-1] or model


_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_PUNCT = set("\\`*_[]()#+-!|~=")  # Markdown syntax characters (= for a setext heading's underline)
_ORDERED = re.compile(r"^(\s*\d+)\.")  # "1. " would start a numbered list


def literal(text: str) -> str:
    """``text`` as Markdown that shows exactly what was typed: &, < and > as HTML entities (no tag is ever
    created), Markdown's syntax characters backslash-escaped (no emphasis, link, image, code, table cell,
    heading, list or strike-through), leading spaces as no-break spaces (no code block), and each line break kept
    as a hard break (two spaces before the newline). For a run's title and note, which a person typed."""
    lines = []
    for line in text.split("\n"):
        out = "".join(_HTML.get(c) or (f"\\{c}" if c in _PUNCT else c) for c in line)
        out = _ORDERED.sub(r"\1\\.", out)
        body = out.lstrip(" ")
        lines.append("&nbsp;" * (len(out) - len(body)) + body)
    return "  \n".join(lines)


def _first_line(text: str, limit: int = NOTE_CELL_CHARS) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit and "\n" not in text.strip() else line[: limit - 1].rstrip() + "…"


def runs_frame(runs: list[RunSummary]) -> Any:
    """The Runs table (pandas DataFrame): one row per run in the order given, headers RUN_HEADERS in the page's
    language, "" where a value is unknown. Started is local time to the minute, loss has 4 decimals, Model the last
    part of the id, Exports the number of exports in the folder, Note the first line of the user's note (a "!" when
    a file could not be read: the details say which), Folder the folder's name and Title the user's title."""
    import pandas as pd

    def cell(value: Any, fmt: str = "{}") -> str:
        return "" if value is None else fmt.format(value)

    rows = []
    for r in runs:
        meta, meta_problem = read_meta(r.path)
        problems = [p for p in r.problems if p not in r.status] + ([meta_problem] if meta_problem else [])
        note = _first_line(meta.note)
        if problems:
            note = ("! " + note).strip()
        rows.append(
            [
                r.name,
                meta.title,
                _when(r.started_at),
                status_text(r.status, short=True),
                cell(r.steps),
                cell(r.final_loss, "{:.4f}"),
                METHOD_LABELS.get(r.method, r.method) if r.method else "",
                short_model(r.model_name_or_path),
                f"{cell(r.lora_r)}/{cell(r.lora_alpha)}" if r.lora_r or r.lora_alpha else "",
                cell(r.learning_rate, "{:g}"),
                str(len(list_exports(r.path))),
                note,
            ]
        )
    return pd.DataFrame(rows, columns=[tr(h) for h in RUN_HEADERS])


def runs_table(output_dir: str, live_run_dir: str | None, live_status: str) -> tuple[Any, str]:
    """(table, caption) for the runs under ``output_dir``; the live job's folder shows ``live_status``. Also
    finishes deletions a crashed process left behind (core.run_admin.remove_stale_deletions)."""
    admin.remove_stale_deletions(output_dir)
    runs = list_runs(output_dir, live_run_dir or None, live_status)
    if not runs:
        return runs_frame([]), tr("No runs yet in `{folder}`. Start one in the Train tab.").format(
            folder=output_dir
        )
    caption = tr("{n} run(s) in `{folder}`, newest first.").format(n=len(runs), folder=output_dir)
    return runs_frame(runs), caption + " " + tr(PICK_HINT)


def _mib(size_bytes: int) -> str:
    """A size for people: KiB below 1 MiB, MiB below 1 GiB, else GiB."""
    if size_bytes < 2**20:
        return f"{size_bytes / 2**10:,.1f} KiB"
    return f"{size_bytes / 2**20:,.1f} MiB" if size_bytes < 2**30 else f"{size_bytes / 2**30:,.2f} GiB"


def export_lines(exports: list[RunExport]) -> list[str]:
    """Markdown list items, one per export: kind, folder, size, verified or not, and its zip."""
    lines = []
    for e in exports:
        kind = tr("merged weights") if e.kind == "merged" else tr("adapter")
        if e.path:
            check = tr("verified") if e.verified else tr("no verification.json")
            line = f"- {kind}: `{e.path}` ({_mib(e.size_bytes)}, {check})"
            if e.zip_path:
                line += "; " + tr("zip: {path}").format(path=f"`{e.zip_path}`")
        else:
            line = f"- {kind}: " + tr("zip only: {path}").format(path=f"`{e.zip_path}`")
        lines.append(line)
    return lines


def run_markdown(run: RunSummary, meta: RunMeta | None = None, exports: list[RunExport] | None = None) -> str:
    """The details under the table: title and folder, status, steps and loss, model and LoRA settings, the note,
    the exports in the folder, and anything that could not be read."""
    meta_problem = None
    if meta is None:
        meta, meta_problem = read_meta(run.path)
    exports = list_exports(run.path) if exports is None else exports
    # the title as typed, never bold: a person's ** must not turn into emphasis (literal)
    head = f"{literal(meta.title)} (`{run.name}`)" if meta.title else f"**{run.name}**"
    text = f"{head}: {status_text(run.status)}"
    if run.steps is not None:
        text += tr(" after {steps} steps").format(steps=run.steps)
    if run.final_loss is not None:
        text += tr(", final loss {loss}").format(loss=f"{run.final_loss:.4f}")
    text += "."
    setup = [f"`{run.model_name_or_path}`"] if run.model_name_or_path else []
    if run.method:
        setup.append(METHOD_LABELS.get(run.method, run.method))
    if run.lora_r is not None or run.lora_alpha is not None:
        setup.append(f"r = {run.lora_r}, α = {run.lora_alpha}")
    if run.learning_rate is not None:
        setup.append(f"lr {run.learning_rate:g}")
    if setup:
        text += "\n\n" + tr("Model: {setup}").format(setup=" · ".join(setup))
    text += "\n\n" + tr("Folder: {path}").format(path=f"`{run.path}`")
    if meta.note:
        text += "\n\n" + tr("Note:") + "\n\n> " + literal(meta.note).replace("\n", "\n> ")
    if exports:
        text += (
            "\n\n" + tr("Exports ({n}):").format(n=len(exports)) + "\n\n" + "\n".join(export_lines(exports))
        )
    else:
        text += "\n\n" + tr("No exports yet: export this run in the Export tab.")
    problems = list(run.problems) + ([meta_problem] if meta_problem else [])
    if problems:
        text += "\n\n" + tr("Could not read: {problems}").format(problems="; ".join(problems))
    return text


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
