"""Runs tab: every run folder under the runs folder (also after an app restart), and the charts of the one picked."""

from __future__ import annotations

from typing import Any

import gradio as gr

from core.runs import list_runs, read_metrics_tolerant, read_run
from ui.charts import training_figure
from ui.views import RUN_COLUMNS, run_markdown, runs_frame

PICK_HINT = "Select a row to see that run's charts (from its `metrics.jsonl`)."


def runs_table(output_dir: str, live_run_dir: str | None, live_status: str) -> tuple[Any, str]:
    """(table, caption) for the runs under ``output_dir``; the live job's folder shows ``live_status``."""
    runs = list_runs(output_dir, live_run_dir or None, live_status)
    if not runs:
        return runs_frame([]), f"No runs yet in `{output_dir}`. Start one in the Train tab."
    return runs_frame(runs), f"{len(runs)} run(s) in `{output_dir}`, newest first. {PICK_HINT}"


def run_view(run_dir: str | None) -> tuple[Any, str]:
    """(figure, markdown) for one run folder, read from disk; (None, hint) when none is given."""
    if not run_dir:
        return None, PICK_HINT
    run = read_run(run_dir)
    rows, _ = read_metrics_tolerant(run_dir)  # problems are already in run.problems
    return training_figure(rows, run.estimate_gib, run.device), run_markdown(run)


def selected_folder(evt: gr.SelectData) -> str | None:
    """The run folder (last column) of the table row that was clicked."""
    row = evt.row_value or []
    folder = row[-1] if row else None
    if isinstance(folder, dict):  # a cell sent as {"value": ...}
        folder = folder.get("value")
    return str(folder) if folder else None


def render() -> dict[str, Any]:
    """Build the tab; ui.app wires Refresh, page load and tab selection to runs_table."""
    with gr.Row():
        caption = gr.Markdown(PICK_HINT)
        refresh = gr.Button("Refresh", scale=0, min_width=120)
    table = gr.Dataframe(headers=RUN_COLUMNS, interactive=False, wrap=True, max_height=420)
    details = gr.Markdown()
    chart = gr.Plot(label="Selected run")
    return {"caption": caption, "refresh": refresh, "table": table, "details": details, "chart": chart}
