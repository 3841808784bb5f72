"""Messages of the Model, Data and GPU memory tabs: an empty dataset name, an unreachable hub, a failed model load,
and the tabs' run-time text in both languages (real files, the real embedded model, real Gradio handlers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gradio as gr
import pytest

from core.config import TrainingConfig
from core.datafiles import NO_DATASET, read_records
from core.errors import DataError, ModelError
from core.validation import count_usable_rows, validate_config

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
MADE_UP = "nobody-here-xyz/made-up-model-4711"


# ---- 1. no dataset chosen -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "   ", "\t\n"])
def test_an_empty_dataset_name_says_none_was_chosen_everywhere(name, embedded_path):
    cfg = TrainingConfig(dataset_name=name)
    for attempt in (
        lambda: count_usable_rows(cfg, stop_after=1),  # Start
        lambda: validate_config(cfg),  # Validate data and the CLI's validate (before the tokenizer loads)
        lambda: read_records(name),  # training reads the whole list
    ):
        with pytest.raises(DataError) as err:
            attempt()
        assert str(err.value) == NO_DATASET
        assert "folder" not in str(err.value) and "not found" not in str(err.value)


def test_the_cli_validate_of_a_config_without_data_says_none_was_chosen(tmp_path):
    config = tmp_path / "config.json"
    config.write_text('{"dataset_name": "  ", "max_length": 128}', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), "validate", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode != 0
    assert NO_DATASET in done.stdout + done.stderr
    assert "is a folder" not in done.stdout + done.stderr


def test_the_data_tab_validate_without_a_dataset_says_none_was_chosen(tmp_path):
    from core.workspace import Workspace
    from ui.tabs import data_tab

    ws = Workspace(tmp_path)
    out = data_tab.validate({"dataset_name": "   ", "model_name_or_path": "x"}, ws)
    assert NO_DATASET in out[0]


# ---- 2. the hub cannot be reached ---------------------------------------------------------------------------------


def test_a_made_up_hub_model_offline_says_the_hub_is_unreachable_first(monkeypatch):
    from core.model import inspect_model, resolve_model_path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for attempt in (inspect_model, resolve_model_path):
        with pytest.raises(ModelError) as err:
            attempt(MADE_UP)
        message = str(err.value)
        assert message.startswith("The Hugging Face Hub is not reachable (offline: HF_HUB_OFFLINE=1)"), (
            message
        )
        assert "only local model folders" in message and "embedded default model" in message
        assert "cannot build a causal LM" not in message
        first, cause = message.split("\n\n", 1)  # the technical cause stays, below
        assert MADE_UP in first and cause.startswith("Cause: ")


def test_a_hub_that_accepts_connections_but_answers_nothing_is_named_not_a_config_error(monkeypatch):
    """The user's case: the TCP probe passed, the HTTP fetch failed, and the message was "cannot build a causal LM
    from its config". A real fetch against a closed local port stands in for the unreachable hub."""
    import core.model
    from core.model import inspect_model

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: connection refused
    monkeypatch.setattr(core.model, "_hub_reachable", lambda timeout_s=3.0: True)
    with pytest.raises(ModelError) as err:
        inspect_model(MADE_UP)
    message = str(err.value)
    assert message.startswith("The Hugging Face Hub is not reachable ("), message
    assert "cannot build a causal LM" not in message.split("\n\n")[0]
    assert "\n\nCause: " in message


def test_a_made_up_hub_dataset_offline_says_the_hub_is_unreachable_first(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as err:
        read_records("nobody-here-xyz/made-up-data-4711")
    message = str(err.value)
    assert message.startswith("The Hugging Face Hub is not reachable (offline: HF_HUB_OFFLINE=1)"), message
    assert "only local data files and the samples work" in message
    assert "\n\nCause: ConnectionError" in message


def test_only_network_failures_are_called_unreachable(monkeypatch):
    from core.hub import REASON_DNS, REASON_OFFLINE, unreachable_reason

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert (
        unreachable_reason(ValueError("config.json has no model_type")) is None
    )  # a broken repo, not the hub
    assert unreachable_reason(None) is None
    try:  # a real DNS failure, chained the way huggingface_hub chains it
        try:
            import socket

            socket.getaddrinfo("no-such-host.invalid", 443)
        except OSError as dns:
            raise OSError("We couldn't connect to 'https://huggingface.co'") from dns
    except OSError as exc:
        assert unreachable_reason(exc) == REASON_DNS
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert unreachable_reason(None) == REASON_OFFLINE


# ---- 3. a failed model load leaves the Train tab alone and the preset honest -----------------------------------


def _quiet(*_args, **_kwargs):
    """A progress callback that shows nothing (the handlers take gr.Progress or any callable)."""


def test_a_failed_model_load_keeps_the_target_modules_and_does_not_claim_the_preset(monkeypatch):
    from ui.tabs.model_tab import CUSTOM_PRESET, load_model_info

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec, facts, targets, lr, preset = load_model_info(MADE_UP, progress=_quiet)
    assert spec is None
    assert targets == gr.update() and lr == gr.update()  # the Train tab keeps its modules and learning rate
    assert preset == CUSTOM_PRESET  # not the preset of the model shown before
    assert facts.startswith("**Cannot use this model.** The Hugging Face Hub is not reachable")
    spec, facts, targets, lr, preset = load_model_info("   ", progress=_quiet)
    assert spec is None and targets == gr.update() and preset == CUSTOM_PRESET


def test_a_loaded_model_sets_the_preset_that_names_it(embedded_path):
    from core.config import DEFAULT_MODEL
    from ui.tabs.model_tab import CUSTOM_PRESET, load_model_info

    spec, facts, targets, lr, preset = load_model_info(DEFAULT_MODEL, progress=_quiet)
    assert spec.model_type == "llama" and preset == DEFAULT_MODEL
    assert "q_proj" in targets["choices"] and "q_proj" in targets["value"] and lr > 0
    spec, _, _, _, preset = load_model_info(
        embedded_path, progress=_quiet
    )  # a folder: not one of the presets
    assert spec is not None and preset == CUSTOM_PRESET


def test_choosing_custom_in_the_preset_leaves_the_model_box_as_typed():
    from core.config import DEFAULT_MODEL
    from ui.forms import ConfigForm
    from ui.tabs import model_tab

    with gr.Blocks() as demo:
        parts = model_tab.render(ConfigForm())
    assert model_tab.CUSTOM_PRESET in [v for _, v in parts["preset"].choices]
    change = next(f for f in demo.fns.values() if (parts["preset"]._id, "change") in f.targets)
    assert change.fn(model_tab.CUSTOM_PRESET) == gr.update()
    assert change.fn(DEFAULT_MODEL) == DEFAULT_MODEL
    typed = next(f for f in demo.fns.values() if (parts["path"]._id, "input") in f.targets)
    assert typed.outputs == [parts["preset"]]
    assert (
        typed.fn("someone/other-model") == model_tab.CUSTOM_PRESET
        and typed.fn(DEFAULT_MODEL) == DEFAULT_MODEL
    )


# ---- 4. the tabs' run-time text in the page's language ---------------------------------------------------------


def _workspace(tmp_path: Path):
    from core.workspace import Workspace

    ws = Workspace(tmp_path, private=True)
    ws.uploads_dir.mkdir(parents=True, exist_ok=True)
    return ws


def _problem_file(ws) -> Path:
    """A real alpaca JSONL: rows 2 (empty answer) and 4 (broken JSON) are dropped, the others kept."""
    lines = [
        '{"instruction": "Add 2 and 3.", "output": "5"}',
        '{"instruction": "Name a colour.", "output": ""}',
        '{"instruction": "Say hi.", "output": "Hi!"}',
        '{"instruction": "broken", "output": ',
        '{"instruction": "Count to 3.", "output": "1, 2, 3"}',
    ]
    path = ws.uploads_dir / "problems.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _form(path: Path, **extra) -> dict:
    from core.config import DEFAULT_MODEL

    return {"model_name_or_path": DEFAULT_MODEL, "dataset_name": str(path), "max_length": 256, **extra}


def test_the_data_summary_and_row_reasons_follow_the_page_language(tmp_path, embedded_path):
    from ui.i18n import use_lang
    from ui.tabs import data_tab

    ws = _workspace(tmp_path)
    path = _problem_file(ws)
    with use_lang("en"):
        english = data_tab.validate(_form(path), ws)
    assert "- row 2: output is empty" in english[0] and "- row 4: line 4 is not valid JSON" in english[0]
    with use_lang("zh"):
        chinese = data_tab.validate(_form(path), ws)
    summary = chinese[0]
    assert "- 第 2 行：output 为空" in summary and "第 4 行在第" in summary, summary
    assert "行数：读取 **5**" in summary and "is empty" not in summary and "Rows:" not in summary
    assert "丢弃：1 × output 为空" in summary and "not valid JSON" not in summary  # the grouped reasons too
    assert list(chinese[1]["value"].columns) == ["行", "system", "user", "assistant", "轮次"]
    assert chinese[2].layout.xaxis.title.text == "每行 token 数（已套用对话模板）"
    assert {kind for _, kind in chinese[3]} == {"参与训练", None} and any(
        k == "trained" for _, k in english[3]
    )
    assert Path(chinese[4]).is_file()  # the row CSV stays English for tools (row, status, reason)


def test_a_data_error_and_the_no_dataset_message_are_translated(tmp_path):
    from ui.i18n import use_lang
    from ui.tabs import data_tab

    ws = _workspace(tmp_path)
    with use_lang("zh"):
        assert data_tab.validate({"dataset_name": ""}, ws)[0].startswith("尚未选择数据集")
        missing = data_tab.validate(_form(ws.uploads_dir / "gone.csv"), ws)[0]
    assert missing.startswith("**这份数据无法使用。**") and "找不到文件" in missing, missing


def test_every_template_the_three_tabs_translate_has_its_chinese():
    """Every literal passed to tr() in the Model, Data and GPU memory tabs is in the tables, placeholders equal."""
    import ast
    import re

    from ui.i18n import runtime_table
    from ui.zh_data import ZH

    table = runtime_table()
    missing, fields = [], []
    for name in ("data_tab", "model_tab", "estimate_tab"):
        tree = ast.parse((ROOT / "ui" / "tabs" / f"{name}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "tr" and node.args:
                arg = node.args[0]
                texts = (
                    [arg.value]
                    if isinstance(arg, ast.Constant)
                    else [b.value for b in (arg.body, arg.orelse) if isinstance(b, ast.Constant)]
                    if isinstance(arg, ast.IfExp)
                    else []
                )
                missing += [t for t in texts if isinstance(t, str) and t not in table]
    assert not missing, missing
    for en, cn in ZH.items():
        if sorted(re.findall(r"\{(\w*)", en)) != sorted(re.findall(r"\{(\w*)", cn)):
            fields.append(en)
    assert not fields, fields


def test_the_gpu_tab_labels_and_recommendation_are_translated(embedded_path):
    from core.model import inspect_model
    from ui.i18n import use_lang
    from ui.tabs import estimate_tab

    spec = inspect_model(embedded_path)
    cfg = TrainingConfig(max_length=256)
    with use_lang("zh"):
        names, default = estimate_tab.gpu_choices()
        text, frame, figure, fields = estimate_tab.estimate(spec, cfg, estimate_tab.CUSTOM, 24)
        applied = estimate_tab.apply_plan(None)[-1]
    assert ("自定义大小", estimate_tab.CUSTOM) in names  # the label translated, the value English
    assert estimate_tab.gpu_gib_for(default, None) > 0
    # on a machine without a CUDA GPU the CPU comes first, the chosen GPU is for planning another machine
    assert text.startswith("**在这台机器上：** 没有找到 CUDA GPU") and "**训练之后：**" in text, text
    assert "\n\n### 你的设置在 自定义 GPU（可用 24 GiB）上：" in text
    assert "Your settings" not in text and "After training" not in text
    assert frame.iloc[-1, 0] == "可训练参数" and fields is not None
    assert applied == "请先估算：还没有可应用的方案。"
    with use_lang("en"):
        english = estimate_tab.estimate(spec, cfg, estimate_tab.CUSTOM, 24)[0]
        assert (
            english.startswith("**On this machine:** No CUDA GPU found")
            and "to plan a run on another" in english
        )
        assert "\n\n### Your settings on a custom GPU (24 GiB usable)" in english


# ---- 5. layout: raw-text preview, the GPU chart in a hidden tab, replacing an upload ---------------------------


def test_a_raw_text_preview_gets_one_wide_wrapping_column(tmp_path, embedded_path):
    from ui.tabs import data_tab

    ws = _workspace(tmp_path)
    path = ws.uploads_dir / "notes.jsonl"
    path.write_text(
        "\n".join(
            f'{{"text": "Paragraph {i} of plain prose for continued pre-training."}}' for i in range(6)
        ),
        encoding="utf-8",
    )
    out = data_tab.validate(_form(path, dataset_format="text"), ws)
    preview = out[1]
    assert list(preview["value"].columns) == ["row", "text"]
    assert preview["column_widths"] == data_tab.TEXT_WIDTHS and len(data_tab.TEXT_WIDTHS) == 2
    chat = data_tab.validate(_form(_problem_file(ws)), ws)[1]
    assert chat["column_widths"] == data_tab.CHAT_WIDTHS and len(chat["value"].columns) == 5


def test_the_gpu_tab_resizes_its_charts_when_opened():
    from ui.tabs import estimate_tab

    with gr.Blocks() as demo:
        with gr.Tab("3. GPU memory") as tab:
            estimate_tab.render()
    selects = [f for f in demo.fns.values() if (tab._id, "select") in f.targets]
    assert len(selects) == 1 and selects[0].js == estimate_tab.RESIZE_JS and "resize" in selects[0].js


def test_an_uploaded_file_is_replaced_by_the_next_one_without_clearing_the_box(tmp_path):
    from ui.tabs import data_tab

    ws = _workspace(tmp_path)
    first, second = tmp_path / "a" / "data.csv", tmp_path / "b" / "data.csv"
    for path, answer in ((first, "one"), (second, "two")):
        path.parent.mkdir()
        path.write_text(f"instruction,output\nsay,{answer}\n", encoding="utf-8")
    kept_first = data_tab.on_upload(str(first), ws)[0]
    kept_second = data_tab.on_upload(str(second), ws)[
        0
    ]  # same name, same second: a new file, never overwritten
    assert kept_first != kept_second
    assert Path(kept_first).read_text(encoding="utf-8").endswith("say,one\n")
    assert Path(kept_second).read_text(encoding="utf-8").endswith("say,two\n")
    box, note = data_tab.on_dataset_name(kept_second)
    assert (
        box is None and f"**{Path(kept_second).name}**" in note and "replace" in note
    )  # empty, ready for a drop
    assert data_tab.on_dataset_name(str(ASSETS / "humaneval_alpaca.jsonl")) == (None, "")  # a sample: no note
    from ui.forms import ConfigForm

    with gr.Blocks() as demo:
        parts = data_tab.render(ConfigForm())
    listeners = [f for f in demo.fns.values() if (parts["name"]._id, "change") in f.targets]
    assert [f.fn for f in listeners] == [data_tab.on_dataset_name]
    assert listeners[0].outputs == [parts["upload"], parts["upload_note"]]
    assert not [
        f for f in demo.fns.values() if (parts["upload"]._id, "upload") in f.targets
    ]  # ui.app's alone


def test_the_length_histogram_spans_the_rows_and_names_raw_text():
    from ui.tabs.data_tab import length_histogram_figure

    short = length_histogram_figure({40: 3, 90: 5, 120: 2}, max_length=2048, templated=True)
    bars = short.data[0]
    assert max(bars.x) < 200 and sum(bars.y) == 10  # the rows fill the axis, not 6% of a 2048-token one
    assert not short.layout.shapes and "max_length 2048 (0 rows longer)" in short.layout.title.text
    assert short.layout.xaxis.title.text == "tokens per row (chat template applied)"
    near = length_histogram_figure({300: 4, 600: 1}, max_length=512, templated=False)
    assert near.layout.shapes[0].x0 == 512 and "(1 rows longer)" in near.layout.annotations[0].text
    assert near.layout.xaxis.title.text == "tokens per row (raw text)"
