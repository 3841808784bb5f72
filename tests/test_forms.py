"""The UI edits TrainingConfig fields by name, and UI and CLI build the same config from the same values."""

import json

import pytest

from core.config import TrainingConfig


@pytest.fixture(scope="module")
def app():
    from ui.app import build_app

    return build_app()


def test_every_ui_field_is_a_config_field_and_all_fields_are_editable(app):
    names = app.form.names
    assert len(names) == len(set(names))
    assert set(names) <= set(TrainingConfig.field_names())
    assert set(names) == set(TrainingConfig.field_names())


def test_ui_and_cli_build_the_same_config(app, tmp_path):
    from launch import build_parser  # noqa: F401  (the CLI entry point imports cleanly)

    form = app.form
    values = {name: comp.value for name, comp in form.components.items()}
    values.update(
        {
            "dataset_name": "assets/humaneval_alpaca.jsonl",
            "lora_r": 16,
            "lora_alpha": 32,
            "load_in_4bit": True,
            "lora_target_modules": ["q_proj", "v_proj"],
            "max_steps": 10,
        }
    )
    ui_cfg = form.to_config(*[values[n] for n in form.names])
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    cli_cfg = TrainingConfig.from_json_file(path)
    assert ui_cfg == cli_cfg
    assert ui_cfg.lora_target_modules == ("q_proj", "v_proj") and ui_cfg.load_in_4bit is True


def test_form_rejects_unknown_fields():
    import gradio as gr

    from ui.forms import ConfigForm

    with pytest.raises(KeyError, match="lora_rank"):
        ConfigForm().add("lora_rank", gr.Number())
