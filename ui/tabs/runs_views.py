"""The Runs tab's formatters: the runs table, a run's details and its exports, titles and notes shown literally."""

from __future__ import annotations

import re
import time
from typing import Any

from core import run_admin as admin
from core.events import ACTIVE, TERMINAL
from core.run_admin import RunExport, RunMeta, list_exports, read_meta
from core.runs import INTERRUPTED, RUNNING_ELSEWHERE, RunSummary, list_runs
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
