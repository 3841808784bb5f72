"""build_app(): composes the tabs and wires events, timers and the training job. No engine logic here."""

from __future__ import annotations

from typing import Any

import gradio as gr

from core.config import TrainingConfig
from core.errors import ConfigError, JobBusyError, StudioError
from core.job import TrainingJob
from core.modelspec import ModelSpec
from core.presets import default_target_modules
from core.run_admin import RunAdminError, resolve_run
from core.space import demo_limits, limits_markdown
from core.validation import count_usable_rows
from core.workspace import Sessions
from ui import language
from ui.forms import ConfigForm, with_request
from ui.i18n import (
    GPU_HELP_TITLE,
    HELP_TITLE,
    PRIVATE_NOTE,
    PRIVATE_NOTE_ZH,
    retranslate,
    tr,
    tr_text,
    translate,
)
from ui.poll import Marker, PollRenderer
from ui.session import SessionUI
from ui.tabs import (
    chat_tab,
    data_tab,
    estimate_tab,
    estimate_wiring,
    export_tab,
    export_wiring,
    model_tab,
    runs_tab,
    train_setup,
    train_tab,
)
from ui.views import lora_math_markdown, model_facts_markdown
from ui.zh import GPU_HELP_EN, HELP_EN

TITLE = "LoRA Studio"
INTRO = (
    "Fine-tune a language model with **LoRA** or **QLoRA** without writing code: pick a model, add data, check "
    "that it fits your GPU, train while watching the loss, then export merged weights."
)
GPU_QUEUE = "gpu"
# On a phone a table keeps readable columns (no header broken inside a word) and scrolls sideways in its own box
CSS = (
    "@media (max-width: 760px) { .table-wrap table { min-width: 1200px; } "
    ".prose table { display: block; overflow-x: auto; } .prose th { white-space: nowrap; } }"
)
MAX_WAITING = 10  # a shared demo queues at most this many runs behind the one training  # one concurrency id for everything that loads a model, so heavy work stays serial


def build_app(job: TrainingJob | None = None, sessions: Sessions | None = None) -> gr.Blocks:
    """The whole UI as a gr.Blocks.

    Args:
        job: the TrainingJob of a local install (one is created if None); every page load re-attaches to it, so
            a refreshed tab shows the running job.
        sessions: who owns what. Default: one local workspace (the current folder, or $LORA_STUDIO_WORKSPACE)
            shared by every page; ``Sessions(private=True)`` gives each browser its own workspace and job (a
            shared demo; the browser keeps its key, so a refreshed page re-attaches to its own job only).
    """
    session = SessionUI(sessions or Sessions(private=False, job=job))
    form = ConfigForm()
    with gr.Blocks(title=TITLE) as demo:
        with gr.Row(equal_height=True):
            with gr.Column(scale=4, min_width=320):  # on a phone the language menu goes under the title
                gr.Markdown(f"# {TITLE}\n{INTRO}")
            lang_menu = language.render()
        limits = demo_limits()
        if limits is not None:
            gr.Markdown(limits_markdown(limits))
        hours = session.sessions.ttl_s / 3600
        if session.private:
            gr.Markdown(PRIVATE_NOTE.format(hours=hours))
        key_state = session.browser_state()
        spec_state = gr.State(None)
        with gr.Tabs():
            with gr.Tab("1. Model"):
                m = model_tab.render(form)
            with gr.Tab("2. Data"):
                d = data_tab.render(form)
            with gr.Tab("3. GPU memory"):
                e = estimate_tab.render()
                with gr.Accordion(GPU_HELP_TITLE, open=False):
                    gr.Markdown(GPU_HELP_EN)
            with gr.Tab("4. Train"):
                t = train_tab.render(form)
                with gr.Accordion(HELP_TITLE, open=False):
                    gr.Markdown(HELP_EN)
            with gr.Tab("5. Export") as export_page:
                x = export_tab.render()
            with gr.Tab("6. Runs") as runs_page:
                r = runs_tab.render()
            with gr.Tab("7. Chat") as chat_page:
                c = chat_tab.render()

        # a chart drawn while its tab was hidden (or the window since resized) fits its box when the tab opens
        for tab in [b for b in demo.blocks.values() if isinstance(b, gr.Tab)]:
            tab.select(None, None, None, js=estimate_tab.RESIZE_JS, api_visibility="private", queue=False)

        # ---- the page's first event binds it to the browser's session key; everything else on load follows
        loaded = demo.load(session.bind, key_state, key_state, api_visibility="private")

        # ---- model facts -> state, target module choices
        load_outputs = [spec_state, m["facts"], t["targets"], form.components["learning_rate"], m["preset"]]

        def load_model(
            model_name_or_path: str, request: gr.Request, progress: gr.Progress = gr.Progress(track_tqdm=True)
        ) -> tuple[Any, ...]:
            try:  # a shared demo's visitor reads presets, hub ids and their own folders only
                session.workspace(request).check_model(model_name_or_path)
            except ConfigError as exc:
                reason = tr("**Cannot use this model.** {reason}").format(reason=tr_text(str(exc)))
                return None, reason, gr.update(), gr.update(), model_tab.CUSTOM_PRESET
            return model_tab.load_model_info(model_name_or_path, progress)

        m["load"].click(
            load_model,
            m["path"],
            load_outputs,
            api_name="load_model",
            concurrency_id=GPU_QUEUE,
            concurrency_limit=1,
        )

        # choices whose labels are words (GPU "Custom size", presets) in the page's language
        localized = [
            (estimate_tab.localized_gpu_choices, [e["gpu"]], [e["gpu"]]),
            (model_tab.localized_presets, [m["preset"]], [m["preset"]]),
        ]
        for fn, inputs, outputs in localized:
            loaded.then(fn, inputs, outputs, api_visibility="private", show_progress="hidden")

        # a reload shows the running (or last) job's settings, not the defaults: restored before the model's facts
        # load and again after (loading a model resets the target modules and the suggested learning rate)
        def restore(request: gr.Request) -> list[Any]:
            ws, job = session.get(request)
            cfg = job.snapshot().info.get("config")
            if (
                cfg
            ):  # config.json keeps the bound (absolute) runs folder; the box takes a name in the workspace
                cfg = {**cfg, "output_dir": ws.typed_output_dir(cfg.get("output_dir"))}
            return train_setup.restore_form(form, cfg)

        def reapply(loaded_cfg: dict[str, Any] | None) -> list[Any]:
            return train_setup.restore_form(form, loaded_cfg)

        gpu_queue = {"concurrency_id": GPU_QUEUE, "concurrency_limit": 1}
        loaded.then(restore, None, form.inputs, api_visibility="private").then(
            load_model, m["path"], load_outputs, api_visibility="private", **gpu_queue
        ).then(restore, None, form.inputs, api_visibility="private")
        t["setup"][
            "uploaded"
        ].success(  # a loaded setup file: its model's facts, then its own targets and rate
            load_model, m["path"], load_outputs, api_visibility="private", **gpu_queue
        ).then(reapply, t["setup"]["loaded"], form.inputs, api_visibility="private")

        # ---- data: uploads kept in the session's workspace; validation reads the whole form (tokenizer, max_length)
        def upload(file: str | None, request: gr.Request) -> tuple[Any, Any, Any]:
            return data_tab.on_upload(file, session.workspace(request))

        d["upload"].upload(
            upload, d["upload"], [d["name"], d["sample"], d["mapping"]], api_visibility="private"
        )

        # the settings of the last validation are kept: a language switch renders that report again, not a new one
        validated = gr.State(None)

        def run_validate(*values: Any) -> tuple[Any, ...]:
            *values_, request = values
            fields = dict(zip(form.names, values_))
            return (*data_tab.validate(fields, session.workspace(request)), fields)

        with_request(run_validate, form.signature())
        data_outputs = [
            d["summary"],
            d["preview"],
            d["lengths"],
            d["example"],
            d["report"],
            d["mapping"],
            validated,
        ]
        d["check"].click(
            run_validate,
            form.inputs,
            data_outputs,
            api_name="validate_data",
            concurrency_id=GPU_QUEUE,
            concurrency_limit=1,
        )
        # the report depends on max_length and answer-only labels too: keep it in step when they change
        triggers = [
            d["name"].change,
            d["format"].change,
            form.components["completion_only_loss"].change,
            form.components["max_length"].release,
        ]
        for trigger in triggers:
            trigger(
                run_validate,
                form.inputs,
                data_outputs,
                api_visibility="private",
                concurrency_id=GPU_QUEUE,
                concurrency_limit=1,
            )

        # ---- live LoRA arithmetic
        def lora_math(spec: ModelSpec | None, r: float, alpha: float, targets: list[str]) -> str:
            cfg = TrainingConfig(lora_r=max(1, int(r or 1)), lora_alpha=max(1, int(alpha or 1)))
            chosen = (
                tuple(targets)
                if targets
                else (default_target_modules(spec.model_type, spec.linear_names) if spec else ())
            )
            return lora_math_markdown(spec, cfg, chosen)

        math_inputs = [spec_state, form.components["lora_r"], form.components["lora_alpha"], t["targets"]]
        for comp in math_inputs:
            comp.change(lora_math, math_inputs, t["lora_math"], api_visibility="private")

        # ---- VRAM estimate, the plan, what fits
        est_inputs, est_outputs, run_estimate = estimate_wiring.wire(
            e, form, spec_state, m["path"], (load_model, load_outputs), gpu_queue
        )

        # ---- training: start / stop / poll, each on the caller's own job
        def start(*values: Any) -> str:
            *values_, request = values
            ws, job = session.get(request)
            try:
                cfg = ws.bind(form.to_config(*values_))
                # zero usable rows blocks Start with the reason, before a run folder exists; a streamed count
                # (the worker reads the whole file), stopped once it knows enough: one row, or the demo's cap
                cap = demo_limits()
                rows = count_usable_rows(cfg, stop_after=1 if cap is None else cap.max_rows + 1)
                if cap is not None and rows > cap.max_rows:
                    raise ConfigError(
                        [
                            f"dataset: more than {cap.max_rows:,} usable rows; the demo trains on up to {cap.max_rows:,}."
                        ]
                    )
                run_dir = job.start(
                    cfg,
                    max_waiting=MAX_WAITING if session.private else None,
                    dataset_rows=rows if cap is not None else None,
                )
            except ConfigError as exc:
                raise gr.Error("\n".join(exc.problems), title="Fix these settings") from None
            except JobBusyError as exc:
                raise gr.Error(str(exc), title="Busy") from None
            except StudioError as exc:
                raise gr.Error(str(exc), title="Cannot start") from None
            queued = job.snapshot().status == "queued"
            return f"{'Queued' if queued else 'Started'}: `{run_dir}`"

        with_request(start, form.signature())

        def stop(request: gr.Request) -> str:
            job = session.job(request)
            queued = job.snapshot().status == "queued"
            if not job.stop():
                return "Nothing is running."
            return (
                "Leaving the queue: nothing was trained." if queued else "Stopping after the current step..."
            )

        # Every page polls once a second: the job's state is rendered once per change and shared by the pages
        # watching it; each page is sent only what changed since its previous poll (ui/poll.py)
        renderer = PollRenderer()

        def poll(sent: Marker | None, request: gr.Request) -> tuple[Any, ...]:
            return renderer.poll(session.job(request), sent)

        def poll_fresh(request: gr.Request) -> tuple[Any, ...]:
            return renderer.poll(session.job(request), None)

        sent = gr.State(None)
        poll_outputs = [t["status"], t["loss"], t["logs"], t["start"], t["stop"], t["progress"], sent]
        t["start"].click(
            start, form.inputs, t["status"], api_name="start", concurrency_id=GPU_QUEUE, concurrency_limit=1
        ).success(  # a resume is a one-off: the next Start is a new run unless a folder is pasted again
            lambda: "", None, form.components["resume_from_checkpoint"], api_visibility="private"
        )
        t["stop"].click(stop, None, t["status"], api_name="stop")
        t["timer"].tick(poll, sent, poll_outputs, api_name="poll", show_progress="hidden", queue=False)
        loaded.then(poll_fresh, None, poll_outputs, api_visibility="private")

        # ---- export (only runs inside the caller's workspace)
        out_dir = form.components["output_dir"]
        export_rerender = export_wiring.wire(
            x, out_dir, session, (loaded.then, export_page.select), gpu_queue
        )

        # ---- runs list (read from disk, so an app restart still shows past runs), title, note, delete
        def active_run(request: gr.Request) -> tuple[str | None, str]:
            snap = session.job(request).snapshot()
            return snap.run_dir or None, snap.status

        runs_rerender = runs_tab.wire(
            r, out_dir, session.runs_dir, active_run, (loaded.then, runs_page.select, x["exported"].change)
        )

        def run_chart(output: str, folder: str, request: gr.Request) -> Any:
            try:  # the selected run's chart, drawn again (a language switch)
                run = resolve_run(session.runs_dir(request, output), folder) if folder else None
            except RunAdminError:
                run = None
            return runs_tab.run_view(str(run))[0] if run else gr.skip()

        # ---- chat: base vs fine-tuned, streamed; chat and training take turns on the GPU (core.chat_line)
        chat_rerender = chat_tab.wire(
            c, out_dir, session, (loaded.then, chat_page.select), x["exported"], MAX_WAITING
        )
        if session.private:  # the runs folder is the session's own; nothing to type
            out_dir.interactive = False

        # ---- language: stored choice on load; a switch renders every tab's computed text again, from its state
        def facts(spec: ModelSpec | None, shown: str) -> str:
            return model_facts_markdown(spec) if spec is not None else retranslate(shown)

        def revalidate(fields: dict[str, Any] | None, request: gr.Request) -> tuple[Any, ...]:
            if not fields:  # nothing validated yet
                return tuple(gr.skip() for _ in data_outputs)
            return (*data_tab.validate(fields, session.workspace(request)), fields)

        language.wire(
            demo,
            lang_menu,
            [
                (facts, [spec_state, m["facts"]], [m["facts"]]),
                (lora_math, math_inputs, [t["lora_math"]]),
                (poll_fresh, [], poll_outputs),
                (run_estimate, est_inputs, est_outputs),
                *export_rerender,
                *runs_rerender,
                (run_chart, [out_dir, r["selected"]], [r["chart"]]),
                *localized,
                *chat_rerender,
                (revalidate, [validated], data_outputs),
            ],
        )
    demo.studio_css = CSS  # type: ignore[attr-defined]  # for launch(css=...)
    demo.form = form  # type: ignore[attr-defined]  # exposed for tests: the field -> component mapping
    demo.private_sessions = session.private  # type: ignore[attr-defined]
    note = {PRIVATE_NOTE.format(hours=hours): PRIVATE_NOTE_ZH.format(hours=hours)}
    demo.i18n_table = translate(demo, extra=note)  # type: ignore[attr-defined]  # for launch(i18n=...)
    return demo
