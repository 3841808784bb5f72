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
from core.datafiles import NO_DATASET, SUFFIX_KIND
from core.errors import StudioError
from core.model import load_tokenizer, resolve_model_path, studio_home
from core.tokenization import label_mask_example
from core.validation import ValidationReport, validate_config
from core.workspace import Workspace
from ui.forms import ConfigForm, info
from ui.i18n import tr, tr_text
from ui.tabs.export_tab import downloads_dir

if TYPE_CHECKING:
    import plotly.graph_objects as go

PREVIEW_COLUMNS = ["row", "system", "user", "assistant", "turns"]
# column widths of the preview: a chat / alpaca table, and raw text (one wide column that wraps)
CHAT_WIDTHS = ["6%", "12%", "41%", "35%", "6%"]
TEXT_WIDTHS = ["6%", "94%"]
TRAINED_ZH = "参与训练"  # "trained" in ui/zh_data.py: the highlighted tokens' class on a Chinese page
HEADERS = (
    "row",
    "text",
    "turns",
)  # the preview's headers that are words (roles stay as the template names them)
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


def on_dataset_name(name: str | None) -> tuple[Any, Any]:
    """Once the dataset name is set (an upload kept, a sample picked, a path typed), empty the upload box, so the
    next file replaces this one by a drop or a click there (no small x to find first), and say which upload is in
    use. The kept copy (``keep_upload``) is never overwritten.

    Returns:
        (the upload box's new value: None, the note under it: the upload in use, or "" for a sample, a typed path
        or an empty name).
    """
    shown = (name or "").strip()
    if not shown or Path(shown).parent.name != "uploads":
        return None, ""
    note = tr(
        "Using **{name}** as the dataset. To replace it, drop or choose another file above; earlier uploads stay "
        "on disk."
    ).format(name=Path(shown).name)
    return None, note


def preview_update(frame: pd.DataFrame) -> Any:
    """The preview table for ``frame`` with its headers in the page's language and widths for its shape: raw text
    (row, text) gets one wide wrapping column instead of the chat layout's five."""
    widths = TEXT_WIDTHS if list(frame.columns) == ["row", "text"] else CHAT_WIDTHS
    shown = frame.rename(columns={c: tr(c) for c in HEADERS if c in frame.columns})
    return gr.update(value=shown, column_widths=widths)


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
    empty = preview_update(pd.DataFrame(columns=PREVIEW_COLUMNS))
    if not str(form_values.get("dataset_name") or "").strip():
        return tr(NO_DATASET), empty, None, None, None, gr.update()
    try:
        cfg = TrainingConfig.from_dict(
            {k: form_values[k] for k in DATA_FIELDS if form_values.get(k) not in (None, "")}
        )
        ws.check_dataset(cfg.dataset_name)
        ws.check_model(cfg.model_name_or_path)
        progress(0.05, desc=tr("Loading the tokenizer"))
        tokenizer = load_tokenizer(resolve_model_path(cfg.model_name_or_path))
        progress(0.1, desc=tr("Reading, normalising and tokenizing rows"))
        checking, unit = tr("Checking rows"), tr("rows")
        report = validate_config(
            cfg, tokenizer, progress=lambda n: progress((n, None), desc=checking, unit=unit)
        )
    except StudioError as exc:
        message = tr("**This data cannot be used.** {error}").format(error=tr_text(str(exc)))
        return message, empty, None, None, None, gr.update()
    downloads = ws.downloads_dir if ws.private else downloads_dir()
    csv_dir = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-report-"), dir=ensure(downloads)))
    csv_path = report.write_issues_csv(csv_dir / f"{Path(report.source).stem}-report.csv")
    mapping_text = ", ".join(f"{f}={c}" for f, c in report.mapping.items())
    assert report.first_feature is not None  # validate_config raises when no row is kept
    return (
        summary_markdown(report),
        preview_update(report.preview_frame()),
        length_histogram_figure(
            report.length_counts, report.max_length, templated=report.dataset_format != "text"
        ),
        [
            (token, tr(kind) if kind else kind)
            for token, kind in label_mask_example(tokenizer, report.first_feature)
        ],
        str(csv_path),
        mapping_text,
    )


def summary_markdown(report: ValidationReport) -> str:
    """The Data tab's summary in the page's language: source, format and mapping, rows per stage, drop reasons, the
    first dropped rows. Row reasons come from core in English and are translated by template (``tr_text``)."""
    stages = " → ".join(f"{tr(k)} **{v:,}**" for k, v in report.stages.items())
    columns = ", ".join(f"{f} ← `{c}`" for f, c in report.mapping.items())
    lines = [
        tr("`{source}` ({kind}): format **{format}**, columns used: {columns}").format(
            source=report.source, kind=report.kind, format=report.dataset_format, columns=columns
        ),
        tr("Rows: {stages}. Supervised tokens per kept row: median {median}.").format(
            stages=stages, median=f"{report.supervised_median:,}"
        ),
    ]
    by_reason = report.dropped_by_reason()
    if by_reason:
        reasons = "; ".join(f"{n:,} × {tr_text(why)}" for why, n in list(by_reason.items())[:6])
        lines.append(tr("Dropped: {reasons}").format(reasons=reasons))
    lines += [
        tr("- row {row}: {reason}").format(row=r, reason=truncate_cell(tr_text(why), 300))
        for r, why in report.dropped[:10]
    ]
    if report.dropped_count > 10:
        lines.append(
            tr("... and {n} more dropped rows: see the CSV.").format(n=f"{report.dropped_count - 10:,}")
        )
    if report.notes_count:
        lines.append(
            tr("{n} rows kept with a note (truncated, roles not alternating...): see the CSV.").format(
                n=f"{report.notes_count:,}"
            )
        )
    return "\n\n".join(lines)


def length_histogram_figure(
    length_counts: dict[int, int], max_length: int, bins: int = 40, templated: bool = True
) -> go.Figure:
    """Histogram of rendered row lengths in tokens from {length: rows}, with the max_length cut marked.

    The bars span the rows' own lengths, not max_length: when every row is far shorter than the cut (under half
    of it), the cut is named in the title instead of stretching the axis, which would leave the rows a sliver.

    Args:
        length_counts: rows per token length (ValidationReport.length_counts), never the lengths themselves, so
            the figure is the same size for 100 rows or a million.
        max_length: the cut, in tokens; rows past it are truncated.
        bins: bars drawn (equal widths from 0 to the longest row, or to max_length when it is drawn).
        templated: whether rows were rendered through the chat template / prompt format (False for raw text,
            tokenized as it is); names the x axis.
    """
    import plotly.graph_objects as go

    longest = max(length_counts, default=1)
    cut_shown = longest >= max_length / 2  # the cut is near the data: draw it as a line
    span = max(longest, max_length) if cut_shown else longest
    width = max(1, -(-(span + 1) // bins))
    heights: dict[int, int] = {}
    for n, c in length_counts.items():
        heights[n // width] = heights.get(n // width, 0) + c
    fig = go.Figure()
    fig.add_bar(
        x=[(b + 0.5) * width for b in sorted(heights)],
        y=[heights[b] for b in sorted(heights)],
        width=width,
        name=tr("rows"),
    )
    over = sum(c for n, c in length_counts.items() if n > max_length)
    cut = tr("max_length {max_length} ({over} rows longer)").format(max_length=max_length, over=f"{over:,}")
    if cut_shown:
        fig.add_vline(x=max_length, line_dash="dash", line_color="red", annotation_text=cut)
    axis = tr("tokens per row (chat template applied)") if templated else tr("tokens per row (raw text)")
    fig.update_layout(
        title={"text": cut, "font": {"size": 12}} if not cut_shown else None,
        xaxis_title=axis,
        yaxis_title=tr("rows"),
        height=300,
        margin={"l": 40, "r": 20, "t": 40 if not cut_shown else 30, "b": 40},
        showlegend=False,
        bargap=0.05,
    )
    return fig


def render(form: ConfigForm) -> dict[str, Any]:
    """Build the tab; registers the dataset fields with ``form``."""
    with gr.Row():
        with gr.Column():
            upload = gr.File(
                label="Upload CSV, TSV, JSON, JSONL, Parquet or XLSX",
                file_types=UPLOAD_TYPES,
                type="filepath",
            )
            upload_note = gr.Markdown()
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
        color_map={"trained": "green", TRAINED_ZH: "green"},
        show_legend=False,  # the label says what the highlight means, in the page's language
        elem_classes=["user-data"],  # the user's own text: never translated (tests skip it)
    )
    preview = gr.Dataframe(
        value=pd.DataFrame(columns=PREVIEW_COLUMNS),
        label="Preview (normalised rows)",
        wrap=True,
        max_height=480,
        column_widths=CHAT_WIDTHS,
        elem_classes=["user-data"],
    )
    # the box empties once the dataset name is set (after ui.app's upload listener has kept the file and named
    # it), so the next file replaces it by a drop or a click there (no small x to find)
    name.change(
        on_dataset_name, name, [upload, upload_note], api_visibility="private", show_progress="hidden"
    )
    sample.change(
        lambda s: (str(SAMPLES[s]), "") if s else (gr.update(), gr.update()),
        sample,
        [name, mapping],
        api_visibility="private",
    )
    return {
        "upload": upload,
        "upload_note": upload_note,
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
