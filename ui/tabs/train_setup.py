"""The Train tab's setup as a file: download it as JSON, load one back into the form, run it from a terminal, and
refill the form from the running (or last) job after a page reload.

The file is exactly what ``python launch.py train SETUP.json`` reads (TrainingConfig.to_dict, every field), so the UI,
the CLI and a run folder's ``config.json`` are one format: a run folder's config.json loads here too.
"""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from core.atomic import write_json_atomic
from core.config import TrainingConfig
from core.errors import ConfigError, StudioError
from core.events import JobSnapshot
from ui.forms import ConfigForm
from ui.i18n import tr

SETUP_FILE = "lora-studio-setup.json"  # the downloaded file's name, and the name the terminal command uses


def setup_dict(cfg: TrainingConfig) -> dict[str, Any]:
    """Every field of ``cfg`` by name, as the CLI's config file holds it (``TrainingConfig.to_dict``)."""
    return cfg.to_dict()


def write_setup(cfg: TrainingConfig, folder: Path | None = None) -> Path:
    """Write ``cfg`` as ``SETUP_FILE`` in ``folder`` (default: a new temporary folder), atomically.

    Returns:
        The file's path.

    Raises:
        OSError: the folder cannot be written (disk full, permissions).
    """
    folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="lora-studio-setup-"))
    path = folder / SETUP_FILE
    write_json_atomic(path, setup_dict(cfg))
    return path


def cli_command(config_path: str = SETUP_FILE) -> str:
    """The command line that trains the setup saved at ``config_path`` (launch.py's ``train CONFIG``)."""
    return shlex.join(["python", "launch.py", "train", config_path])


def cli_script(cfg: TrainingConfig) -> str:
    """Shell lines that reproduce this run from a terminal in the LoRA Studio folder: write the setup with a
    here-document (quoted, so nothing in it is expanded), then train it. JSON never holds a bare ``EOF`` line
    (it escapes newlines inside strings), so the here-document always ends where it should."""
    import json

    text = json.dumps(setup_dict(cfg), indent=2, ensure_ascii=False)
    return f"cat > {SETUP_FILE} <<'EOF'\n{text}\nEOF\n{cli_command()}\n"


def read_setup(path: str | Path) -> TrainingConfig:
    """The TrainingConfig in a setup file (or a run folder's config.json).

    Raises:
        ConfigError: every problem at once, naming the field (unknown key, wrong type, out of range) or, for
            a file that is not a JSON object, the file by its name.
    """
    path = Path(path)
    try:
        return TrainingConfig.from_json_file(path)
    except ConfigError as exc:  # the upload's temporary path means nothing to the user: name the file only
        raise ConfigError([p.replace(str(path), path.name) for p in exc.problems]) from None


def _target_choices(cfg: TrainingConfig) -> list[str]:
    """The Linear modules of ``cfg``'s model, for the target checkboxes; [] for a local folder (read only through
    the Model tab, which checks the session may read it) or a model that cannot be inspected now."""
    name = cfg.model_name_or_path
    if not name or Path(name).expanduser().exists():
        return []
    from core.model import inspect_model

    try:
        return list(inspect_model(name).linear_names)
    except (StudioError, OSError, ValueError):
        return []


def _config_of(source: Any) -> TrainingConfig | None:
    """A TrainingConfig from a JobSnapshot (its ``info["config"]``), a TrainingConfig, a dict or None."""
    if source is None or isinstance(source, TrainingConfig):
        return source
    if isinstance(source, JobSnapshot):
        source = source.info.get("config")
        if not source:
            return None
    if isinstance(source, dict):
        return TrainingConfig.from_dict(source)
    raise TypeError(f"cannot restore the form from a {type(source).__name__}")


def restore_form(form: ConfigForm, source: Any) -> list[Any]:
    """One update per ``form.inputs`` component that fills the form with a job's TrainingConfig.

    Args:
        form: the app's ConfigForm (every field registered).
        source: the job's JobSnapshot (its ``info["config"]``, set at Start and kept after the run ends), a
            TrainingConfig, a config dict, or None.

    Returns:
        ``gr.update`` per component; all ``gr.skip()`` when there is nothing to restore (no run in this process,
        or a config that no longer validates), so the form is never half-filled. ``resume_from_checkpoint`` is
        emptied: a resume is a one-off, as after Start.
    """
    try:
        cfg = _config_of(source)
        if cfg is None:
            return [gr.skip() for _ in form.inputs]
        cfg = cfg.replace(resume_from_checkpoint="")
        return form.updates_for(cfg, _target_choices(cfg))
    except ConfigError:
        return [gr.skip() for _ in form.inputs]


def download_setup(form: ConfigForm, *values: Any) -> tuple[Any, Any, str]:
    """Handler of "Download setup (JSON)": the form's values as a setup file.

    Returns:
        (the file for a gr.File, the terminal lines for a gr.Code, a message); with the form's problems listed
        and no file when the form does not make a valid config.
    """
    try:
        cfg = form.to_config(*values)
        path = write_setup(cfg)
    except ConfigError as exc:
        problems = "\n".join(f"- {p}" for p in exc.problems)
        return None, gr.skip(), tr("**Fix these settings first:**\n{problems}").format(problems=problems)
    except OSError as exc:
        return (
            None,
            gr.skip(),
            tr("**Cannot write the setup file:** {error}").format(error=exc.strerror or exc),
        )
    note = tr(
        "Setup saved as **{name}**: download it above. `{command}` trains it from a terminal in the LoRA Studio "
        "folder (or paste the lines below there)."
    ).format(name=SETUP_FILE, command=cli_command())
    return str(path), cli_script(cfg), note


def copy_command(form: ConfigForm, *values: Any) -> tuple[Any, str]:
    """Handler of "Copy as CLI command": the shell lines that write this setup and train it, and a note.

    Returns:
        (the lines for a gr.Code, whose copy button copies them; a message), or the form's problems listed.
    """
    try:
        cfg = form.to_config(*values)
    except ConfigError as exc:
        problems = "\n".join(f"- {p}" for p in exc.problems)
        return gr.skip(), tr("**Fix these settings first:**\n{problems}").format(problems=problems)
    note = tr(
        "Copy these lines into a terminal in the LoRA Studio folder: the first ones write **{name}**, the last "
        "one trains it (`{command}`)."
    ).format(name=SETUP_FILE, command=cli_command())
    return cli_script(cfg), note


def load_setup(form: ConfigForm, file: Any) -> list[Any]:
    """Handler of "Load setup (JSON)": every form field from the file, or none of them.

    Args:
        form: the app's ConfigForm.
        file: the uploaded file's path (gr.UploadButton with type="filepath"), or None.

    Returns:
        ``[*one update per form.inputs component, the loaded config dict (None when nothing was loaded),
        message]``. On any problem (not JSON, unknown field, a value out of range, a choice the form does not
        offer) every component gets ``gr.skip()`` and the message lists each problem by field name.
    """
    skip = [gr.skip() for _ in form.inputs]
    if not file:
        return [*skip, None, gr.skip()]
    name = Path(str(file)).name
    try:
        cfg = read_setup(file)
        updates = form.updates_for(cfg, _target_choices(cfg))
    except ConfigError as exc:
        problems = "\n".join(f"- {p}" for p in exc.problems)
        message = tr("**{name} was not loaded; the form is unchanged.**\n{problems}").format(
            name=name, problems=problems
        )
        return [*skip, None, message]
    message = tr("Loaded **{name}**: every field of the form now holds its value (r {r}, α {alpha}).").format(
        name=name, r=cfg.lora_r, alpha=cfg.lora_alpha
    )
    return [*updates, cfg.to_dict(), message]


def render(form: ConfigForm) -> dict[str, Any]:
    """The "Save or load this setup" accordion, wired to every field of ``form``.

    Call it after every field is registered (the Model and Data tabs come first; the Train tab calls it last).

    Returns:
        Components by name: download and copy (Buttons), file (File), upload (UploadButton), command (Code), message
        (Markdown), loaded (State: the config dict just loaded, None after a refused file) and uploaded (the
        upload's event, for the app to chain its model reload and a ``restore_form(form, loaded)`` after it).
    """
    with gr.Accordion("Save or load this setup (JSON, same file as the command line)", open=False):
        with gr.Row():
            download = gr.Button("Download setup (JSON)")
            upload = gr.UploadButton("Load setup (JSON)", file_types=[".json"], type="filepath")
            copy = gr.Button("Copy as CLI command")
        file = gr.File(label="Setup file", interactive=False)
        command = gr.Code(
            value="",
            language="shell",
            label="Same run from a terminal (run in the LoRA Studio folder)",
            interactive=False,
        )
        message = gr.Markdown()
    loaded = gr.State(None)

    def on_download(*values: Any) -> tuple[Any, Any, str]:
        return download_setup(form, *values)

    def on_copy(*values: Any) -> tuple[Any, str]:
        return copy_command(form, *values)

    def on_upload(file_path: Any) -> list[Any]:
        return load_setup(form, file_path)

    download.click(on_download, form.inputs, [file, command, message], api_visibility="private")
    copy.click(on_copy, form.inputs, [command, message], api_visibility="private").then(
        None,  # and onto the clipboard (where the browser allows it: localhost or https)
        command,
        None,
        js="(text) => { if (text && navigator.clipboard) navigator.clipboard.writeText(text).catch(() => {}); }",
        api_visibility="private",
        queue=False,
    )
    uploaded = upload.upload(on_upload, upload, [*form.inputs, loaded, message], api_visibility="private")
    # the file and the command shown were of the previous setup: cleared, so nothing contradicts the loaded one
    uploaded.then(lambda: (None, ""), None, [file, command], api_visibility="private", queue=False)
    return {
        "download": download,
        "copy": copy,
        "file": file,
        "upload": upload,
        "command": command,
        "message": message,
        "loaded": loaded,
        "uploaded": uploaded,
    }
