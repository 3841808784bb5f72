"""Training engine on the embedded model: packing equals unpacked, health guards fail bad runs, seeds reproduce,
resume continues at the right step. Real transformers / peft / Trainer throughout."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch

from core.config import TrainingConfig
from core.engine import make_collator, packed_tokens_bound, plan_engine, size_micro_batch
from core.events import COMPLETED, FAILED
from core.job import TrainingJob
from core.runs import read_metrics
from tests.conftest import ASSETS
from tests.test_vram import LLAMA2_7B

DATA = str(ASSETS / "humaneval_alpaca.jsonl")


def small(tmp_path: Path, **changes) -> TrainingConfig:
    """A run that takes seconds on two CPU cores: 3 steps of 2 rows of <= 128 tokens."""
    base = {
        "dataset_name": DATA,
        "max_steps": 3,
        "max_length": 128,
        "per_device_train_batch_size": 2,
        "completion_only_loss": False,
        "monitor_rows": 0,
        "save_steps": 0,
        "output_dir": str(tmp_path),
        "learning_rate": 5e-4,
    }
    return TrainingConfig.from_dict({**base, **changes})


def run(cfg: TrainingConfig):
    job = TrainingJob()
    run_dir = job.start(cfg)
    return job.wait(600), run_dir


def losses(run_dir: Path) -> list[float]:
    return [row["loss"] for row in read_metrics(run_dir) if "loss" in row]


# ---------------------------------------------------------------- packing


def test_packed_loss_equals_unpacked_loss(embedded_path):
    """The same rows, padded to the longest vs concatenated with per-row positions: one loss (fp32, SDPA)."""
    from transformers import AutoModelForCausalLM

    from core.data import load_dataset_report
    from core.model import load_tokenizer
    from core.tokenization import tokenize_report

    tok = load_tokenizer(embedded_path)
    report = load_dataset_report(DATA, "auto")
    rows = tokenize_report(report, tok, 192, completion_only_loss=True).features[:4]
    assert len({len(r["input_ids"]) for r in rows}) > 1  # different lengths: padding matters
    model = AutoModelForCausalLM.from_pretrained(
        embedded_path, dtype=torch.float32, attn_implementation="sdpa"
    )
    model.eval()
    model.config.use_cache = (
        False  # as in training (core.model.prepare_for_training): a KV cache hides packing
    )
    with torch.no_grad():
        padded = make_collator(tok, packing=False, has_cuda=False)(rows)
        packed = make_collator(tok, packing=True, has_cuda=False)(rows)
        assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
        assert (packed["labels"] != -100).sum() == sum(
            sum(1 for t in r["labels"][1:] if t != -100) for r in rows
        )
        loss_padded = model(**padded).loss.item()
        loss_packed = model(**packed).loss.item()
    assert loss_packed == pytest.approx(loss_padded, rel=1e-5)
    # rows really are isolated: without positions the model sees one long text and the loss changes
    with torch.no_grad():
        glued = model(input_ids=packed["input_ids"], labels=packed["labels"]).loss.item()
    assert abs(glued - loss_padded) > 1e-3


def test_plan_falls_back_on_the_cpu_and_names_why():
    plan = plan_engine(TrainingConfig(), None, has_cuda=False, gpu_gib=None)
    assert plan.attn_implementation == "sdpa" and plan.packing and not plan.use_liger_kernel
    assert any("no CUDA GPU" in n for n in plan.notes)
    with pytest.raises(ValueError, match="varlen: unavailable here"):
        plan_engine(TrainingConfig(attn_implementation="varlen"), None, has_cuda=False, gpu_gib=None)


def test_fused_lora_is_planned_by_default_and_can_be_turned_off(monkeypatch):
    on = plan_engine(TrainingConfig(), None, has_cuda=False, gpu_gib=None)
    monkeypatch.setenv("LORA_STUDIO_FUSED_LORA", "0")
    off = plan_engine(TrainingConfig(), None, has_cuda=False, gpu_gib=None)
    assert on.fused_lora and any("LoRA branch: fused" in n for n in on.notes)
    assert not off.fused_lora and not any("LoRA branch" in n for n in off.notes)


def test_micro_batch_grows_with_short_rows_and_never_needs_more_memory(tmp_path):
    from core.model import inspect_model
    from core.vram import estimate_vram

    (tmp_path / "config.json").write_text(json.dumps(LLAMA2_7B))
    spec = inspect_model(str(tmp_path))
    cfg = TrainingConfig(
        load_in_4bit=True,
        max_length=2048,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=4,
        gradient_checkpointing=True,
    )
    short = [200, 350, 500, 300, 420, 260] * 20
    k, acc, est = size_micro_batch(spec, cfg, 80, short, fused_loss=True)
    assert k * acc == 16 and k == 16  # ~6k packed tokens need less than 4 padded rows of 2048
    assert est <= estimate_vram(spec, cfg, "qlora").total_gib
    k, acc, _ = size_micro_batch(spec, cfg, 80, [2048] * 100, fused_loss=False)
    assert (k, acc) == (4, 4)  # full-length rows: no room to grow
    assert packed_tokens_bound([2048] * 10, 16) == 16 * 2048


# ---------------------------------------------------------------- health guards


def test_all_answers_truncated_away_is_refused_before_training(tmp_path):
    snap, run_dir = run(small(tmp_path, max_length=16, completion_only_loss=True))
    assert snap.status == FAILED and "max_length" in snap.message, snap.message
    assert not (run_dir / "adapter").exists() and snap.step == 0


def test_a_misspelled_target_module_lists_the_valid_names(tmp_path):
    snap, run_dir = run(small(tmp_path, lora_target_modules=["q_proj", "v_prj"]))
    assert snap.status == FAILED and "v_prj" in snap.message and "'v_proj'" in snap.message, snap.message
    assert not (run_dir / "adapter").exists()


def test_a_diverging_learning_rate_fails_the_run_and_saves_nothing(tmp_path):
    snap, run_dir = run(small(tmp_path, learning_rate=1.0, max_steps=5))
    assert snap.status == FAILED and "diverged" in snap.message and "learning_rate" in snap.message, (
        snap.message
    )
    assert not (run_dir / "adapter").exists()
    assert json.loads((run_dir / "result.json").read_text())["adapter"] is None


def test_a_zero_loss_stream_stops_the_run():
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from core.callbacks import StudioCallback
    from core.health import ZERO_LOSS_LOGS

    cb = StudioCallback(lambda e: None, threading.Event())
    state, control = TrainerState(), TrainerControl()
    args = TrainingArguments(output_dir="/tmp/unused", use_cpu=True, report_to=[])
    for step in range(1, ZERO_LOSS_LOGS + 1):
        state.global_step = step
        assert cb.stuck_at is None and not control.should_training_stop
        cb.on_log(args, state, control, logs={"loss": 0.0, "grad_norm": 0.0})
    assert cb.stuck_at == ZERO_LOSS_LOGS and control.should_training_stop
    fresh = StudioCallback(lambda e: None, threading.Event())
    for loss in (0.0, 0.0, 1e-9, 0.0, 0.0):  # not in a row: a real (tiny) loss resets the count
        fresh.on_log(args, state, TrainerControl(), logs={"loss": loss})
    assert fresh.stuck_at is None


def test_unmoved_or_nonfinite_adapters_are_caught(tiny_llama):
    from transformers import AutoModelForCausalLM

    from core.errors import TrainingFailed
    from core.health import check_adapter, require_healthy_adapter, trainable_by_module
    from core.model import prepare_for_training

    base = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    model = prepare_for_training(base, TrainingConfig(), ("q_proj", "v_proj"), quantized=False)
    assert set(trainable_by_module(model)) == {"q_proj", "v_proj"}
    assert any("never moved from zero" in p for p in check_adapter(model))  # B starts at zero
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.01)
    assert check_adapter(model) == []
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "lora_A" in n)[0, 0] = float("nan")
    with pytest.raises(TrainingFailed, match="NaN/inf"):
        require_healthy_adapter(model, 2e-4)


# ---------------------------------------------------------------- reproducibility and resume


def test_same_seed_same_curve_other_seed_other_curve(tmp_path):
    a, dir_a = run(small(tmp_path / "a", seed=7))
    b, dir_b = run(small(tmp_path / "b", seed=7))
    c, dir_c = run(small(tmp_path / "c", seed=8))
    assert a.status == b.status == c.status == COMPLETED
    assert losses(dir_a) == losses(dir_b) and len(losses(dir_a)) == 3
    assert losses(dir_a) != losses(dir_c)
    assert json.loads((dir_a / "config.json").read_text())["seed"] == 7
    assert json.loads((dir_a / "result.json").read_text())["seed"] == 7


def test_resume_continues_at_the_next_step_in_a_new_folder(tmp_path):
    common = {"lr_scheduler_type": "constant", "save_steps": 2, "seed": 3}
    straight, dir_s = run(small(tmp_path / "straight", max_steps=4, **common))
    first, dir_1 = run(small(tmp_path / "first", max_steps=2, **common))
    assert straight.status == first.status == COMPLETED
    assert (dir_1 / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()
    before = sorted(p.relative_to(dir_1) for p in dir_1.rglob("*"))
    resumed, dir_2 = run(small(tmp_path / "second", max_steps=4, resume_from_checkpoint=str(dir_1), **common))
    assert resumed.status == COMPLETED, resumed.message
    steps = [int(r["step"]) for r in read_metrics(dir_2) if "loss" in r]
    assert steps == [3, 4]  # continues after the checkpoint's step 2
    assert losses(dir_2) == pytest.approx(
        losses(dir_s)[2:], rel=1e-4
    )  # optimizer, scheduler and RNG restored
    assert (dir_2 / "checkpoints" / "checkpoint-4").is_dir()
    assert sorted(p.relative_to(dir_1) for p in dir_1.rglob("*")) == before  # the old run is untouched
    bad, _ = run(
        small(tmp_path / "third", max_steps=4, lora_r=4, resume_from_checkpoint=str(dir_1), **common)
    )
    assert bad.status == FAILED and "lora_r" in bad.message


def test_resume_with_more_steps_continues_on_the_new_schedule(tmp_path):
    """A linear schedule ends at lr 0; resuming with more steps must not spend its first step at lr 0."""
    linear = {"save_steps": 2, "seed": 3, "lr_scheduler_type": "linear"}
    short, dir_l = run(small(tmp_path / "linear", max_steps=2, **linear))
    more = small(
        tmp_path / "more", max_steps=4, resume_from_checkpoint=str(dir_l), learning_rate=1e-3, **linear
    )
    longer, dir_r = run(more)
    assert short.status == longer.status == COMPLETED, longer.message
    lrs = {int(r["step"]): r["learning_rate"] for r in read_metrics(dir_r) if "learning_rate" in r}
    # the resumed run's own learning_rate (1e-3, changed on purpose) on its own 4-step schedule
    assert lrs[3] == pytest.approx(1e-3 * 2 / 4) and lrs[4] == pytest.approx(1e-3 * 1 / 4)


def test_bad_resumes_are_refused_before_a_run_folder_exists(tmp_path):
    """A missing, broken, finished or failed checkpoint is a config error naming the problem."""
    from core.errors import ConfigError
    from core.resume import check_resume_compatible, resolve_checkpoint

    done, run_dir = run(small(tmp_path / "runs", max_steps=2, save_steps=1))
    assert done.status == COMPLETED
    checkpoints = run_dir / "checkpoints"
    assert resolve_checkpoint(str(run_dir)).name == "checkpoint-2"
    (checkpoints / "checkpoint-2" / "trainer_state.json").write_text("{ torn")
    assert resolve_checkpoint(str(run_dir)).name == "checkpoint-1"  # the broken newest one is skipped
    (checkpoints / "checkpoint-1" / "adapter_config.json").write_text("")
    with pytest.raises(
        ConfigError, match="no usable checkpoint.*checkpoint-2: trainer_state.json unreadable"
    ):
        resolve_checkpoint(str(run_dir))
    with pytest.raises(ConfigError, match="at step 2 and this run would end at step 2"):
        good = run_dir.parent / "copy"
        import shutil

        shutil.copytree(run_dir / "adapter", good / "adapter")
        shutil.copytree(run_dir / "checkpoints", good / "checkpoints")
        (good / "checkpoints" / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2}')
        ckpt = resolve_checkpoint(str(good))
        (ckpt / "adapter_config.json").write_text((run_dir / "adapter" / "adapter_config.json").read_text())
        check_resume_compatible(
            ckpt,
            small(tmp_path),
            ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
            "x",
            2,
        )
    job = TrainingJob()
    before = sorted((tmp_path / "runs").iterdir())
    for bad in (str(tmp_path / "nowhere"), str(run_dir / "config.json")):
        with pytest.raises(ConfigError, match="resume_from_checkpoint"):
            job.start(small(tmp_path / "runs", resume_from_checkpoint=bad))
    assert sorted((tmp_path / "runs").iterdir()) == before  # no failed run folder left behind
    failed = json.loads((run_dir / "result.json").read_text())
    (run_dir / "result.json").write_text(json.dumps({**failed, "status": "failed", "message": "diverged"}))
    (checkpoints / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2}')
    with pytest.raises(ConfigError, match="failed \\(diverged\\)"):
        resolve_checkpoint(str(run_dir))


def test_a_blow_up_at_the_last_log_fails_the_run():
    """RISE_LOGS logs in a row fail a run mid-way; a loss far above the first one at the very last log fails it
    too (a 2-step run went 1.11 -> 16.45 and was reported completed), a last log within bounds does not."""
    import threading

    from transformers import TrainerControl, TrainerState, TrainingArguments

    from core.callbacks import StudioCallback

    args = TrainingArguments(output_dir="unused", report_to=[], use_cpu=True)
    for losses, diverged in (([1.11, 16.45], True), ([1.11, 0.9], False)):
        cb = StudioCallback(lambda _e: None, threading.Event())
        state, control = TrainerState(), TrainerControl()
        for step, loss in enumerate(losses, 1):
            state.global_step = step
            cb.on_log(args, state, control, logs={"loss": loss})
        cb.on_train_end(args, state, control)
        assert (cb.diverged_at == len(losses)) if diverged else cb.diverged_at is None
