"""Export tab: merged weights or adapter only, verified, with a zip to download."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from core.errors import StudioError
from core.export import MERGED_DTYPES, export_adapter, export_merged
from core.model import studio_home


def list_runs(output_dir: str) -> list[str]:
    """Run folders with a saved adapter under ``output_dir``, newest first."""
    base = Path(output_dir or "runs").expanduser().resolve()
    if not base.is_dir():
        return []
    runs = [p for p in base.iterdir() if (p / "adapter" / "adapter_config.json").is_file()]
    return [str(p) for p in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)]


def downloads_dir() -> Path:
    """Folder the app may serve downloads from (``studio_home()/downloads``), created on demand."""
    folder = studio_home() / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def servable(path: str) -> str:
    """A path Gradio may serve for ``path``: itself when under the working folder, else a hard link (or copy,
    across file systems) in downloads_dir(). Gradio refuses to serve files outside its allowed folders."""
    src = Path(path).resolve()
    if Path.cwd().resolve() in src.parents:
        return str(src)
    dest_dir = Path(tempfile.mkdtemp(dir=downloads_dir()))
    dest = dest_dir / src.name
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
    return str(dest)


def do_export(
    run_dir: str | None,
    merged: bool,
    dtype: str = "auto",
    progress: gr.Progress = gr.Progress(track_tqdm=True),
) -> tuple[Any, ...]:
    """Run an export; returns (summary markdown, zip path for download)."""
    if not run_dir:
        raise gr.Error("Pick a run folder first (train one in the Train tab).")
    progress(0, desc="Merging and verifying" if merged else "Copying adapter")
    try:
        result = export_merged(run_dir, dtype=dtype) if merged else export_adapter(run_dir)
    except (StudioError, FileExistsError) as exc:
        return f"**Export failed.** {exc}", None
    if not result.zip_path:
        return (
            f"**Done.** {result.summary()}\n\nToo large to zip for a browser download: use the folder.",
            None,
        )
    return f"**Done.** {result.summary()}\n\nZip: `{result.zip_path}`", servable(result.zip_path)


def render() -> dict[str, Any]:
    """Build the tab; wiring to the runs folder happens in ui.app."""
    with gr.Row():
        run = gr.Dropdown(choices=[], label="Run folder", scale=4, allow_custom_value=True)
        refresh = gr.Button("Refresh", scale=1)
    dtype = gr.Radio(
        list(MERGED_DTYPES),
        value="auto",
        label="Merged weights dtype",
        info="auto = the base's 16-bit dtype. float32 keeps tiny adapters exact at twice the size.",
    )
    with gr.Row():
        merged = gr.Button("Export merged weights", variant="primary")
        adapter = gr.Button("Export adapter only")
    result = gr.Markdown(
        "Merged export reloads the base in 16-bit (never 4-bit), merges W + (α/r)·B·A, saves "
        "safetensors + tokenizer + chat template, and checks the result against base+adapter."
    )
    download = gr.File(label="Download", interactive=False)
    return {
        "run": run,
        "refresh": refresh,
        "dtype": dtype,
        "merged": merged,
        "adapter": adapter,
        "result": result,
        "download": download,
    }
