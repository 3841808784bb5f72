"""English / Chinese UI. The page's language is the language menu's choice (ui.language: a cookie and
localStorage, so it survives a reload), else the browser's language.

Static text: the tabs are written in English; ``translate(demo)`` walks the built Blocks and replaces every label,
help text, placeholder, Markdown block, button text and tab title that has a Chinese translation with a key of
Gradio's own i18n (gr.I18n, locale zh-CN), so the tab modules stay plain. Text computed at run time goes through
``tr()`` / ``tr_text()`` (below), gettext-style, in the page's language. The tables: ``ui.zh.ZH`` and one
``ui/zh_<area>.py`` per area.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import pkgutil
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # gradio only where blocks are built: ui.views (the CLI's tables) stays light
    import gradio as gr

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


def key_for(text: str) -> str:
    """A stable translation key for an English string (its hash: keys never collide with Gradio's own)."""
    return "studio." + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def output_ids(demo: gr.Blocks) -> set[int]:
    """Ids of the blocks some event writes to: their value is computed at run time (``tr()``), never a key."""
    ids: set[int] = set()
    for fn in demo.fns.values():
        ids.update(block._id for block in fn.outputs)
    return ids


def translate(
    demo: gr.Blocks, zh: dict[str, str] | None = None, extra: dict[str, str] | None = None
) -> gr.I18n:
    """Swap every translated string of ``demo`` for a translation key; returns the gr.I18n for ``launch(i18n=)``.

    A Markdown that an event writes to keeps its English value (Gradio re-applies a key's text on every
    language switch, which would overwrite what the event wrote): ``retranslate`` turns it on page load and switch.

    Args:
        demo: the built Blocks (changed in place).
        zh: English -> Chinese strings (default ``runtime_table()``: ui.zh.ZH and every ui/zh_*.py table).
        extra: more pairs, e.g. text the app formats at build time.

    Returns:
        gr.I18n with ``en`` (the original strings) and ``zh-CN`` (Gradio's own Simplified Chinese locale, so its
        built-in texts such as the screen-reader status are Chinese too) for every key used.
    """
    import gradio as gr
    from gradio.i18n import I18nData

    pairs = {**(runtime_table() if zh is None else zh), **EXTRA_ZH, **(extra or {})}
    zh = {
        inspect.cleandoc(en): inspect.cleandoc(cn) for en, cn in pairs.items()
    }  # as gr.Markdown stores text
    en_table: dict[str, str] = {}
    zh_table: dict[str, str] = {}
    written = output_ids(demo)

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
        if isinstance(block, gr.Button) or (isinstance(block, gr.Markdown) and block._id not in written):
            block.value = swap(block.value)
    # Gradio's screen-reader status line says "common.complete" after an event; its zh-CN table lacks the key
    en_table.update(GRADIO_EN)
    zh_table.update(GRADIO_ZH)
    return gr.I18n(en=en_table, **{LOCALE_ZH: zh_table})


# ---- text computed at run time (status lines, reports, tables, charts) ------------------------------------------
#
# The page's language is a cookie (LANG_COOKIE) that the language menu at the top of the page sets, the same way
# Django keeps its ``django_language`` cookie; without one, the browser's Accept-Language decides. Every event
# handler runs with Gradio's request in context, so ``tr()`` needs no argument threading: call it on the English
# template, then ``.format()`` the values, exactly as with gettext's ``_()``. Chinese templates come from ``ui.zh.ZH``
# and from every ``ui/zh_*.py`` module's ``ZH`` dict (one per area, so areas never edit the same table).

GRADIO_EN = {"common.complete": "Complete", "common.error": "Error"}
GRADIO_ZH = {"common.complete": "完成", "common.error": "出错"}
LANGS = ("en", "zh")
LOCALE_ZH = "zh-CN"  # Gradio's locale for Simplified Chinese
LANG_COOKIE = "lora_studio_lang"
_override: ContextVar[str | None] = ContextVar("lora_studio_lang", default=None)


def lang_of_request(request: Any) -> str:
    """The language, "zh" or "en", of a Gradio / Starlette request: the LANG_COOKIE cookie if set, else the first language of
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
    if "gradio.context" not in sys.modules:  # no gradio loaded (the CLI): no request either
        return "en"
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
    """English template -> Chinese: ui.zh.ZH, the help panels, and every ``ui/zh_*.py`` module's ``ZH`` (later
    modules win)."""
    import ui

    table = {**ZH, **EXTRA_ZH}
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


def retranslate(text: Any) -> Any:
    """Text an event wrote, in the current language: what the tables can read (whole texts, templates with their
    values, line by line) turned into it from the other language; the rest (names, the user's own text)
    unchanged. Used on a language switch for text no tab re-renders from its state."""
    if not isinstance(text, str) or not text.strip():
        return text
    return _convert(text, to_zh=current_lang() == "zh")


@cache
def _reverse_table() -> dict[str, str]:
    return {cn: en for en, cn in runtime_table().items()}


# The language menu's browser side: the choice is a cookie (sent with every event, read by ``tr``) and a
# localStorage entry; Gradio's own locale (labels, help texts, its built-in strings) follows through its
# ``changeLocale``, imported from the module the page already loaded (same URL, same instance).
_APPLY_JS = """
    const pick = (lang === 'zh') ? 'zh' : 'en';
    document.cookie = 'COOKIE=' + pick + ';path=/;max-age=31536000;samesite=lax';
    try { localStorage.setItem('COOKIE', pick); } catch (e) {}
    const core = performance.getEntriesByType('resource').map(e => e.name)
        .find(n => /\\/assets\\/core-[^/]*\\.js$/.test(n));
    if (core) import(core).then(m => m.changeLocale && m.changeLocale(pick === 'zh' ? 'LOCALE' : 'en'));
""".replace("COOKIE", LANG_COOKIE).replace("LOCALE", LOCALE_ZH)

LOAD_JS = (
    "(...args) => { let lang = null; try { lang = localStorage.getItem('"
    + LANG_COOKIE
    + "'); } catch (e) {}\n"
    + "    if (lang !== 'zh' && lang !== 'en') lang = (navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh' : 'en';\n"
    + _APPLY_JS
    + "    return [pick, ...args.slice(1)]; }"
)
"""Page-load JS: the stored choice, else the browser's language; applied, and sent as the first input."""

SWITCH_JS = "(lang, ...args) => {" + _APPLY_JS + "    return [pick, ...args]; }"
"""The language menu's JS: applies the new choice before the event reaches the server."""


_FIELD = re.compile(r"\{(\w+)(?:[:!][^{}]*)?\}")


def _compile(template: str) -> re.Pattern[str] | None:
    """A template with named fields as an anchored regex: each field a lazy group, a repeated field a back
    reference; None for a template with too few words of its own ("{problems}." would match any sentence)."""
    if not _FIELD.search(template):
        return None
    literal = _FIELD.sub("", template)
    if len(re.findall(r"[A-Za-z]", literal)) < 4 and len(re.findall(r"[\u4e00-\u9fff]", literal)) < 2:
        return None
    pattern, pos, seen = "", 0, set()
    for m in _FIELD.finditer(template):
        pattern += re.escape(template[pos : m.start()])
        name = m.group(1)
        pattern += f"(?P={name})" if name in seen else f"(?P<{name}>[^\\n]+?)"  # a value is one line
        seen.add(name)
        pos = m.end()
    pattern += re.escape(template[pos:])
    try:
        return re.compile(pattern + r"\Z")
    except re.error:
        return None


@cache
def _patterns(to_zh: bool = True) -> list[tuple[re.Pattern[str], str]]:
    """(regex of a source template, target template) for every table entry with named fields, longest first (most
    specific): English -> Chinese, or Chinese -> English for ``to_zh=False``."""
    pairs = runtime_table().items() if to_zh else _reverse_table().items()
    out = []
    for source, target in sorted(pairs, key=lambda kv: -len(kv[0])):
        if "{" in source and (regex := _compile(source)) is not None:
            # the values come back already formatted ("0.0149"): "{ref:.4f}" takes them as they are
            out.append((regex, _FIELD.sub(lambda m: "{" + m.group(1) + "}", target)))
    return out


def _convert(text: str, to_zh: bool) -> str:
    """``text`` into the other language by the tables: the whole text, else its first matching template (fields
    converted the same way), else line by line; what matches nothing stays as it is."""
    table = runtime_table() if to_zh else _reverse_table()
    if text in table:
        return table[text]
    for pattern, target in _patterns(to_zh):
        m = pattern.match(text)
        if m:
            try:
                return target.format(**{k: _convert(v, to_zh) for k, v in m.groupdict().items()})
            except (KeyError, IndexError, ValueError):
                continue
    if "\n" in text:
        return "\n".join(_convert(line, to_zh) for line in text.split("\n"))
    return text


def tr_text(text: str) -> str:
    """Translate English text made elsewhere (the engine's messages, a plan's reason): the whole text if it is a
    table entry, else the first template of the tables whose fields match it (``"Training step {step}/{max_steps}"``
    matches "Training step 3/10"), else line by line; anything unknown stays English."""
    if current_lang() != "zh" or not text:
        return text
    return _convert(text, to_zh=True)
