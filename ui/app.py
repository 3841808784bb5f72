"""build_app(): composes the tabs and wires events, timers and the training job. No engine logic here."""

from __future__ import annotations

from typing import Any

import gradio as gr

from core.config import TrainingConfig
from core.errors import ConfigError, JobBusyError, StudioError
from core.job import TrainingJob
from core.model import target_modules_for
from core.modelspec import ModelSpec
from core.presets import default_target_modules
from core.space import demo_limits, limits_markdown
from core.train import load_report_for
from ui.charts import training_figure
from ui.forms import ConfigForm
from ui.tabs import chat_tab, data_tab, estimate_tab, export_tab, model_tab, runs_tab, train_tab
from ui.views import lora_math_markdown, status_markdown

TITLE = "LoRA Studio"
INTRO = (
    "Fine-tune a language model with **LoRA** or **QLoRA** without writing code: pick a model, add data, check "
    "that it fits your GPU, train while watching the loss, then export merged weights."
)
GPU_QUEUE = "gpu"  # one concurrency id for everything that loads a model, so heavy work stays serial


def build_app(job: TrainingJob | None = None) -> gr.Blocks:
    """The whole UI as a gr.Blocks.

    Args:
        job: the TrainingJob shared by every browser session (one is created if None). Every page load
            re-attaches to it, so a refreshed tab shows the running job.
    """
    job = job or TrainingJob()
    form = ConfigForm()
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        limits = demo_limits()
        if limits is not None:
            gr.Markdown(limits_markdown(limits))
        spec_state = gr.State(None)
        with gr.Tabs():
            with gr.Tab("1. Model"):
                m = model_tab.render(form)
            with gr.Tab("2. Data"):
                d = data_tab.render(form)
            with gr.Tab("3. GPU memory"):
                e = estimate_tab.render()
            with gr.Tab("4. Train"):
                t = train_tab.render(form)
            with gr.Tab("5. Export") as export_page:
                x = export_tab.render()
            with gr.Tab("6. Runs") as runs_page:
                r = runs_tab.render()
            with gr.Tab("7. Chat") as chat_page:
                c = chat_tab.render()

        # ---- model facts -> state, target module choices
        load_outputs = [spec_state, m["facts"], t["targets"], form.components["learning_rate"]]
        m["load"].click(
            model_tab.load_model_info,
            m["path"],
            load_outputs,
            api_name="load_model",
            concurrency_id=GPU_QUEUE,
            concurrency_limit=1,
        )
        demo.load(
            model_tab.load_model_info,
            m["path"],
            load_outputs,
            api_visibility="private",
            concurrency_id=GPU_QUEUE,
            concurrency_limit=1,
        )

        # ---- data validation (uses the model's tokenizer and max_length, so it reads the whole form)
        def run_validate(*values: Any) -> tuple[Any, ...]:
            return data_tab.validate(dict(zip(form.names, values)))

        run_validate.__signature__ = form.signature()  # type: ignore[attr-defined]
        data_outputs = [d["summary"], d["preview"], d["lengths"], d["example"], d["report"], d["mapping"]]
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

        # ---- VRAM estimate
        def run_estimate(
            spec: ModelSpec | None, gpu: str, custom: float | None, *values: Any
        ) -> tuple[Any, ...]:
            try:
                cfg = form.to_config(*values)
                if spec is not None:
                    target_modules_for(cfg, spec)
            except StudioError as exc:
                return f"**Fix the settings first:** {exc}", None, None
            return estimate_tab.estimate(spec, cfg, gpu, custom)

        run_estimate.__signature__ = form.signature(("spec", "gpu", "custom_gib"))  # type: ignore[attr-defined]

        est_inputs = [spec_state, e["gpu"], e["custom"], *form.inputs]
        est_outputs = [e["recommendation"], e["table"], e["figure"]]
        e["go"].click(run_estimate, est_inputs, est_outputs, api_name="estimate")
        for comp in (spec_state, e["gpu"], form.components["load_in_4bit"], form.components["load_in_8bit"]):
            comp.change(run_estimate, est_inputs, est_outputs, api_visibility="private")

        # ---- training: start / stop / poll
        def start(*values: Any) -> str:
            try:
                cfg = form.to_config(*values)
                # zero usable rows blocks Start with the reason, before a run folder exists
                report = load_report_for(cfg)
                cap = demo_limits()
                if cap is not None and len(report.examples) > cap.max_rows:
                    raise ConfigError(
                        [
                            f"dataset: {len(report.examples):,} usable rows; the demo trains on up to {cap.max_rows:,}."
                        ]
                    )
                run_dir = job.start(cfg)
            except ConfigError as exc:
                raise gr.Error("\n".join(exc.problems), title="Fix these settings") from None
            except JobBusyError as exc:
                raise gr.Error(str(exc), title="Busy") from None
            except StudioError as exc:
                raise gr.Error(str(exc), title="Cannot start") from None
            return f"Started: `{run_dir}`"

        start.__signature__ = form.signature()  # type: ignore[attr-defined]

        def stop() -> str:
            return "Stopping after the current step..." if job.stop() else "Nothing is running."

        # Every browser session polls once a second; the snapshot object is replaced on each change, so its
        # rendering (status, log text, chart) is computed once per change and shared by all sessions.
        rendered: dict[str, Any] = {}

        def render_snapshot(snap: Any) -> tuple[str, str]:
            if rendered.get("snap") is not snap:
                rendered.update(snap=snap, status=status_markdown(snap), logs="\n".join(snap.logs[-60:]))
            return rendered["status"], rendered["logs"]

        def chart(snap: Any) -> Any:
            if rendered.get("history") is not snap.history:
                rendered.update(
                    history=snap.history,
                    figure=training_figure(
                        snap.history, snap.info.get("estimate_gib"), snap.info.get("device")
                    ),
                )
            return rendered["figure"]

        def poll(seen: int) -> tuple[Any, ...]:
            snap = job.snapshot()
            n = len(snap.history)
            status_text, log_text = render_snapshot(snap)
            figure = chart(snap) if n != seen or seen == -1 else gr.update()
            return (
                status_text,
                figure,
                log_text,
                gr.update(interactive=not snap.is_active),
                gr.update(interactive=snap.is_active),
                n,
            )

        seen = gr.State(-1)
        poll_outputs = [t["status"], t["loss"], t["logs"], t["start"], t["stop"], seen]
        t["start"].click(
            start, form.inputs, t["status"], api_name="start", concurrency_id=GPU_QUEUE, concurrency_limit=1
        ).success(  # a resume is a one-off: the next Start is a new run unless a folder is pasted again
            lambda: "", None, form.components["resume_from_checkpoint"], api_visibility="private"
        )
        t["stop"].click(stop, None, t["status"], api_name="stop")
        t["timer"].tick(poll, seen, poll_outputs, api_name="poll", show_progress="hidden", queue=False)
        demo.load(lambda: poll(-1), None, poll_outputs, api_visibility="private")

        # ---- export
        def refresh_runs(output_dir: str) -> Any:
            runs = export_tab.list_runs(output_dir)
            current = job.snapshot().run_dir
            return gr.update(choices=runs, value=current if current in runs else (runs[0] if runs else None))

        for trigger in (x["refresh"].click, demo.load, export_page.select):
            trigger(refresh_runs, form.components["output_dir"], x["run"], api_visibility="private")

        def training_run() -> str | None:
            snap = job.snapshot()
            return snap.run_dir if snap.is_active else None

        x["merged"].click(
            lambda run_dir, dtype, shard, p=gr.Progress(track_tqdm=True): export_tab.do_export(
                run_dir, True, dtype, p, shard, training_run()
            ),
            [x["run"], x["dtype"], x["shard"]],
            [x["result"], x["download"], x["folder"]],
            api_name="export_merged",
            concurrency_id=GPU_QUEUE,
            concurrency_limit=1,
        )
        x["adapter"].click(
            lambda run_dir, p=gr.Progress(): export_tab.do_export(
                run_dir, False, "auto", p, training_run=training_run()
            ),
            x["run"],
            [x["result"], x["download"], x["folder"]],
            api_name="export_adapter",
            concurrency_id=GPU_QUEUE,
            concurrency_limit=1,
        )

        x["push"].click(
            lambda folder, repo, token, private, p=gr.Progress(track_tqdm=True): export_tab.do_push(
                folder, repo, token, private, p
            ),
            [x["folder"], x["repo"], x["token"], x["private"]],
            x["pushed"],
            api_visibility="private",  # a token parameter does not belong in the public API listing
        )

        # ---- runs list (read from disk, so an app restart still shows past runs)
        def refresh_run_table(output_dir: str) -> tuple[Any, str]:
            snap = job.snapshot()
            return runs_tab.runs_table(output_dir, snap.run_dir or None, snap.status)

        runs_outputs = [r["table"], r["caption"]]
        r["refresh"].click(
            refresh_run_table, form.components["output_dir"], runs_outputs, api_name="list_runs"
        )
        for trigger in (demo.load, runs_page.select):
            trigger(refresh_run_table, form.components["output_dir"], runs_outputs, api_visibility="private")

        # ---- chat: base vs fine-tuned, streamed; refused while training runs (and training refused while it chats)
        for trigger in (c["refresh"].click, demo.load, chat_page.select):
            trigger(
                chat_tab.refresh_runs,
                [form.components["output_dir"], c["run"]],
                c["run"],
                api_visibility="private",
            )
        c["run"].change(chat_tab.pick_run, c["run"], c["finetuned"], api_visibility="private")

        def chat(
            run_dir: str | None,
            finetuned: str | None,
            prompt: str,
            temperature: float,
            top_p: float,
            max_new_tokens: float,
            progress: gr.Progress = gr.Progress(),
        ) -> Any:
            yield from chat_tab.respond(
                run_dir, finetuned, prompt, temperature, top_p, max_new_tokens, job, progress
            )

        chat_inputs = [
            c["run"],
            c["finetuned"],
            c["prompt"],
            c["temperature"],
            c["top_p"],
            c["max_new_tokens"],
        ]
        chat_outputs = [c["base"], c["tuned"], c["status"]]
        c["send"].click(
            chat, chat_inputs, chat_outputs, api_name="chat", concurrency_id=GPU_QUEUE, concurrency_limit=1
        )
        c["prompt"].submit(
            chat,
            chat_inputs,
            chat_outputs,
            api_visibility="private",
            concurrency_id=GPU_QUEUE,
            concurrency_limit=1,
        )
    demo.form = form  # type: ignore[attr-defined]  # exposed for tests: the field -> component mapping
    return demo


def launch_app(
    demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, share: bool = False, **kwargs: Any
) -> Any:
    """Queue and launch ``demo``; uploads are capped at 200 MB with a readable error."""
    demo.queue(default_concurrency_limit=4)
    kwargs.setdefault("allowed_paths", [str(export_tab.downloads_dir())])
    limits = demo_limits()
    return demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=f"{limits.max_upload_mb}mb" if limits else "200mb",
        theme=gr.themes.Soft(),
        **kwargs,
    )
