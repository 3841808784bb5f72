"""Model cards of real exports, read the way the hub and a browser read them: the YAML front matter through
huggingface_hub's ModelCard (and yaml), the body through a real Markdown parser (markdown-it-py, as Gradio uses).

The user test found titles naming the staging folder (``# .merged.partial-xxxx``), ``&quot;`` in the table,
"format auto" instead of the detected format, and the server's upload path in the dataset line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from markdown_it import MarkdownIt

from core.events import COMPLETED
from tests.conftest import ASSETS
from tests.test_engine import run, small


@pytest.fixture(scope="module")
def upload_run(tiny_llama, tmp_path_factory) -> tuple[Path, Path]:
    """A finished 2-step run of the tiny Llama (a local base folder) on a file kept where uploads are kept (an
    absolute path under a hash folder), with dataset_format "auto": (run folder, the uploaded file)."""
    upload = tmp_path_factory.mktemp("uploads") / "3f9a1c" / "my_answers.jsonl"
    upload.parent.mkdir()
    shutil.copy(ASSETS / "humaneval_alpaca.jsonl", upload)
    snap, folder = run(
        small(
            tmp_path_factory.mktemp("runs"),
            model_name_or_path=str(tiny_llama),
            dataset_name=str(upload),
            max_steps=2,
            learning_rate=2e-3,
        )
    )
    assert snap.status == COMPLETED, snap.message
    return Path(folder), upload


def parse(readme: Path) -> tuple[dict, list, str]:
    """(front matter as yaml reads it, markdown-it's tokens of the body, the body text)."""
    from huggingface_hub import ModelCard

    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    data = yaml.safe_load(front)
    assert ModelCard.load(readme).data.to_dict() == data  # the hub's own reader agrees
    return data, MarkdownIt("commonmark").enable("table").parse(body), body


def inline_texts(tokens: list) -> list[str]:
    """Every piece of text a reader sees (text and code spans), entities already decoded by the parser."""
    return [
        child.content
        for token in tokens
        if token.type == "inline"
        for child in token.children or []
        if child.type in ("text", "code_inline")
    ]


def title(tokens: list) -> str:
    """The h1's text as a reader sees it (escapes resolved by the parser)."""
    i = next(i for i, t in enumerate(tokens) if t.type == "heading_open" and t.tag == "h1")
    return "".join(child.content for child in tokens[i + 1].children or [])


@pytest.mark.parametrize("kind", ["adapter", "merged"])
def test_the_card_names_the_export_shows_the_detected_format_and_no_local_path(upload_run, tiny_llama, kind):
    from core.export import export_adapter, export_merged

    run_dir, upload = upload_run
    result = export_adapter(run_dir) if kind == "adapter" else export_merged(run_dir, dtype="float32")
    readme = Path(result.path) / "README.md"
    data, tokens, body = parse(readme)

    heading = title(tokens)
    assert ".partial" not in heading and heading.startswith(f"{run_dir.name}/{Path(result.path).name}: ")
    assert heading.endswith(tiny_llama.name)  # the local base by its folder's name
    texts = inline_texts(tokens)
    assert not any("&quot;" in t or "&amp;" in t for t in texts), texts
    # the family default (config.json's []) as the run resolved it, quoted as JSON, not as HTML entities
    assert '["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]' in texts
    assert "8" in texts and "lora_r" in texts  # the hyperparameter table parsed as a table with code cells
    assert "(alpaca format, detected)" in body and "format auto" not in body
    assert "my_answers.jsonl" in texts
    for local in (str(upload), str(upload.parent), str(tiny_llama), str(run_dir)):
        assert local not in readme.read_text(encoding="utf-8"), local
    assert "base_model" not in data  # a local folder is no hub id
    assert data["library_name"] == ("peft" if kind == "adapter" else "transformers")
    assert "lora" in data["tags"] and "qlora" not in data["tags"]
    assert "datasets" not in data  # an uploaded file is no hub dataset
    assert (Path(result.path) / "loss_curve.svg").read_text().startswith("<svg")
    verification = (Path(result.path) / "verification.json").read_text(encoding="utf-8")
    for local in (str(upload.parent), str(tiny_llama), str(run_dir)):
        assert local not in verification, local
    if kind == "adapter":  # a local base: its folder's name only, and the card says to set it
        adapter_cfg = json.loads((Path(result.path) / "adapter_config.json").read_text(encoding="utf-8"))
        assert adapter_cfg["base_model_name_or_path"] == tiny_llama.name
        shown = " ".join(inline_texts(tokens))  # as a reader sees it (the card escapes Markdown)
        assert "set base_model_name_or_path to its path or hub id before sharing" in shown


def test_a_hub_base_and_hub_dataset_go_into_the_metadata(upload_run, tmp_path):
    """The same run folder's files, with a hub base, a hub dataset and a name that needs Markdown escaping."""
    from core.modelcard import write_model_card

    run_dir, _ = upload_run
    copy = tmp_path / "run_*weird*|name"
    shutil.copytree(run_dir, copy)
    cfg = json.loads((copy / "config.json").read_text())
    cfg.update(
        model_name_or_path="HuggingFaceTB/SmolLM2-135M-Instruct",
        dataset_name="tatsu-lab/alpaca",
        dataset_format="sharegpt",
        load_in_4bit=True,
    )
    (copy / "config.json").write_text(json.dumps(cfg))
    folder = tmp_path / "export"
    folder.mkdir()
    checks = [{"name": "tensors", "passed": True, "detail": "targets ['q_proj'] <ok> &quot; [x](y) done"}]
    readme = write_model_card(folder, copy, "adapter", {"checks": checks}, name=copy.name)
    data, tokens, body = parse(readme)
    assert data["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert data["license"] == "apache-2.0"  # from the offline catalogue
    assert data["datasets"] == ["tatsu-lab/alpaca"]
    assert data["tags"] == ["lora", "lora-studio", "qlora"]
    assert title(tokens) == "run_*weird*|name: LoRA adapter for HuggingFaceTB/SmolLM2-135M-Instruct"
    texts = inline_texts(tokens)
    assert (
        "tatsu-lab/alpaca" in texts
        and "(sharegpt format); licence: see https://huggingface.co/datasets/" in (" ".join(texts))
    )
    assert any("targets ['q_proj'] <ok> &quot; [x](y) done" in t for t in texts)  # as written, not as markup
    assert not [t for t in tokens for c in t.children or [] if c.type in ("link_open", "html_inline")]
    assert not list(folder.glob(".*partial"))  # written under temporary names, none left behind


def test_hub_ids_and_local_paths_are_told_apart(tmp_path, monkeypatch):
    from core.modelcard import is_hub_id, shown_name

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "mine").mkdir(parents=True)
    assert is_hub_id("Qwen/Qwen2.5-0.5B-Instruct") and shown_name("Qwen/Qwen2.5-0.5B-Instruct").startswith(
        "Qwen/"
    )
    assert not is_hub_id("models/mine")  # exists here: a local folder
    assert not is_hub_id("assets/humaneval_alpaca.jsonl")  # a data file, even where it does not exist
    assert not is_hub_id("/root/.cache/lora-studio/uploads/ab/data.csv")
    assert shown_name("/root/.cache/lora-studio/uploads/ab/data.csv") == "data.csv"
    assert shown_name(str(tmp_path / "models" / "mine") + "/") == "mine"
