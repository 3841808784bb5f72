"""Safetensors only: chat and resume never unpickle weights. A folder whose weights exist only as a pickled .bin is
refused naming the file, before peft's fallback to ``torch.load``; a resume checkpoint whose Trainer state holds
objects a weights-only load refuses is refused naming the file, without unpickling it; and the normal paths (a
safetensors adapter in chat, a checkpoint the Trainer wrote) run with ``torch.load`` never called on weights.
"""

from __future__ import annotations

import fractions
import shutil
from pathlib import Path

import pytest
import torch

from core import chat
from core.errors import ConfigError
from core.events import COMPLETED
from core.resume import resolve_checkpoint, unsafe_state_files
from tests.test_chat import make_run
from tests.test_engine import run, small


@pytest.fixture
def torch_loads(monkeypatch) -> list[str]:
    """Every file ``torch.load`` opens during the test (a spy: the real torch.load still runs)."""
    opened: list[str] = []
    real = torch.load

    def spy(f, *args, **kwargs):
        opened.append(str(f))
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return opened


def test_chat_refuses_pickled_weights_and_reads_safetensors_without_torch_load(
    tiny_llama, tmp_path, torch_loads
):
    from safetensors.torch import load_file

    folder = make_run(tmp_path / "run", tiny_llama, b_std=0.02)
    adapter = folder / "adapter"
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    torch.save(
        weights, adapter / "adapter_model.bin"
    )  # what save_pretrained(safe_serialization=False) writes
    (adapter / "adapter_model.safetensors").rename(tmp_path / "kept.safetensors")
    chat.free_models()
    with pytest.raises(chat.ChatError) as caught:
        chat.load_chat_models(folder, chat.ADAPTER)
    message = str(caught.value)
    assert f"{adapter / 'adapter_model.bin'} is a pickled PyTorch file" in message
    assert "safe_serialization=True" in message and torch_loads == []  # refused before peft's torch.load

    merged = folder / "merged"
    merged.mkdir()
    shutil.copy(Path(tiny_llama) / "config.json", merged)
    torch.save({"lm_head.weight": torch.zeros(2)}, merged / "pytorch_model.bin")
    with pytest.raises(chat.ChatError, match=r"merged/pytorch_model\.bin is a pickled PyTorch file"):
        chat.load_chat_models(folder, "merged")
    assert torch_loads == []

    (tmp_path / "kept.safetensors").rename(
        adapter / "adapter_model.safetensors"
    )  # both files: safetensors wins
    models = chat.load_chat_models(folder, chat.ADAPTER)
    assert models.kind == chat.ADAPTER and torch_loads == []
    chat.free_models()


@pytest.fixture(scope="module")
def checkpointed_run(tiny_llama, tmp_path_factory) -> Path:
    """A 2-step tiny-Llama run with a checkpoint at step 1 (optimizer.pt, scheduler.pt, rng_state.pth)."""
    snap, folder = run(
        small(tmp_path_factory.mktemp("runs"), model_name_or_path=str(tiny_llama), max_steps=2, save_steps=1)
    )
    assert snap.status == COMPLETED, snap.message
    return Path(folder)


def test_resume_inspects_trainer_state_without_unpickling_it(checkpointed_run, tmp_path, torch_loads):
    checkpoint = resolve_checkpoint(str(checkpointed_run))
    assert (checkpoint / "rng_state.pth").is_file() and (checkpoint / "optimizer.pt").is_file()
    assert unsafe_state_files(checkpoint) == []  # the Trainer's own files, numpy RNG state included, pass

    hostile = tmp_path / "checkpoint-9"
    shutil.copytree(checkpoint, hostile)
    torch.save({"state": {}, "param_groups": [], "extra": fractions.Fraction(1, 3)}, hostile / "optimizer.pt")
    (hostile / "scheduler.pt").write_bytes(b"not a torch file")
    with pytest.raises(ConfigError) as caught:
        resolve_checkpoint(str(hostile))
    problems = caught.value.problems
    assert (
        f"{hostile / 'optimizer.pt'} holds objects a weights-only load refuses (fractions.Fraction)"
        in problems[0]
    )
    assert f"{hostile / 'scheduler.pt'} cannot be read" in problems[1]
    assert problems[-1].startswith("Delete those files to resume without that state")
    assert torch_loads == []  # inspected, never unpickled

    (hostile / "optimizer.pt").unlink()
    (hostile / "scheduler.pt").unlink()
    assert resolve_checkpoint(str(hostile)) == hostile  # resumes, without that state (missing_state notes it)
