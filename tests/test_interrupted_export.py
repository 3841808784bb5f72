"""A run killed after saving checkpoints still gives its work back: the CLI exports (adapter and merged) the
adapter of its last complete checkpoint, says so and points to Resume; the Export tab lists it as interrupted; a
run killed before its first checkpoint is told so, with nothing written."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from core.events import COMPLETED
from tests.test_cli import run_cli
from tests.test_engine import run, small


def _as_killed(run_dir: Path) -> None:
    """Leave what a SIGKILL before the end leaves: no adapter/, no result.json, logs last written 10 minutes ago."""
    shutil.rmtree(run_dir / "adapter")
    (run_dir / "result.json").unlink()
    old = time.time() - 600
    for name in ("train.log", "metrics.jsonl"):
        if (run_dir / name).exists():
            os.utime(run_dir / name, (old, old))


@pytest.fixture(scope="module")
def killed_run(tiny_llama, tmp_path_factory) -> Path:
    """A 4-step run of the tiny Llama with a checkpoint every 2 steps, then "killed", plus a checkpoint-6 the kill
    cut short (config written, safetensors truncated) that must be skipped."""
    snap, folder = run(
        small(
            tmp_path_factory.mktemp("runs"),
            model_name_or_path=str(tiny_llama),
            max_steps=4,
            save_steps=2,
            learning_rate=2e-3,
        )
    )
    assert snap.status == COMPLETED, snap.message
    folder = Path(folder)
    assert (folder / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors").is_file()
    cut = folder / "checkpoints" / "checkpoint-6"
    cut.mkdir()
    shutil.copy(folder / "checkpoints" / "checkpoint-4" / "adapter_config.json", cut)
    (cut / "adapter_model.safetensors").write_bytes(b"\x10\x00")
    _as_killed(folder)
    return folder


def test_adapter_export_takes_the_last_complete_checkpoint(killed_run, tiny_llama, tmp_path):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    out = tmp_path / "adapter"
    done = run_cli("export", str(killed_run), "--adapter", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "interrupted at step 4" in done.stdout
    assert "(checkpoint-4)" in done.stdout and "Resume from this run folder" in done.stdout
    assert not (out / "optimizer.pt").exists() and not (out / "trainer_state.json").exists()
    source = json.loads((out / "verification.json").read_text(encoding="utf-8"))["source"]
    assert "checkpoint-4" in source

    expected = load_file(str(killed_run / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors"))
    got = load_file(str(out / "adapter_model.safetensors"))
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_llama)), str(out))
    loaded = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    assert len(loaded) == len(expected)
    for name, tensor in expected.items():
        match = [
            v for k, v in loaded.items() if k.replace(".default", "").endswith(name.split("base_model.")[-1])
        ]
        assert len(match) == 1 and torch.equal(match[0], tensor), name


def test_merged_export_takes_the_last_complete_checkpoint(killed_run, tmp_path):
    out = tmp_path / "merged"
    done = run_cli("export", str(killed_run), "--merged", "--dtype", "float32", "--out", str(out), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "checkpoint-4" in result["note"] and "Resume" in result["note"]
    assert any(p.name.endswith(".safetensors") for p in out.iterdir())
    verification = json.loads((out / "verification.json").read_text(encoding="utf-8"))
    assert "checkpoint-4" in verification["source"]


def test_export_tab_lists_the_interrupted_run(killed_run):
    from ui.i18n import use_lang
    from ui.tabs.export_tab import list_runs

    choices = list_runs(str(killed_run.parent))
    assert (f"{killed_run.name} · interrupted · 4 steps · exports checkpoint-4", str(killed_run)) in choices
    with use_lang("zh"):
        choices = list_runs(str(killed_run.parent))
    assert (f"{killed_run.name} · 已中断 · 4 步 · 导出检查点 checkpoint-4", str(killed_run)) in choices


def test_a_run_killed_before_its_first_checkpoint_is_told_so(killed_run, tmp_path):
    bare = tmp_path / killed_run.name
    bare.mkdir()
    for name in ("config.json", "train.log", "metrics.jsonl"):
        if (killed_run / name).exists():
            shutil.copy2(killed_run / name, bare / name)
    before = sorted(p.name for p in bare.iterdir())
    done = run_cli("export", str(bare), "--adapter")
    assert done.returncode == 1
    text = done.stdout + done.stderr
    assert "interrupted before its first checkpoint" in text and "wait for training" not in text
    assert sorted(p.name for p in bare.iterdir()) == before

    from ui.tabs.export_tab import list_runs

    assert list_runs(str(tmp_path)) == []
