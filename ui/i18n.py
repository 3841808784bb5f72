"""English / Chinese UI through Gradio's own i18n (gr.I18n): the browser's language picks the locale, and Gradio's
Settings panel (page footer) switches it at any time.

The tabs are written in English; ``translate(demo)`` walks the built Blocks and replaces every label, help text,
placeholder, Markdown block, button text and tab title that has a Chinese translation in ``ui.zh.ZH`` with a
translation key, so the tab modules stay plain and a string without a translation simply stays English.
Text computed at run time (status lines, reports) stays English.
"""

from __future__ import annotations

import hashlib
import inspect
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
