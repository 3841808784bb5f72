"""A model's own Python code never runs and nothing prompts (issue 15): a folder whose config.json or
tokenizer_config.json maps classes to its own ``*.py`` files is refused with the files named by estimate, validate,
train and the Model tab; a folder whose auto_map only shadows classes transformers has loads with those."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PROMPT = "Do you wish to run"


def plant_code(folder: Path, marker: Path, modules: tuple[str, ...]) -> None:
    """Write ``modules`` into ``folder``: importing any of them creates ``marker``."""
    for module in modules:
        (folder / f"{module}.py").write_text(
            f"open({str(marker)!r}, 'w').write('imported {module}')\n", encoding="utf-8"
        )


@pytest.fixture()
def evil_model(tmp_path: Path) -> tuple[Path, Path]:
    """A Llama-shaped config.json whose model type transformers does not know, with auto_map naming
    configuration_evil.py and modeling_evil.py (and the files, which create a marker when imported)."""
    folder = tmp_path / "evil-model"
    folder.mkdir()
    marker = tmp_path / "MARKER"
    config = {
        "architectures": ["EvilModel"],
        "model_type": "evil_llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 128,
        "max_position_embeddings": 512,
        "auto_map": {
            "AutoConfig": "configuration_evil.EvilConfig",
            "AutoModelForCausalLM": "modeling_evil.EvilModel",
        },
    }
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    plant_code(folder, marker, ("configuration_evil", "modeling_evil"))
    return folder, marker


@pytest.fixture()
def evil_tokenizer(tmp_path: Path, tiny_llama: Path) -> tuple[Path, Path]:
    """A real Llama folder whose tokenizer_config.json maps AutoTokenizer to tokenization_evil.py."""
    folder = tmp_path / "evil-tokenizer"
    shutil.copytree(tiny_llama, folder)
    marker = tmp_path / "MARKER"
    tok_config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    tok_config["tokenizer_class"] = "EvilTokenizer"
    tok_config["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config), encoding="utf-8")
    plant_code(folder, marker, ("tokenization_evil",))
    return folder, marker


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``launch.py *args`` with "y" on stdin, so a trust_remote_code prompt would be answered yes."""
    return subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), *args],
        cwd=cwd,
        input="y\ny\ny\n",
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def assert_refused(out: subprocess.CompletedProcess[str], marker: Path, files: tuple[str, ...]) -> None:
    text = out.stdout + out.stderr
    assert out.returncode in (1, 2), text
    assert PROMPT not in text and not marker.exists(), text
    assert "needs its own Python code to load" in text and "never runs a model's own code" in text, text
    for name in files:
        assert name in text, text
    assert "trust_remote_code=True" not in text and "hf.co" not in text, text


def write_config(tmp_path: Path, model: Path) -> Path:
    data = tmp_path / "d.csv"
    data.write_text("instruction,output\nSay hi,hello\nAdd 2 and 3,5\n", encoding="utf-8")
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps(
            {
                "model_name_or_path": str(model),
                "dataset_name": str(data),
                "max_length": 64,
                "max_steps": 1,
                "output_dir": str(tmp_path / "runs"),
            }
        ),
        encoding="utf-8",
    )
    return config


def test_estimate_validate_and_train_refuse_a_model_that_needs_its_own_code(tmp_path, evil_model):
    folder, marker = evil_model
    files = ("configuration_evil.py", "modeling_evil.py")
    assert_refused(
        run_cli("estimate", "--model", str(folder), "--gpu-gib", "16", cwd=tmp_path), marker, files
    )
    config = write_config(tmp_path, folder)
    assert_refused(run_cli("validate", str(config), cwd=tmp_path), marker, files)
    assert_refused(run_cli("train", str(config), cwd=tmp_path), marker, files)


def test_validate_and_estimate_refuse_a_tokenizer_that_needs_its_own_code(tmp_path, evil_tokenizer):
    folder, marker = evil_tokenizer
    config = write_config(tmp_path, folder)
    out = run_cli("validate", str(config), cwd=tmp_path)
    assert_refused(out, marker, ("tokenizer_config.json", "tokenization_evil.py"))
    out = run_cli("estimate", "--model", str(folder), "--gpu-gib", "16", cwd=tmp_path)
    assert_refused(out, marker, ("tokenization_evil.py",))


def test_the_model_tab_refuses_with_the_files_named(evil_model):
    from ui.tabs.model_tab import load_model_info

    folder, marker = evil_model
    spec, text, *_ = load_model_info(str(folder), progress=lambda *a, **k: None)
    assert spec is None and not marker.exists()
    assert "configuration_evil.py, modeling_evil.py" in text and "never runs a model's own code" in text
    assert "trust_remote_code=True" not in text


def test_auto_map_shadowing_native_classes_is_ignored_and_never_imported(tmp_path, tiny_llama):
    """A llama folder that also ships modeling code (as Phi-3 repositories do for a native type) loads with
    transformers' own classes; the folder's files are never imported."""
    from core.errors import ModelError
    from core.model import inspect_model, load_tokenizer, refuse_custom_code

    folder = tmp_path / "llama-with-code"
    shutil.copytree(tiny_llama, folder)
    marker = tmp_path / "MARKER"
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["auto_map"] = {
        "AutoConfig": "configuration_evil.EvilConfig",
        "AutoModelForCausalLM": "modeling_evil.EvilModel",
    }
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    plant_code(folder, marker, ("configuration_evil", "modeling_evil"))
    out = run_cli("estimate", "--model", str(folder), "--gpu-gib", "16", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert PROMPT not in out.stdout + out.stderr and not marker.exists()
    assert inspect_model(str(folder)).model_type == "llama"
    assert load_tokenizer(str(folder)).pad_token is not None and not marker.exists()
    # a reference into another repository is named with that repository
    config["model_type"] = "evil_llama"
    config["auto_map"]["AutoModelForCausalLM"] = "someone/evil-code--modeling_evil.EvilModel"
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ModelError, match=r"modeling_evil\.py from someone/evil-code"):
        refuse_custom_code(str(folder))
    assert not marker.exists()
