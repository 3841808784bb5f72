"""English / Chinese UI through Gradio's own i18n (gr.I18n): the browser's language picks the locale, and Gradio's
Settings panel (page footer) switches it at any time.

The tabs are written in English; ``translate(demo)`` walks the built Blocks and replaces every label, help text,
placeholder, Markdown block, button text and tab title that has a Chinese translation in ``ui.zh.ZH`` with a
translation key, so the tab modules stay plain and a string without a translation simply stays English.
Text computed at run time goes through ``tr()`` (below), in the page's language.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from typing import Any

import gradio as gr
from gradio.i18n import I18nData

from ui.zh import GPU_HELP_EN, GPU_HELP_ZH, HELP_EN, HELP_ZH, ZH

TEXT_ATTRS = ("label", "info", "placeholder")
GPU_HELP_TITLE = "What takes GPU memory (textbook, chapter 26)"
HELP_TITLE = "How LoRA works: W' = W + (α/r)·B·A (textbook, chapter 26)"
PRIVATE_NOTE = (
    "Your uploads, runs, exports and chats are private to this browser and deleted {hours:g} hours after your last "
    "visit. One run trains at a time on this machine: if someone else's is running, yours waits in line."
)
PRIVATE_NOTE_ZH = (
    "你的上传、运行记录、导出和对话只属于这个浏览器，最后一次访问 {hours:g} 小时后删除。这台机器一次只训练一个运行："
    "如果别人的正在训练，你的会排队等待，轮到时自动开始。"
)
EXTRA_ZH = {
    GPU_HELP_TITLE: "什么占用显存（教材第 26 章）",
    HELP_TITLE: "LoRA 原理：W' = W + (α/r)·B·A（教材第 26 章）",
    HELP_EN: HELP_ZH,
    GPU_HELP_EN: GPU_HELP_ZH,
}
LANGUAGE_HINT = (
    "Language / 语言: the page follows your browser's language; switch it under **Settings** at the bottom of the "
    "page (设置 → Language → 简体中文)."
)


def key_for(text: str) -> str:
    """A stable translation key for an English string (its hash: keys never collide with Gradio's own)."""
    return "studio." + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def translate(
    demo: gr.Blocks, zh: dict[str, str] | None = None, extra: dict[str, str] | None = None
) -> gr.I18n:
    """Swap every translated string of ``demo`` for a translation key; returns the gr.I18n for ``launch(i18n=)``.

    Args:
        demo: the built Blocks (changed in place).
        zh: English -> Chinese strings (default ``ui.zh.ZH`` and the help panels).
        extra: more pairs, e.g. text the app formats at build time.

    Returns:
        gr.I18n with ``en`` (the original strings) and ``zh`` for every key used.
    """
    pairs = {**(ZH if zh is None else zh), **EXTRA_ZH, **(extra or {})}
    zh = {
        inspect.cleandoc(en): inspect.cleandoc(cn) for en, cn in pairs.items()
    }  # as gr.Markdown stores text
    en_table: dict[str, str] = {}
    zh_table: dict[str, str] = {}

    def swap(text: Any) -> Any:
        if not isinstance(text, str) or inspect.cleandoc(text) not in zh:
            return text
        key = key_for(inspect.cleandoc(text))
        en_table[key], zh_table[key] = text, zh[inspect.cleandoc(text)]
        return I18nData(key)

    for block in demo.blocks.values():  # tabs and accordions carry their title in ``label``
        for attr in TEXT_ATTRS:
            if hasattr(block, attr):
                setattr(block, attr, swap(getattr(block, attr)))
        if isinstance(block, gr.Markdown | gr.Button):
            block.value = swap(block.value)
    return gr.I18n(en=en_table, zh=zh_table)


# ---- text computed at run time (status lines, reports, tables, charts) ------------------------------------------
#
# The page's language is a cookie (LANG_COOKIE) that the language menu at the top of the page sets, the same way
# Django keeps its ``django_language`` cookie; without one, the browser's Accept-Language decides. Every event
# handler runs with Gradio's request in context, so ``tr()`` needs no argument threading: call it on the English
# template, then ``.format()`` the values, exactly as with gettext's ``_()``. Chinese templates come from ``ui.zh.ZH``
# and from every ``ui/zh_*.py`` module's ``ZH`` dict (one per area, so areas never edit the same table).

LANGS = ("en", "zh")
LANG_COOKIE = "lora_studio_lang"
_override: ContextVar[str | None] = ContextVar("lora_studio_lang", default=None)


def lang_of_request(request: Any) -> str:
    """"zh" or "en" for a Gradio / Starlette request: the LANG_COOKIE cookie if set, else the first language of
    Accept-Language that is Chinese or English, else "en"."""
    if request is None:
        return "en"
    try:
        cookie = (request.cookies or {}).get(LANG_COOKIE, "")
    except Exception:  # a request without cookies (API clients)
        cookie = ""
    if cookie in LANGS:
        return str(cookie)
    try:
        accept = str((request.headers or {}).get("accept-language", ""))
    except Exception:
        accept = ""
    for part in accept.split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh"
        if tag.startswith("en"):
            return "en"
    return "en"


def current_lang() -> str:
    """The language of the event being handled: ``use_lang()``'s if set, else the request's (Gradio keeps the
    request of the running event in ``gradio.context.LocalContext``), else "en"."""
    forced = _override.get()
    if forced:
        return forced
    from gradio.context import LocalContext

    return lang_of_request(LocalContext.request.get(None))


@contextmanager
def use_lang(lang: str) -> Iterator[None]:
    """Render in ``lang`` ("en" / "zh") inside the block, whatever the request says (tests, CLI, cached renders)."""
    token = _override.set(lang if lang in LANGS else "en")
    try:
        yield
    finally:
        _override.reset(token)


@cache
def runtime_table() -> dict[str, str]:
    """English template -> Chinese: ui.zh.ZH plus every ``ui/zh_*.py`` module's ``ZH`` (later modules win)."""
    import ui

    table = dict(ZH)
    for info in sorted(pkgutil.iter_modules(ui.__path__), key=lambda m: m.name):
        if info.name.startswith("zh_"):
            table.update(getattr(importlib.import_module(f"ui.{info.name}"), "ZH", {}))
    return table


def tr(text: str) -> str:
    """``text`` in the current language (``current_lang()``): its Chinese translation when the page is Chinese and
    one exists, else ``text`` unchanged. Pass the English *template* and format afterwards:
    ``tr("Trained {steps} steps").format(steps=3)``."""
    if current_lang() != "zh":
        return text
    return runtime_table().get(text, text)
