"""Data tab: upload or pick a sample, detect the format, preview the normalised rows."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from core.data import SUPPORTED_SUFFIXES, load_conversations
from core.errors import StudioError
from core.model import studio_home
from ui.forms import ConfigForm, info

PREVIEW_COLUMNS = ["row", "system", "user", "assistant", "turns"]
ASSETS = Path(__file__).resolve().parents[2] / "assets"
SAMPLES = {
    "HumanEval, alpaca JSONL (164 rows, MIT)": ASSETS / "humaneval_alpaca.jsonl",
    "HumanEval, chat messages JSONL (164 rows, MIT)": ASSETS / "humaneval_messages.jsonl",
    "HumanEval, alpaca CSV (164 rows, MIT)": ASSETS / "humaneval_alpaca.csv",
}


def keep_upload(tmp_path: str) -> str:
    """Copy an upload out of gradio's temporary cache into ``studio_home()/uploads`` (never overwriting).

    Returns the kept file's path, named ``YYYYmmdd-HHMMSS-<original name>``.
    """
    src = Path(tmp_path)
    dest_dir = studio_home() / "uploads"
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{src.name}"
    n = 2
    while dest.exists():
        dest = dest_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{n}-{src.name}"
        n += 1
    partial = dest.with_name("." + dest.name + ".partial")
    shutil.copyfile(src, partial)
    partial.replace(dest)
    return str(dest)


def on_upload(file: str | None) -> tuple[Any, Any]:
    """Keep the uploaded file; return its path for ``dataset_name`` and clear the sample choice."""
    if not file:
        return gr.update(), gr.update()
    if Path(file).suffix.lower() not in SUPPORTED_SUFFIXES:
        raise gr.Error(f"{Path(file).name}: use a .csv, .json or .jsonl file.")
    return keep_upload(file), None  # the upload replaces any sample choice


def validate(
    dataset_name: str, dataset_format: str, progress: gr.Progress = gr.Progress()
) -> tuple[Any, ...]:
    """Read and normalise the dataset; returns (summary markdown, preview table)."""
    if not dataset_name:
        return "Upload a file or pick a sample.", pd.DataFrame(columns=PREVIEW_COLUMNS)
    progress(0, desc="Reading and checking rows")
    try:
        report = load_conversations(dataset_name, dataset_format)
    except StudioError as exc:
        return f"**This data cannot be used.** {exc}", pd.DataFrame(columns=PREVIEW_COLUMNS)
    lines = [
        f"`{report.source}`: **{report.rows_read} rows read, {len(report.conversations)} usable**, format "
        f"`{report.dataset_format}`" + (f", {len(report.dropped)} dropped:" if report.dropped else ".")
    ]
    lines += [f"- row {r}: {why}" for r, why in report.dropped[:20]]
    if len(report.dropped) > 20:
        lines.append(f"- ... and {len(report.dropped) - 20} more")
    return "\n".join(lines), report.preview


def render(form: ConfigForm) -> dict[str, Any]:
    """Build the tab; registers ``dataset_name`` and ``dataset_format``."""
    with gr.Row():
        upload = gr.File(
            label="Upload CSV, JSON or JSONL", file_types=list(SUPPORTED_SUFFIXES), type="filepath"
        )
        with gr.Column():
            sample = gr.Dropdown(choices=list(SAMPLES), value=None, label="...or use a sample dataset")
            name = form.add(
                "dataset_name",
                gr.Textbox(label="Dataset file (or hub dataset id)", info=info("dataset_name")),
            )
            fmt = form.add(
                "dataset_format",
                gr.Radio(
                    ["auto", "alpaca", "messages"], value="auto", label="Format", info=info("dataset_format")
                ),
            )
    summary = gr.Markdown("Upload a file or pick a sample.")
    preview = gr.Dataframe(
        value=pd.DataFrame(columns=PREVIEW_COLUMNS),
        label="Preview (normalised rows: what the model will see)",
        wrap=True,
        max_height=480,
        column_widths=["6%", "12%", "41%", "35%", "6%"],
    )
    upload.upload(on_upload, upload, [name, sample], api_visibility="private")
    sample.change(lambda s: str(SAMPLES[s]) if s else gr.update(), sample, name, api_visibility="private")
    name.change(validate, [name, fmt], [summary, preview], api_name="validate_data")
    fmt.change(validate, [name, fmt], [summary, preview], api_visibility="private")
    return {
        "upload": upload,
        "sample": sample,
        "name": name,
        "format": fmt,
        "summary": summary,
        "preview": preview,
    }
