"""English / Chinese UI: every label, help text, Markdown block and tab title of the built app has a Chinese
translation, and the textbook's explanations are in both languages."""

from __future__ import annotations

import json

import gradio as gr
from gradio.i18n import I18nData

from ui.app import build_app
from ui.i18n import output_ids, runtime_table
from ui.language import LANGUAGE_LABEL
from ui.zh import GPU_HELP_EN, GPU_HELP_ZH, HELP_EN, HELP_ZH, ZH

# replaced at page load by computed (English) text, or already in both languages
DYNAMIC = ("Loading the embedded model's facts...", LANGUAGE_LABEL)


def test_every_static_string_of_the_app_is_translated():
    demo = build_app()
    table = demo.i18n_table
    assert isinstance(table, gr.I18n)
    en, zh = table.translations["en"], table.translations["zh-CN"]
    assert en.keys() == zh.keys() and len(en) >= 140
    left: list[str] = []
    written = output_ids(demo)  # a Markdown an event writes to is translated by tr() on load and switch
    for block in demo.blocks.values():
        if isinstance(block, gr.Markdown) and block._id in written and isinstance(block.value, str):
            assert not block.value.strip() or block.value in runtime_table(), block.value
            continue
        texts = [getattr(block, a, None) for a in ("label", "info", "placeholder")]
        if isinstance(block, gr.Markdown | gr.Button):
            texts.append(block.value)
        for text in texts:
            if isinstance(text, I18nData):
                assert zh.get(text.key), en.get(text.key)
            elif isinstance(text, str) and text.strip() and text not in DYNAMIC:
                left.append(text)
    assert not left, left  # an English string with no Chinese translation
    # Gradio sends the keys to the browser, which shows the locale's text
    config = json.dumps(demo.get_config_file(), default=str)
    assert "__i18n__" in config and "LoRA rank (r)" not in config


def test_the_textbook_help_is_in_both_languages():
    for text in (HELP_EN, HELP_ZH):
        assert "W' = W + (α/r)·B·A" in text or "W' = W + (α/r) · B · A" in text
        assert "r·(N+D)" in text.replace(" ", "") or "r×(N+D)" in text.replace(" ", "")
        assert "49,152" in text and "| 8 - 16 |" in text.replace("8-16", "8 - 16")
    assert "全零初始化" in HELP_ZH and "zero" in HELP_EN.lower()
    for text in (GPU_HELP_EN, GPU_HELP_ZH):
        assert "QLoRA" in text and "7B" in text
    assert all(v for v in ZH.values())
