"""``python launch.py`` without a command: check the UI options, choose local or private sessions, serve the app."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import gradio as gr

from core.space import demo_limits
from ui.tabs import export_tab


def _error(message: str) -> int:
    print(f"launch.py: error: {message}", file=sys.stderr)
    return 2


def serve(args: argparse.Namespace) -> int:
    """Serve the UI with ``args`` (host, port, share, auth, workspace, private_sessions, session_ttl_hours).

    Private sessions are on with ``--private-sessions`` or on a Hugging Face Space (``SPACE_ID`` set).

    Returns:
        The exit code: 2 for a bad option (message on stderr), 0 after the server stops.
    """
    from core.workspace import Sessions
    from ui.app import build_app

    auth = None
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not (sep and user and password):
            return _error("--auth must be USER:PASSWORD (both non-empty)")
        auth = (user, password)
    if args.workspace:
        folder = Path(args.workspace).expanduser().resolve()
        if not folder.is_dir():
            return _error(f"--workspace {folder} is not a folder")
        os.environ["LORA_STUDIO_WORKSPACE"] = str(folder)
    if args.session_ttl_hours <= 0:
        return _error("--session-ttl-hours must be > 0")
    private = args.private_sessions or bool(os.environ.get("SPACE_ID"))
    sessions = Sessions(private=private, ttl_s=args.session_ttl_hours * 3600)
    launch_app(build_app(sessions=sessions), host=args.host, port=args.port, share=args.share, auth=auth)
    return 0


def launch_app(
    demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, share: bool = False, **kwargs: Any
) -> Any:
    """Queue and launch ``demo``; uploads are capped at 200 MB with a readable error."""
    # transformers resolves its classes lazily on first use; two handler threads doing that at once can fail
    # with "cannot import name 'AutoConfig'": resolve them once here, before any thread asks
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    demo.queue(default_concurrency_limit=4)
    if not getattr(demo, "private_sessions", False):  # a demo's downloads come from gradio's cache only
        kwargs.setdefault("allowed_paths", [str(export_tab.downloads_dir())])
    limits = demo_limits()
    return demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=f"{limits.max_upload_mb}mb" if limits else "200mb",
        theme=gr.themes.Soft(),
        i18n=getattr(demo, "i18n_table", None),
        css=getattr(demo, "studio_css", None),
        **kwargs,
    )
