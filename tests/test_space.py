"""Space-ready repository and shared-demo limits: front matter, requirements in step with pyproject, limits
enforced before a run folder exists, loopback by default, --auth, safetensors-only loading."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import tomllib

from core.config import TrainingConfig
from core.errors import ConfigError
from core.job import TrainingJob
from core.space import DemoLimits, demo_limits, limit_problems, limits_markdown
from tests.conftest import ASSETS, ROOT


def test_readme_front_matter_and_requirements_match_pyproject():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    front = readme.split("---\n")[1]
    assert "sdk: gradio" in front and "app_file: launch.py" in front and "short_description:" in front
    import gradio

    assert f"sdk_version: {gradio.__version__}" in front  # the Space runs the gradio we test with
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert sorted(lines) == sorted(deps)


def test_limits_apply_on_a_space_only(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("LORA_STUDIO_DEMO", raising=False)
    assert demo_limits() is None and limits_markdown(None) == ""
    monkeypatch.setenv("SPACE_ID", "someone/lora-studio")
    limits = demo_limits()
    assert limits == DemoLimits()
    assert f"up to {limits.max_steps} steps" in limits_markdown(limits)
    ok = TrainingConfig(max_steps=10, max_length=256)
    assert limit_problems(ok, limits) == []
    bad = TrainingConfig(model_name_or_path="Qwen/Qwen2.5-7B", max_steps=-1, max_length=4096)
    problems = limit_problems(bad, limits)
    assert any(p.startswith("model_name_or_path:") for p in problems)
    assert any(p.startswith("max_steps: -1") for p in problems)
    assert any("max_length: 4096" in p for p in problems)


def test_a_run_over_the_limits_is_refused_before_a_folder_exists(monkeypatch, tmp_path):
    monkeypatch.setenv("SPACE_ID", "someone/lora-studio")
    cfg = TrainingConfig(
        dataset_name=str(ASSETS / "humaneval_alpaca.jsonl"), max_steps=500, output_dir=str(tmp_path)
    )
    with pytest.raises(ConfigError, match="the demo allows 1 to 30 steps"):
        TrainingJob().start(cfg)
    assert list(tmp_path.iterdir()) == []


def test_loopback_by_default_and_auth_must_be_user_and_password():
    env = {k: v for k, v in os.environ.items() if k != "SPACE_ID"}
    code = "import launch; print(launch.UI_DEFAULT_HOST)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "127.0.0.1"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**env, "SPACE_ID": "a/b"}, capture_output=True, text=True
    )
    assert out.stdout.strip() == "0.0.0.0"  # a Space routes to the container's port
    bad = subprocess.run(
        [sys.executable, "launch.py", "--auth", "nopassword"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "USER:PASSWORD" in bad.stderr


def test_pickled_weights_are_refused(tiny_llama, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file

    from core.errors import ModelError
    from core.model import load_model_for_training

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_llama, folder)
    weights = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(weights, folder / "pytorch_model.bin")  # what an untrusted upload could contain
    with pytest.raises(ModelError, match="safetensors weights only"):
        load_model_for_training(TrainingConfig(), str(folder), "cpu", "float32", ("q_proj",))
