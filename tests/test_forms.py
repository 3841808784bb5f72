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


def test_updates_for_shows_a_config_in_real_components_or_refuses_naming_the_field():
    import gradio as gr

    from core.errors import ConfigError
    from ui.forms import ConfigForm, config_slider

    with gr.Blocks():
        form = ConfigForm()
        form.add("dtype", gr.Dropdown(["auto", "bfloat16"], value="auto"))
        form.add("lora_r", config_slider(1, 256, value=8, step=1))
        form.add("gradient_checkpointing", gr.Radio([("auto", "auto"), ("on", "true"), ("off", "false")]))
        form.add("dataset_column_mapping", gr.Textbox())
    cfg = TrainingConfig(
        lora_r=300,
        gradient_checkpointing=False,
        dataset_column_mapping=(("instruction", "q"), ("output", "a")),
    )
    dtype, r, checkpointing, mapping = form.updates_for(cfg)
    assert dtype["value"] == "auto" and checkpointing["value"] == "false"
    assert r["value"] == 300 and r["maximum"] == 300  # widened to the config's value, never clamped
    assert mapping["value"] == "instruction=q, output=a"
    assert form.to_config(dtype["value"], r["value"], checkpointing["value"], mapping["value"]) == cfg
    with pytest.raises(ConfigError, match="dtype: 'float32' is not one of this form's choices"):
        form.updates_for(cfg.replace(dtype="float32"))
