"""Data tab: upload or pick a sample, detect the format and column mapping, validate every row, see the tokens."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import pandas as pd

from core.config import DATASET_FORMATS, TrainingConfig
from core.data import truncate_cell
from core.datafiles import SUFFIX_KIND
from core.errors import StudioError
from core.model import load_tokenizer, resolve_model_path, studio_home
from core.tokenization import label_mask_example
from core.validation import ValidationReport, validate_config
from core.workspace import Workspace
from ui.forms import ConfigForm, info
from ui.tabs.export_tab import downloads_dir

if TYPE_CHECKING:
    import plotly.graph_objects as go

PREVIEW_COLUMNS = ["row", "system", "user", "assistant", "turns"]
DATA_FIELDS = (
    "model_name_or_path",
    "dataset_name",
    "dataset_format",
    "dataset_column_mapping",
    "dataset_split",
    "dataset_config",
    "completion_only_loss",
    "fold_system_message",
    "max_length",
)
ASSETS = Path(__file__).resolve().parents[2] / "assets"
SAMPLES = {
    "HumanEval, alpaca JSONL (164 rows, MIT)": ASSETS / "humaneval_alpaca.jsonl",
    "HumanEval, chat messages JSONL (164 rows, MIT)": ASSETS / "humaneval_messages.jsonl",
    "HumanEval, alpaca CSV (164 rows, MIT)": ASSETS / "humaneval_alpaca.csv",
}
UPLOAD_TYPES = sorted({s for s in SUFFIX_KIND} | {s.upper() for s in SUFFIX_KIND})


def ensure(folder: Path) -> Path:
    """``folder``, created if missing."""
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def keep_upload(tmp_path: str, dest_dir: Path | None = None) -> str:
    """Copy an upload out of gradio's temporary cache into ``dest_dir`` (default ``studio_home()/uploads``; a
    shared demo passes the session's uploads folder), never overwriting.

    Returns the kept file's path, named ``YYYYmmdd-HHMMSS-<original name>``.
    """
    src = Path(tmp_path)
    dest_dir = dest_dir or studio_home() / "uploads"
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


def on_upload(file: str | None, ws: Workspace) -> tuple[Any, Any, Any]:
    """Keep the uploaded file; return its path for ``dataset_name``, clear the sample choice and the mapping."""
    if not file:
        return gr.update(), gr.update(), gr.update()
    return keep_upload(file, ws.uploads_dir if ws.private else None), None, ""


def validate(
    form_values: dict[str, Any], ws: Workspace, progress: gr.Progress = gr.Progress()
) -> tuple[Any, ...]:
    """Read, normalise and tokenize the dataset with the chosen model's tokenizer, in one streaming pass.

    ``ws`` is the caller's workspace: a shared demo's session reads only its uploads, the samples or a hub id, and
    its report CSV is written inside it. Memory does not grow with the file (core.validation): the browser gets the
    first 50 rows with each cell cut to a few hundred characters, a histogram, and a CSV of every dropped or altered
    row. Returns (summary markdown, preview table, length histogram, label-mask example, report CSV path, mapping
    text).
    """
    empty = pd.DataFrame(columns=PREVIEW_COLUMNS)
    if not form_values.get("dataset_name"):
        return "Upload a file or pick a sample.", empty, None, None, None, gr.update()
    try:
        cfg = TrainingConfig.from_dict(
            {k: form_values[k] for k in DATA_FIELDS if form_values.get(k) not in (None, "")}
        )
        ws.check_dataset(cfg.dataset_name)
        ws.check_model(cfg.model_name_or_path)
        progress(0.05, desc="Loading the tokenizer")
        tokenizer = load_tokenizer(resolve_model_path(cfg.model_name_or_path))
        progress(0.1, desc="Reading, normalising and tokenizing rows")
        report = validate_config(
            cfg, tokenizer, progress=lambda rows: progress((rows, None), desc="Checking rows", unit="rows")
        )
    except StudioError as exc:
        return f"**This data cannot be used.** {exc}", empty, None, None, None, gr.update()
    downloads = ws.downloads_dir if ws.private else downloads_dir()
    csv_dir = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-report-"), dir=ensure(downloads)))
    csv_path = report.write_issues_csv(csv_dir / f"{Path(report.source).stem}-report.csv")
    mapping_text = ", ".join(f"{f}={c}" for f, c in report.mapping.items())
    assert report.first_feature is not None  # validate_config raises when no row is kept
    return (
        summary_markdown(report),
        report.preview_frame(),
        length_histogram_figure(report.length_counts, report.max_length),
        label_mask_example(tokenizer, report.first_feature),
        str(csv_path),
        mapping_text,
    )


def summary_markdown(report: ValidationReport) -> str:
    """The Data tab's summary: source, format and mapping, rows per stage, drop reasons, the first dropped rows."""
    stages = " → ".join(f"{k} **{v:,}**" for k, v in report.stages.items())
    lines = [
        f"`{report.source}` ({report.kind}): format **{report.dataset_format}**, columns used: "
        + ", ".join(f"{f} ← `{c}`" for f, c in report.mapping.items()),
        f"Rows: {stages}. Supervised tokens per kept row: median {report.supervised_median:,}.",
    ]
    by_reason = report.dropped_by_reason()
    if by_reason:
        lines.append("Dropped: " + "; ".join(f"{n:,} × {why}" for why, n in list(by_reason.items())[:6]))
    lines += [f"- row {r}: {truncate_cell(why, 300)}" for r, why in report.dropped[:10]]
    if report.dropped_count > 10:
        lines.append(f"... and {report.dropped_count - 10:,} more dropped rows: see the CSV.")
    if report.notes_count:
        lines.append(
            f"{report.notes_count:,} rows kept with a note (truncated, roles not alternating...): see the CSV."
        )
    return "\n\n".join(lines)


def length_histogram_figure(length_counts: dict[int, int], max_length: int, bins: int = 40) -> go.Figure:
    """Histogram of rendered row lengths in tokens from {length: rows}, with the max_length cut marked.

    Args:
        length_counts: rows per token length (ValidationReport.length_counts), never the lengths themselves, so
            the figure is the same size for 100 rows or a million.
        max_length: the cut, in tokens; rows past it are truncated.
        bins: bars drawn (equal widths from 0 to the longest row).
    """
    import plotly.graph_objects as go

    longest = max(length_counts, default=1)
    width = max(1, -(-(longest + 1) // bins))
    heights: dict[int, int] = {}
    for n, c in length_counts.items():
        heights[n // width] = heights.get(n // width, 0) + c
    fig = go.Figure()
    fig.add_bar(
        x=[(b + 0.5) * width for b in sorted(heights)],
        y=[heights[b] for b in sorted(heights)],
        width=width,
        name="rows",
    )
    over = sum(c for n, c in length_counts.items() if n > max_length)
    fig.add_vline(
        x=max_length,
        line_dash="dash",
        line_color="red",
        annotation_text=f"max_length {max_length} ({over:,} rows longer)",
    )
    fig.update_layout(
        xaxis_title="tokens per row (chat template applied)",
        yaxis_title="rows",
        height=300,
        margin={"l": 40, "r": 20, "t": 30, "b": 40},
        showlegend=False,
        bargap=0.05,
    )
    return fig


def render(form: ConfigForm) -> dict[str, Any]:
    """Build the tab; registers the dataset fields with ``form``."""
    with gr.Row():
        upload = gr.File(
            label="Upload CSV, TSV, JSON, JSONL, Parquet or XLSX", file_types=UPLOAD_TYPES, type="filepath"
        )
        with gr.Column():
            sample = gr.Dropdown(choices=list(SAMPLES), value=None, label="...or use a sample dataset")
            name = form.add(
                "dataset_name",
                gr.Textbox(value="", label="Dataset file (or hub dataset id)", info=info("dataset_name")),
            )
            with gr.Row():
                fmt = form.add(
                    "dataset_format",
                    gr.Dropdown(
                        list(DATASET_FORMATS), value="auto", label="Format", info=info("dataset_format")
                    ),
                )
                mapping = form.add(
                    "dataset_column_mapping",
                    gr.Textbox(
                        value="",
                        label="Column mapping (field=column, ...)",
                        info=info("dataset_column_mapping"),
                    ),
                )
    with gr.Accordion("More data options", open=False):
        with gr.Row():
            form.add(
                "completion_only_loss",
                gr.Checkbox(value=True, label="Train on answers only", info=info("completion_only_loss")),
            )
            form.add(
                "fold_system_message",
                gr.Checkbox(
                    value=False, label="Fold system message into user turn", info=info("fold_system_message")
                ),
            )
            form.add(
                "dataset_split", gr.Textbox(value="train", label="Hub split", info=info("dataset_split"))
            )
            form.add("dataset_config", gr.Textbox(value="", label="Hub config", info=info("dataset_config")))
    check = gr.Button("Validate data", variant="primary")
    summary = gr.Markdown("Upload a file or pick a sample.")
    with gr.Row():
        lengths = gr.Plot(label="Token lengths")
        report_csv = gr.File(label="Row report (every dropped or altered row, CSV)", interactive=False)
    example = gr.HighlightedText(
        label="First row as the model sees it: highlighted tokens are trained on",
        color_map={"trained": "green"},
        show_legend=True,
    )
    preview = gr.Dataframe(
        value=pd.DataFrame(columns=PREVIEW_COLUMNS),
        label="Preview (normalised rows)",
        wrap=True,
        max_height=480,
        column_widths=["6%", "12%", "41%", "35%", "6%"],
    )
    sample.change(
        lambda s: (str(SAMPLES[s]), "") if s else (gr.update(), gr.update()),
        sample,
        [name, mapping],
        api_visibility="private",
    )
    return {
        "upload": upload,
        "sample": sample,
        "name": name,
        "format": fmt,
        "mapping": mapping,
        "check": check,
        "summary": summary,
        "preview": preview,
        "lengths": lengths,
        "example": example,
        "report": report_csv,
    }
