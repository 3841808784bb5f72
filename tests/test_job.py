"""TrainingJob on a tiny local Llama folder: divergence is a failure, bad output folders are config errors."""

import pytest

from core.config import TrainingConfig
from core.errors import ConfigError
from core.job import TrainingJob
from tests.conftest import ASSETS


def test_nan_loss_stops_training_and_is_reported_as_divergence():
    """The callback, fed the Trainer's real state objects, stops at the first non-finite loss."""
    import threading

    from transformers import TrainerControl, TrainerState, TrainingArguments

    from core.callbacks import StudioCallback
    from core.events import Metrics

    events = []
    cb = StudioCallback(events.append, threading.Event())
    state, control = TrainerState(), TrainerControl()
    args = TrainingArguments(output_dir="/tmp/unused", use_cpu=True, report_to=[])
    state.global_step = 3
    cb.on_log(args, state, control, logs={"loss": 1.5, "grad_norm": 0.3})
    assert not control.should_training_stop and cb.diverged_at is None
    state.global_step = 4
    cb.on_log(
        args, state, control, logs={"loss": float("nan"), "grad_norm": float("inf"), "learning_rate": 1e-4}
    )
    assert control.should_training_stop and cb.diverged_at == 4
    assert [e.values for e in events if isinstance(e, Metrics)][-1].keys() == {"learning_rate", "elapsed_s"}


def test_exports_refuse_nan_adapters_and_never_replace_a_users_zip(tiny_llama, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from core.errors import ExportError
    from core.export import export_adapter, export_merged

    cfg = TrainingConfig(
        model_name_or_path=str(tiny_llama),
        dataset_name=str(ASSETS / "humaneval_alpaca.jsonl"),
        max_steps=2,
        max_length=256,
        learning_rate=3e-3,
        output_dir=str(tmp_path),
        monitor_rows=0,
    )
    job = TrainingJob()
    run_dir = job.start(cfg)
    assert job.wait(timeout_s=300).status == "completed"
    precious = run_dir / "adapter-export.zip"
    precious.write_text("the user's own file")
    result = export_adapter(run_dir)
    assert precious.read_text() == "the user's own file"
    assert result.zip_path.endswith("adapter-export-2.zip")
    with pytest.raises(ExportError, match="inside the run's adapter folder"):
        export_adapter(run_dir, run_dir / "adapter" / "sub")
    weights_path = run_dir / "adapter" / "adapter_model.safetensors"
    weights = load_file(str(weights_path))
    save_file({k: torch.full_like(v, float("nan")) for k, v in weights.items()}, str(weights_path))
    with pytest.raises(ExportError, match="NaN/inf found: a diverged run"):
        export_merged(run_dir, dtype="float32")
    assert not (run_dir / "merged").exists()


def test_float16_on_cpu_and_unwritable_output_dir_are_config_errors(tiny_llama, tmp_path):
    job = TrainingJob()
    base = TrainingConfig(
        model_name_or_path=str(tiny_llama),
        dataset_name=str(ASSETS / "humaneval_alpaca.jsonl"),
        max_steps=1,
        max_length=256,
        output_dir=str(tmp_path),
    )
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="output_dir: cannot create a run folder"):
        job.start(base.replace(output_dir=str(blocker)))
    job.start(base.replace(dtype="float16"))
    snap = job.wait(timeout_s=300)
    assert snap.status == "failed" and "float16 training needs a CUDA GPU" in snap.message


def test_monitor_rows_give_a_smooth_loss_that_falls(tiny_llama, tmp_path):
    cfg = TrainingConfig(
        model_name_or_path=str(tiny_llama),
        dataset_name=str(ASSETS / "humaneval_alpaca.jsonl"),
        max_steps=10,
        max_length=256,
        per_device_train_batch_size=2,
        learning_rate=3e-3,
        output_dir=str(tmp_path),
        monitor_rows=4,
    )
    job = TrainingJob()
    job.start(cfg)
    snap = job.wait(timeout_s=300)
    assert snap.status == "completed", snap.message
    fixed = [(h["step"], h["eval_train_sample_loss"]) for h in snap.history if "eval_train_sample_loss" in h]
    assert fixed[0][0] == 0 and len(fixed) >= 5  # measured before the first step, then ~5 times
    assert fixed[-1][1] < fixed[0][1]
    assert any("loss on fixed rows" in line for line in snap.logs)
