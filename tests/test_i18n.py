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


def test_every_runtime_template_keeps_its_fields_in_chinese():
    import re

    from ui.i18n import runtime_table

    field = re.compile(r"\{(\w+)(?:[:!][^{}]*)?\}")
    bad = [
        en
        for en, cn in runtime_table().items()
        if sorted(set(field.findall(en))) != sorted(set(field.findall(cn))) or not cn.strip()
    ]
    assert not bad, bad[:10]


def test_computed_text_turns_both_ways_by_the_tables():
    from ui.i18n import retranslate, tr, tr_text, use_lang

    english = (
        "Training step 3/10\n\n**Fix the settings first:** lora_r: must be between 1 and 1024\n\n"
        "Stopped before the first step: nothing was trained."
    )
    with use_lang("zh"):
        chinese = retranslate(english)
        assert tr("Preset") == "预设" and tr_text("Training step 3/10") == "训练第 3/10 步"
        assert "训练第 3/10 步" in chinese and "在第一步之前停止" in chinese and "请先修正设置" in chinese
        assert "lora_r: must be between 1 and 1024" in chinese  # what no table knows stays as it is
    with use_lang("en"):
        assert retranslate(chinese) == english and tr("Preset") == "Preset"
        assert tr_text("Training step 3/10") == "Training step 3/10"
    assert retranslate("my own words.") == "my own words."


def test_the_language_comes_from_the_cookie_then_the_browser():
    from types import SimpleNamespace

    from ui.i18n import LANG_COOKIE, lang_of_request

    def request(cookie: str | None, accept: str) -> SimpleNamespace:
        return SimpleNamespace(
            cookies={LANG_COOKIE: cookie} if cookie else {}, headers={"accept-language": accept}
        )

    assert lang_of_request(request(None, "zh-CN,zh;q=0.9,en;q=0.8")) == "zh"
    assert lang_of_request(request(None, "en-US,en;q=0.9,zh;q=0.8")) == "en"
    assert lang_of_request(request("en", "zh-CN")) == "en" and lang_of_request(request("zh", "en-US")) == "zh"
    assert lang_of_request(request("fr", "de-DE")) == "en" and lang_of_request(None) == "en"
