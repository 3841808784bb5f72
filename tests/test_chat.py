"""Chat tab engine: base vs fine-tuned answers streamed from real models; chat and training take turns on the GPU
(an answer asked while a run trains waits in line, then answers); Stop ends a long answer at once.

Run folders are built the way training leaves them (config.json + adapter/ written by peft's save_pretrained), with
LoRA B deliberately non-zero so the adapter visibly changes the answers; one test trains a real run on tiny_llama.
"""

from __future__ import annotations

import ast
import json
import re
import threading
from pathlib import Path

import gradio as gr
import pytest
import torch

from core import chat
from core.config import TrainingConfig
from core.job import TrainingJob
from tests.conftest import ASSETS, ROOT
from ui.i18n import use_lang
from ui.tabs import chat_tab
from ui.zh_chat import ZH

PROMPT = "Write a Python function that adds two numbers."


def make_run(folder: Path, base_path: str | Path, b_std: float) -> Path:
    """A run folder: config.json naming ``base_path`` and adapter/ with LoRA B ~ N(0, b_std) (not the zero init)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder.mkdir(parents=True)
    cfg = TrainingConfig(model_name_or_path=str(base_path), output_dir=str(folder.parent))
    (folder / "config.json").write_text(json.dumps(cfg.to_dict()), encoding="utf-8")
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"])
    torch.manual_seed(0)  # LoRA A's init and B below: the same adapter on every run
    model = get_peft_model(base, lora)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, b_std)
    model.save_pretrained(folder / "adapter")
    return folder


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory, embedded_path) -> Path:
    return make_run(tmp_path_factory.mktemp("chat-runs") / "run-embedded", embedded_path, b_std=0.2)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_llama) -> Path:
    return make_run(tmp_path_factory.mktemp("chat-runs") / "run-tiny", tiny_llama, b_std=1.0)


def streamed(run_dir: Path, choice: str = "adapter", **settings) -> list[tuple[str, str]]:
    """Every (base, fine-tuned) partial of one greedy answer pair."""
    args = {"temperature": 0.0, "top_p": 0.9, "max_new_tokens": 16, **settings}
    parts = chat.stream_side_by_side(run_dir, choice, PROMPT, **args)
    return [p for p in parts if not isinstance(p, chat.Waiting)]


def test_greedy_base_equals_plain_generate_and_the_adapter_changes_the_answer(embedded_run, embedded_path):
    from transformers import AutoModelForCausalLM

    from core.model import load_tokenizer
    from core.tokenization import ensure_chat_template

    parts = streamed(embedded_run)
    base_text, tuned_text = parts[-1]
    assert parts[0] == ("", "")
    base_partials = {b for b, t in parts if b and not t}
    tuned_partials = {t for _, t in parts if t}
    assert len(base_partials) > 1 and len(tuned_partials) > 1  # both sides stream, base first
    assert all(base_text.startswith(b) for b in base_partials)

    tok = load_tokenizer(embedded_path)
    ensure_chat_template(tok)
    enc = tok.apply_chat_template(
        [{"role": "user", "content": PROMPT}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    plain = AutoModelForCausalLM.from_pretrained(embedded_path, dtype=torch.float32)
    out = plain.generate(**enc, max_new_tokens=16, do_sample=False, pad_token_id=tok.pad_token_id)
    expected = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert base_text == expected and base_text.strip()
    assert tuned_text.strip() and tuned_text != base_text
    assert chat.free_models() and not chat._cache


def test_merged_export_answers_like_the_adapter_and_settings_are_checked(tiny_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.model import load_tokenizer

    by_adapter = streamed(tiny_run)[-1]
    assert by_adapter[0] != by_adapter[1]
    # Cached: the same objects answer again; the adapter is back on after the base answer ran without it.
    models = next(iter(chat._cache.values()))
    assert streamed(tiny_run)[-1] == by_adapter
    assert next(iter(chat._cache.values())) is models
    cfg = json.loads((tiny_run / "config.json").read_text())
    merged = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(cfg["model_name_or_path"], dtype=torch.float32),
        tiny_run / "adapter",
    ).merge_and_unload()
    merged.save_pretrained(tiny_run / "merged")
    load_tokenizer(cfg["model_name_or_path"]).save_pretrained(tiny_run / "merged")
    assert AutoTokenizer.from_pretrained(tiny_run / "merged").chat_template
    assert chat.finetuned_choices(tiny_run) == ["adapter", "merged"]
    assert str(tiny_run) in chat.chat_runs(tiny_run.parent)
    # after an export into the selected run, one call updates both dropdowns (the run's value is unchanged)
    run_update, tuned_update = chat_tab.refresh_all(str(tiny_run.parent), str(tiny_run), "adapter")
    assert run_update["value"] == str(tiny_run) and (tiny_run.name, str(tiny_run)) in run_update["choices"]
    assert tuned_update["choices"] == ["adapter", "merged"] and tuned_update["value"] == "adapter"
    assert chat_tab.refresh_all(str(tiny_run.parent), None, "merged-9")[1]["value"] == "adapter"

    assert streamed(tiny_run, "merged")[-1] == by_adapter  # float32 merge: same greedy tokens
    assert "merged" in chat.loaded_summary()
    sampled = streamed(tiny_run, "merged", temperature=0.7, top_p=0.9, max_new_tokens=8)
    assert sampled[-1][0] and sampled[-1][1]

    with pytest.raises(chat.ChatError, match="no fine-tuned model 'merged-2'"):
        streamed(tiny_run, "merged-2")
    with pytest.raises(chat.ChatError, match="Temperature must be between 0 and 5.*top-p"):
        streamed(tiny_run, temperature=-1, top_p=0)
    with pytest.raises(chat.ChatError, match="Pick a run folder"):
        streamed(None)  # type: ignore[arg-type]
    with pytest.raises(gr.Error, match="Pick a run folder"):
        next(chat_tab_respond(None))
    with use_lang("zh"), pytest.raises(gr.Error, match="请先选择一个运行文件夹"):
        next(chat_tab_respond(None))
    with use_lang("zh"), pytest.raises(gr.Error, match="这里没有微调后的模型 'merged-2'"):
        list(chat_tab.respond(str(tiny_run), "merged-2", PROMPT, 0.0, 0.9, 8))
    assert not chat.is_busy()


def chat_tab_respond(run_dir, owner=None, max_new_tokens=8):
    return chat_tab.respond(run_dir, "adapter", PROMPT, 0.0, 0.9, max_new_tokens, owner=owner)


def test_stop_ends_a_long_answer_keeps_its_text_and_frees_the_model(tiny_run):
    assert chat_tab.stop_answer("page-1") == "No answer is being generated."
    parts = chat_tab_respond(str(tiny_run), owner="page-1", max_new_tokens=2000)
    seen = []
    for base, tuned, status in parts:
        seen.append((base, tuned, status))
        if len([s for s in seen if s[0]]) == 3:
            assert chat_tab.stop_answer("page-2") == "No answer is being generated."  # another page's Stop
            assert chat_tab.stop_answer("page-1") == "Stopping..."
    base, tuned, status = seen[-1]
    assert status.startswith("**Stopped: what was generated before Stop is kept.**")
    assert base and not tuned  # the fine-tuned side never started
    assert len(seen) < 200  # 2000 tokens would stream far more pieces
    assert base == max((s[0] for s in seen), key=len)  # the last text streamed is kept
    # the generation thread really ended and nothing holds the GPU: the next prompt answers at once
    assert not [t for t in threading.enumerate() if t.name == "lora-studio-chat"]
    assert not chat.is_busy() and not chat.SLOT.busy() and not chat_tab._stops
    *_, (base2, tuned2, status2) = chat_tab_respond(str(tiny_run), owner="page-1")
    assert base2 and tuned2 and status2.startswith("Done.")
    with use_lang("zh"):
        assert chat_tab.stop_answer("page-1") == "当前没有正在生成的回答。"
        assert chat_tab._loaded() == f"`{tiny_run.name}` 使用 `adapter`（adapter），float32，运行于 cpu"


def test_chat_asked_while_training_runs_waits_its_turn_then_answers(tiny_llama, tiny_run, tmp_path):
    cfg = TrainingConfig(
        model_name_or_path=str(tiny_llama),
        dataset_name=str(ASSETS / "humaneval_alpaca.jsonl"),
        max_steps=2,
        max_length=128,
        monitor_rows=0,
        save_steps=0,
        output_dir=str(tmp_path / "runs"),
    )
    job = TrainingJob()
    # Chat mid-answer holds the GPU: a Start queues behind it (loading nothing), a second chat queues behind both.
    first = chat.stream_side_by_side(tiny_run, "adapter", PROMPT, 0.0, 0.9, 8, poll_s=0.1)
    assert next(first) == ("", "") and chat.is_busy()
    run_dir = job.start(cfg)
    assert job.snapshot().status == "queued" and job.snapshot().step == 0
    second = chat_tab.respond(str(tiny_run), "adapter", PROMPT, 0.0, 0.9, 8, owner="page-2")
    base, tuned, status = next(second)
    assert (
        status.startswith("**Waiting for another chat answer to finish")
        and "Place in line: 3 (2 ahead)" in status
    )
    stopped_early = chat.stream_side_by_side(tiny_run, "adapter", PROMPT, 0.0, 0.9, 8, stop=threading.Event())
    assert isinstance(next(stopped_early), chat.Waiting)
    first.close()  # the browser went away: generation stops, the GPU goes to the queued run
    stopped_early.close()

    statuses = []
    for base, _tuned, status in second:
        if base:
            # its turn came after the run: the worker saved its adapter and left the GPU
            assert (run_dir / "adapter" / "adapter_config.json").is_file()
            break
        statuses.append(status)
    waits = [s for s in statuses if s.startswith("**Waiting for the training run to finish")]
    assert waits, statuses
    with use_lang("zh"):
        assert chat_tab.waiting_status(chat.Waiting(1, 90.0, behind_chat=False)).startswith(
            "**正在等待训练结束"
        )
    *_, (base, tuned, status) = second
    assert base and tuned and status.startswith("Done.")
    snap = job.wait(300)
    assert snap.status == "completed", snap.message
    assert chat.chat_runs(tmp_path / "runs") == [str(run_dir)]
    *_, (base_text, tuned_text, status) = chat_tab_respond(str(run_dir))
    assert base_text and tuned_text and status.startswith("Done.")


def test_enter_sends_and_every_runtime_text_has_chinese():
    with gr.Blocks():
        c = chat_tab.render()
    # Gradio 6's Textbox submits on Enter only when lines == 1 (lines > 1: Enter is a new line, Shift+Enter
    # submits); max_lines > 1 keeps it a growing textarea where Shift+Enter is a new line.
    assert c["prompt"].lines == 1 and c["prompt"].max_lines > 1
    assert c["stop"].value == "Stop" and c["prompt"].info in ZH
    templates: set[str] = set()
    for path in ("ui/tabs/chat_tab.py", "core/chat.py", "core/chat_generate.py"):
        for node in ast.walk(ast.parse((ROOT / path).read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            first = node.args[0] if name in ("tr", "ChatError") else None
            if (
                name == "tr" and isinstance(first, ast.Attribute) and first.attr.isupper()
            ):  # tr(chat.LOADED_...)
                first = ast.Constant(getattr(chat, first.attr))
            if name == "progress" and len(node.args) > 1:
                first = node.args[1]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                templates.add(first.value)
    assert len(templates) > 25
    missing = sorted(t for t in templates if t not in ZH)
    assert not missing, missing
    for en, zh in ZH.items():
        assert sorted(re.findall(r"{\w*}", en)) == sorted(re.findall(r"{\w*}", zh)), en
