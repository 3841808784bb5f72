"""Chat tab engine: base vs fine-tuned answers streamed from real models, and chat and training never share the GPU.

Run folders are built the way training leaves them (config.json + adapter/ written by peft's save_pretrained), with
LoRA B deliberately non-zero so the adapter visibly changes the answers; one test trains a real run on tiny_llama.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import gradio as gr
import pytest
import torch

from core import chat
from core.config import TrainingConfig
from core.errors import JobBusyError
from core.job import TrainingJob
from tests.conftest import ASSETS

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
    return list(chat.stream_side_by_side(run_dir, choice, PROMPT, **args))


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
    assert not chat.is_busy()


def chat_tab_respond(run_dir, job=None):
    from ui.tabs import chat_tab

    return chat_tab.respond(run_dir, "adapter", PROMPT, 0.0, 0.9, 8, job)


def test_chat_and_training_never_share_the_gpu(tiny_llama, tiny_run, tmp_path):
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
    # Chat mid-answer holds the lock: a Start waits (holding the slot, loading nothing), a second chat refuses.
    answer = chat.stream_side_by_side(tiny_run, "adapter", PROMPT, 0.0, 0.9, 8, job=job)
    assert next(answer) == ("", "") and chat.is_busy()
    run_dir = job.start(cfg)
    deadline = time.monotonic() + 10
    while job.snapshot().message != chat.START_BLOCKED_MESSAGE and time.monotonic() < deadline:
        time.sleep(0.05)
    snap = job.snapshot()
    assert snap.message == chat.START_BLOCKED_MESSAGE and snap.step == 0 and chat._cache
    with pytest.raises(JobBusyError, match="being generated"):
        streamed(tiny_run)
    answer.close()  # the browser went away: generation stops, the lock is released; training goes on

    # Training runs (chat's models freed); chat says so until it ends, then chats with the new run.
    deadline = time.monotonic() + 30
    while (chat._cache or chat.is_busy()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.snapshot().is_active and not chat._cache
    with pytest.raises(JobBusyError, match="Training is running on this machine"):
        next(chat.stream_side_by_side(run_dir, "adapter", PROMPT, 0.0, 0.9, 8, job=job))
    ui_parts = list(chat_tab_respond(str(tiny_run), job))
    assert ui_parts == [("", "", f"**{chat.TRAINING_BUSY_MESSAGE}**")]
    assert not chat.is_busy()
    snap = job.wait(300)
    assert snap.status == "completed", snap.message
    assert chat.chat_runs(tmp_path / "runs") == [str(run_dir)]
    *_, (base_text, tuned_text, status) = chat_tab_respond(str(run_dir), job)
    assert base_text and tuned_text and status.startswith("Done.")
