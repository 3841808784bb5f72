"""The Export tab's events: the run list, the memory line, the merged / adapter exports and the push, each on
the caller's own runs (a shared demo's visitor exports only their own)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui.tabs import export_tab


def wire(
    x: dict[str, Any], out_dir: Any, session: Any, triggers: tuple[Any, ...], queue: dict[str, Any]
) -> list[tuple[Any, list[Any], list[Any]]]:
    """Connect the tab's events (inside the Blocks, after the tabs are rendered).

    Args:
        x: export_tab.render()'s components.
        out_dir: the Train tab's runs-folder textbox.
        session: the app's ui.session.SessionUI (each visitor's own runs folder and paths).
        triggers: events that refresh the run list, e.g. the page load's ``.then`` and the tab's ``.select``.
        queue: the model-loading queue's concurrency settings (an export loads the model).

    Returns:
        (fn, inputs, outputs) steps that render the run list again in the page's language, for ui.language.wire.
    """

    def refresh_runs(output_dir: str, request: gr.Request) -> Any:
        runs = export_tab.list_runs(str(session.runs_dir(request, output_dir)))
        folders = [folder for _, folder in runs]
        current = session.job(request).snapshot().run_dir
        value = current if current in folders else (folders[0] if folders else None)
        return gr.update(choices=runs, value=value)

    for trigger in (*triggers, x["refresh"].click):
        trigger(refresh_runs, out_dir, x["run"], api_visibility="private")

    def export_memory(run_dir: str | None, dtype: str, request: gr.Request) -> str:
        try:  # a shared demo's visitor sees the memory of their own runs only
            own = session.own_path(request, run_dir, "run folder") if run_dir else ""
        except gr.Error:
            return ""
        return export_tab.memory_line(own, dtype)

    # recomputed whenever the run (also set by Refresh and on opening the tab) or the dtype changes
    for comp in (x["run"], x["dtype"]):
        comp.change(
            export_memory,
            [x["run"], x["dtype"]],
            x["memory"],
            api_visibility="private",
            show_progress="hidden",
        )

    def export(
        run_dir: str, merged: bool, dtype: str, shard: str, progress: Any, request: gr.Request
    ) -> tuple[Any, ...]:
        run_dir = session.own_path(request, run_dir, "run folder")
        snap = session.job(request).snapshot()
        training = snap.run_dir if snap.is_active else None
        return export_tab.with_exported(
            export_tab.do_export(run_dir, merged, dtype, progress, shard, training, session.private)
        )

    def export_merged(
        run_dir: str,
        dtype: str,
        shard: str,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(track_tqdm=True),
    ) -> tuple[Any, ...]:
        return export(run_dir, True, dtype, shard, progress, request)

    def export_adapter(
        run_dir: str, request: gr.Request, progress: gr.Progress = gr.Progress()
    ) -> tuple[Any, ...]:
        return export(run_dir, False, "auto", "5GB", progress, request)

    export_outputs = [x["result"], x["download"], x["folder"], x["exported"]]
    x["merged"].click(
        export_merged, [x["run"], x["dtype"], x["shard"]], export_outputs, api_name="export_merged", **queue
    )
    x["adapter"].click(export_adapter, x["run"], export_outputs, api_name="export_adapter", **queue)

    def push(
        folder: str,
        repo: str,
        token: str,
        private: bool,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(track_tqdm=True),
    ) -> str:
        folder = session.own_path(request, folder, "export folder") if folder else ""
        return export_tab.do_push(folder, repo, token, private, progress)

    x["push"].click(
        push,
        [x["folder"], x["repo"], x["token"], x["private"]],
        x["pushed"],
        api_visibility="private",  # a token parameter does not belong in the public API listing
    )
    return [(refresh_runs, [out_dir], [x["run"]]), (export_memory, [x["run"], x["dtype"]], [x["memory"]])]
