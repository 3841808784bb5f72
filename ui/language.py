"""The language menu (English / 简体中文) at the top of the page, and what a switch re-renders.

The choice lives in the browser (a cookie every event sends, read by ``ui.i18n.tr``, and localStorage), so it
survives a reload; the page's first choice is the stored one, else the browser's language. Static labels follow
through Gradio's own locale (``ui.i18n.translate``); text that events computed is rendered again in the new
language by the ``rerender`` steps the app registers, from the state each tab already has (the model's facts from
the loaded spec, the Train tab from the job, the lists from disk), so a switch never loses what a tab showed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

from ui.i18n import LOAD_JS, SWITCH_JS, output_ids, retranslate, runtime_table, tr

LANGUAGE_LABEL = "Language / 语言"
CHOICES = [("English", "en"), ("简体中文", "zh")]


def render() -> gr.Radio:
    """The menu: a two-choice radio whose label is already in both languages (so it is never translated)."""
    return gr.Radio(
        choices=CHOICES,
        value="en",
        label=LANGUAGE_LABEL,
        scale=0,
        min_width=240,
        elem_id="language-menu",
    )


def written_texts(demo: gr.Blocks) -> list[Any]:
    """Markdown blocks that events write to: on load and on each switch their text is turned into the page's
    language by the tables (``ui.i18n.retranslate``: placeholders, upload notes, export results...); tabs that can
    render again from their state do so afterwards (``rerender``)."""
    written = output_ids(demo)
    return [
        block for block in demo.blocks.values() if isinstance(block, gr.Markdown) and block._id in written
    ]


def wire(
    demo: gr.Blocks,
    menu: gr.Radio,
    rerender: Sequence[tuple[Callable[..., Any], list[Any], list[Any]]],
) -> None:
    """Register the page-load step (apply the stored or browser language) and the switch.

    Args:
        demo: the built Blocks, every other event already registered (placeholders are found from them).
        menu: the radio from ``render()``.
        rerender: (fn, inputs, outputs) steps run after a switch, in order, each as gradio event arguments; they
            run with the new language's cookie, so their ``tr()`` text is in it.
    """
    texts = written_texts(demo)
    # Gradio's locale switch re-labels only the selected tab: every tab and accordion title is also sent
    titled = [
        b for b in demo.blocks.values() if isinstance(b, gr.Tab | gr.Accordion) and isinstance(b.label, str)
    ]
    titles = [str(b.label) for b in titled]
    # fixed choices whose labels are words ("LoRA (16-bit base)"): labels in the page's language, values unchanged
    # (a list an event fills at run time starts empty, so it is not one of them)
    table = runtime_table()
    choosers = [
        b
        for b in demo.blocks.values()
        if isinstance(b, gr.Radio | gr.Dropdown | gr.CheckboxGroup)
        and b is not menu
        and any(isinstance(c, tuple) and c[0] in table for c in (b.choices or []))
    ]
    choices = [[tuple(c) for c in b.choices] for b in choosers]
    # buttons: a panel's buttons that events relabel (or that were hidden) keep the old words otherwise
    buttons = [b for b in demo.blocks.values() if isinstance(b, gr.Button) and isinstance(b.value, str)]
    buttons = [b for b in buttons if b.value in table]
    button_texts = [str(b.value) for b in buttons]

    def apply(lang: str, *values: Any) -> tuple[Any, ...]:
        labels = (gr.update(label=tr(title)) for title in titles)
        options = (gr.update(choices=[(tr(str(label)), value) for label, value in opts]) for opts in choices)
        words = (gr.update(value=tr(text)) for text in button_texts)
        return (lang, *(retranslate(v) for v in values), *labels, *options, *words)

    outputs = [menu, *texts, *titled, *choosers, *buttons]
    demo.load(apply, [menu, *texts], outputs, js=LOAD_JS, api_visibility="private", queue=False)
    event = menu.input(apply, [menu, *texts], outputs, js=SWITCH_JS, api_visibility="private", queue=False)
    # a mounted upload area keeps Gradio's own words ("Drop File Here") in the old language: mounted again
    uploads = [b for b in demo.blocks.values() if isinstance(b, gr.File) and b.interactive is not False]

    def shown(visible: bool) -> Callable[[], Any]:
        updates = tuple(gr.update(visible=visible) for _ in uploads)
        return lambda: updates[0] if len(updates) == 1 else updates

    if uploads:
        private = {"api_visibility": "private", "queue": False}
        event.then(shown(False), None, uploads, **private).then(shown(True), None, uploads, **private)
    for fn, inputs, outputs in rerender:  # each on its own after the switch: one failing leaves the others
        event.then(fn, inputs, outputs, api_visibility="private", show_progress="hidden")
