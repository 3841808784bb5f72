"""Export tab: merged weights or adapter only, verified, with a zip to download.

Every text the tab computes goes through ``ui.i18n.tr`` (Chinese in ``ui.zh_export``). After a successful export,
``with_exported`` adds the new folder for the hidden ``exported`` state of render(), whose change event ui.app
chains to every list that shows exports (Chat's models, the Runs table).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from core.errors import StudioError
from core.export import MERGED_DTYPES, ExportResult, export_adapter, export_merged
from core.export_files import DELETED_TEMPLATE
from core.model import studio_home
from ui.i18n import tr


def steps_text(steps: int | None) -> str:
    """ "20 steps" / "1 step" / "no steps recorded", in the page's language."""
    if steps is None:
        return tr("no steps recorded")
    return (tr("{n} step") if steps == 1 else tr("{n} steps")).format(n=steps)


def run_label(name: str, status: str, steps: int | None, checkpoint: str = "") -> str:
    """A run's dropdown label: "run-20261130-043101 · completed · 20 steps", and for an interrupted or
    resumable failed run the checkpoint its export takes: "... · interrupted · 4 steps · exports checkpoint-4"."""
    parts = [name, tr(status), steps_text(steps)]
    if checkpoint:
        parts.append(tr("exports {checkpoint}").format(checkpoint=checkpoint))
    return " · ".join(parts)


def list_runs(output_dir: str) -> list[tuple[str, str]]:
    """Exportable run folders under ``output_dir``, newest first (by start time), as (label, folder) choices.

    A run with a saved adapter is labelled ``run_label``: its name, status and steps ("run-... · completed · 20
    steps"). An interrupted run (killed, power loss: no adapter, no result.json, nothing training it) that saved a
    complete checkpoint is listed too, labelled with that checkpoint ("... · interrupted · 4 steps · exports
    checkpoint-4"): its export takes that checkpoint's adapter (core.export). So is a run that failed from outside
    the training (killed, out of memory, disk full: RunSummary.resumable). Labels are in the page's language.
    """
    from core.export_source import last_complete_checkpoint
    from core.runs import INTERRUPTED, read_run

    base = Path(output_dir or "runs").expanduser().resolve()
    if not base.is_dir():
        return []
    choices: list[tuple[float, str, str, str]] = []
    for p in base.iterdir():
        try:
            if not p.is_dir() or p.name.startswith("."):
                continue
            if (p / "adapter" / "adapter_config.json").is_file():
                summary = read_run(p)
                label = run_label(p.name, summary.status, summary.steps)
                choices.append((summary.started_at, p.name, label, str(p)))
            elif (p / "checkpoints").is_dir() and (
                (summary := read_run(p)).status == INTERRUPTED or summary.resumable
            ):
                found = last_complete_checkpoint(p)
                if found is not None:
                    steps = summary.steps if summary.steps is not None else found[1]
                    label = run_label(p.name, summary.status, steps, found[0].name)
                    choices.append((summary.started_at, p.name, label, str(p)))
        except OSError:
            continue
    return [(label, value) for _, _, label, value in sorted(choices, reverse=True)]


def downloads_dir() -> Path:
    """Folder the app may serve downloads from (``studio_home()/downloads``), created on demand."""
    folder = studio_home() / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def servable(path: str, private: bool = False) -> str:
    """A path Gradio may serve for ``path``: itself when under the working folder (or, for a shared demo's
    session, always: its workspace lies in the system temp folder, from which Gradio copies the file into its
    cache under an unguessable name), else a hard link (or copy, across file systems) in downloads_dir().
    Gradio refuses to serve files outside its allowed folders."""
    src = Path(path).resolve()
    if private or Path.cwd().resolve() in src.parents:
        return str(src)
    dest_dir = Path(tempfile.mkdtemp(dir=downloads_dir()))
    dest = dest_dir / src.name
    try:
        os.link(src, dest)
    except OSError:
        try:
            shutil.copyfile(src, dest)
        except OSError:  # a full disk: leave no partial copy behind
            shutil.rmtree(dest_dir, ignore_errors=True)
            raise
    return str(dest)


def memory_line(run_dir: str | None, dtype: str = "auto") -> str:
    """Before the click: what a merged export of ``run_dir`` needs and what the merge device has now.

    "Merged export needs about X GiB of RAM; available now: Y GiB" (GPU memory on a CUDA machine), from
    core.export_memory (the base's config on the meta device and the adapter's safetensors header: no weights
    read). Empty when no run is picked or the folder is not a run folder.
    """
    from core.export_memory import (
        DTYPE_BYTES,
        available_memory_gib,
        merge_memory_for_run,
        verifies_in_float32,
    )

    if not run_dir or not (Path(run_dir) / "config.json").is_file():
        return ""
    try:
        need = merge_memory_for_run(run_dir, dtype)
    except StudioError as exc:
        return tr("Merged export memory: cannot estimate ({error}).").format(error=exc)
    available = available_memory_gib(need.device)
    where = tr("GPU memory") if need.device.startswith("cuda") else tr("RAM")
    parts = tr("{bits} base {base:.2f} GiB + adapter {adapter:.2f} + runtime {runtime:.2f}").format(
        bits="32-bit" if DTYPE_BYTES.get(need.dtype, 2) == 4 else "16-bit",
        base=need.base_gib,
        adapter=need.adapter_gib,
        runtime=need.runtime_gib,
    )
    line = tr(
        "Merged export needs about {need:.1f} GiB of {where}; available now: {available:.1f} GiB"
    ).format(need=need.total_gib, where=where, available=available)
    line += tr(" ({parts}).").format(parts=parts)
    if need.total_gib > available:
        return tr(
            "**{line}** Not enough for a merge: free memory, export the adapter only (it needs almost none), "
            "or merge on a bigger machine."
        ).format(line=line)
    if verifies_in_float32(need.num_params, available):
        peak = need.total_float32_verification_gib
        line += tr(" It verifies in float32 here, about {peak:.1f} GiB at the peak.").format(peak=peak)
    return line


_NOTE = re.compile(
    r"^run (interrupted|ended early) at step (\d+): exported the adapter of its last checkpoint \((.+?)\); "
    r"Resume from this run folder continues it$"
)


_DELETED = re.compile("^" + re.escape(DELETED_TEMPLATE).replace(re.escape("{folder}"), "(.+)") + "$")


def result_text(result: ExportResult) -> str:
    """ExportResult.summary() in the page's language: what was saved where, and how it was verified.

    The English is ExportResult.summary()'s word for word; the interrupted-run note (core.export_source) and
    the "too large to zip" note are translated, any other engine note (a full disk's MB figures) stays as written.
    """
    note = ""
    if result.note:
        found = _NOTE.match(result.note)
        if found:
            how, step, checkpoint = found.groups()
            template = (
                "Run interrupted at step {step}: exported the adapter of its last checkpoint ({checkpoint}); "
                "Resume from this run folder continues it. "
                if how == "interrupted"
                else "Run ended early at step {step}: exported the adapter of its last checkpoint ({checkpoint}); "
                "Resume from this run folder continues it. "
            )
            note = tr(template).format(step=step, checkpoint=checkpoint)
        else:
            note = f"{result.note[:1].upper()}{result.note[1:]}. "
    size = f"{result.size_bytes / 2**20:,.1f} MiB"
    if result.kind == "merged":
        what = tr(
            "Merged model saved to {path} ({size}). Verified on a probe prompt: reloaded logits match "
            "base+adapter (mean |Δ| = {ref:.4f} x std, tolerance {tolerance:.4f}; same top-1 token at "
            "{top1:.1f}% of positions) and differ from the base (mean |Δ| = {base:.4f} x std)."
        ).format(
            path=result.path,
            size=size,
            ref=result.mean_abs_diff_vs_reference or 0.0,
            tolerance=result.tolerance or 0.0,
            top1=100 * (result.top1_agreement or 0),
            base=result.mean_abs_diff_vs_base,
        )
    else:
        what = tr(
            "Adapter saved to {path} ({tensors} tensors, {size}); verified: it loads with "
            "PeftModel.from_pretrained on the base and changes it (max |B| = {max_b:.4g})."
        ).format(path=result.path, tensors=result.tensors, size=size, max_b=result.mean_abs_diff_vs_base)
    return note + what + (f" {tr(result.zip_note)}" if result.zip_note else "")


def do_export(
    run_dir: str | None,
    merged: bool,
    dtype: str = "auto",
    progress: gr.Progress = gr.Progress(track_tqdm=True),
    max_shard_size: str = "5GB",
    training_run: str | None = None,
    private: bool = False,
) -> tuple[Any, ...]:
    """Run an export; returns (summary markdown, zip path for download or None, export folder or ""), the text
    in the page's language (tr). ``with_exported`` adds the value for render()'s ``exported`` state.

    ``training_run`` is the folder of the run now training: exporting it is refused (its adapter does not exist
    until the run ends, and a half-written checkpoint is never exported).

    Every failure comes back as "**Export failed.** <reason>" in the summary, never as Gradio's bare "Error":
    the engine's own errors verbatim (a full disk: "disk full: N MB free on <dir>, M MB needed. ..."), and any
    other OS error (a read-only or vanished folder) with its file and reason; a run folder deleted while it was
    exported (core.export_files.DELETED_TEMPLATE) in the page's language. A full disk while offering the zip
    for download still returns the verified export folder, saying why there is no zip.
    """
    if not run_dir:
        raise gr.Error(tr("Pick a run folder first (train one in the Train tab)."))
    if training_run and Path(run_dir).resolve() == Path(training_run).resolve():
        return (
            tr("**Not yet.** This run is still training; export it when it finishes or after Stop."),
            None,
            "",
        )
    progress(0, desc=tr("Merging and verifying") if merged else tr("Copying and verifying the adapter"))
    failed = tr("**Export failed.** {reason}")
    try:
        result = (
            export_merged(run_dir, dtype=dtype, max_shard_size=max_shard_size)
            if merged
            else export_adapter(run_dir)
        )
    except (StudioError, FileExistsError) as exc:
        gone = _DELETED.match(str(exc))
        if gone:  # the run was deleted meanwhile (another process): say so in the page's language
            reason = tr(DELETED_TEMPLATE).format(folder=gone.group(1))
            return failed.format(reason=reason), None, ""
        return failed.format(reason=exc), None, ""
    except OSError as exc:
        return failed.format(reason=os_error_message(exc, Path(run_dir))), None, ""
    done = tr("**Done.** {summary}").format(summary=result_text(result))
    checks = tr("See `verification.json` and the model card `README.md` in the folder.")
    if not result.zip_path:
        why = (
            "" if result.zip_note else " " + tr("No zip was written: use the folder.")
        )  # the summary says why
        return f"{done}\n\n{checks}{why}", None, result.path
    zip_line = tr("Zip: `{path}`").format(path=result.zip_path)
    try:
        served = servable(result.zip_path, private)
    except OSError as exc:  # the copy into the downloads folder (another file system) did not fit
        why = os_error_message(exc, downloads_dir())
        return f"{done}\n\n{checks}\n\n{zip_line} ({why})", None, result.path
    return f"{done}\n\n{checks}\n\n{zip_line}", served, result.path


def with_exported(outcome: tuple[Any, ...]) -> tuple[Any, ...]:
    """``do_export``'s (summary, download, folder) plus the value for render()'s hidden ``exported`` state: the
    new export's folder on success, ``gr.skip()`` otherwise (the state keeps its value, so its change event fires
    once per successful export, never on a failure). ui.app chains that change event to the lists of exports."""
    summary, download, folder = outcome
    return summary, download, folder, folder if folder else gr.skip()


def os_error_message(exc: OSError, where: Path) -> str:
    """One line for an OS error the engine did not turn into a StudioError: the disk-full wording of core.disk
    (MB free on ``where``'s file system) when it is one, else the file and the OS's reason."""
    from core.disk import disk_full_message, is_disk_full

    if is_disk_full(exc):
        return disk_full_message(where)
    name = f" ({exc.filename})" if exc.filename else ""
    return tr("{reason}{name}. Check the folder exists and is writable, then retry.").format(
        reason=exc.strerror or type(exc).__name__, name=name
    )


def do_push(folder: str, repo_id: str, token: str, private: bool, progress: gr.Progress) -> str:
    """Push a verified export folder to the Hub; the token is used for this call only (never stored or shown)."""
    from core.hub import push_export, redact

    if not folder:
        return tr("Export first: the push sends the last verified export folder.")
    progress(0, desc=tr("Uploading to {repo}").format(repo=repo_id))
    try:
        url = push_export(folder, repo_id, token, private=private)
    except StudioError as exc:
        return tr("**Push failed.** {reason}").format(reason=redact(str(exc), token))
    return tr("**Pushed** `{name}` to {url}").format(name=Path(folder).name, url=url)


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
    shard = gr.Dropdown(
        ["1GB", "2GB", "5GB", "10GB"],
        value="5GB",
        label="Max shard size",
        info="Largest safetensors file of a merged export (transformers' max_shard_size).",
    )
    memory = gr.Markdown()  # ui.app wires memory_line to the run and dtype (through the session's own paths)
    with gr.Row():
        merged = gr.Button("Export merged weights", variant="primary")
        adapter = gr.Button("Export adapter only")
    result = gr.Markdown(
        "Merged export reloads the base in 16-bit (never 4-bit), merges W + (α/r)·B·A, saves "
        "safetensors + tokenizer + chat template, and checks the result against base+adapter."
    )
    download = gr.File(label="Download", interactive=False)
    folder = gr.Textbox(label="Last export folder", interactive=False)
    with gr.Accordion("Push to the Hugging Face Hub (optional)", open=False):
        repo = gr.Textbox(label="Repository", placeholder="your-name/my-fine-tune")
        token = gr.Textbox(
            label="Hugging Face token (write)",
            type="password",
            info="Used for this upload only: never saved, logged or shown.",
        )
        private = gr.Checkbox(value=True, label="Private repository")
        push = gr.Button("Push the last export")
        pushed = gr.Markdown()
    # the folder of the last successful export (with_exported); ui.app chains its change to Chat's and Runs' lists
    exported = gr.State("")
    return {
        "exported": exported,
        "shard": shard,
        "folder": folder,
        "repo": repo,
        "token": token,
        "private": private,
        "push": push,
        "pushed": pushed,
        "run": run,
        "refresh": refresh,
        "dtype": dtype,
        "merged": merged,
        "adapter": adapter,
        "result": result,
        "download": download,
        "memory": memory,
    }
