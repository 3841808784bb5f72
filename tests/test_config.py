"""TrainingConfig validation: every problem listed at once; coercion from JSON / UI values."""

import json

import pytest

from core.config import DEFAULT_MODEL, TrainingConfig
from core.errors import ConfigError


def test_defaults_are_valid_and_follow_the_seed_recipe():
    cfg = TrainingConfig()
    assert cfg.validate() == []
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.learning_rate) == (8, 16, 0.05, 2e-4)
    assert cfg.lora_scaling == 2.0
    assert cfg.model_name_or_path == DEFAULT_MODEL


def test_every_problem_is_listed_once():
    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_dict(
            {"lora_r": 0, "learning_rate": -1, "max_length": 3, "bogus": 1, "lora_rank": 8}
        )
    problems = info.value.problems
    # unknown keys are reported before values are checked, both of them
    assert any(p.startswith("bogus: unknown key") for p in problems)
    assert any(p.startswith("lora_rank: unknown key") for p in problems)
    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_dict(
            {
                "lora_r": 0,
                "learning_rate": -1,
                "max_length": 3,
                "lora_dropout": 1.5,
                "bnb_4bit_quant_type": "int3",
            }
        )
    fields = sorted(p.split(":")[0] for p in info.value.problems)
    assert fields == ["bnb_4bit_quant_type", "learning_rate", "lora_dropout", "lora_r", "max_length"]
    assert "lora_r: 0" in str(info.value)


def test_type_errors_name_the_field_and_value():
    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_dict(
            {"lora_r": "eight", "load_in_4bit": "maybe", "per_device_train_batch_size": 2.5}
        )
    text = str(info.value)
    assert "lora_r: 'eight' is not a whole number" in text
    assert "load_in_4bit: 'maybe' is not true/false" in text
    assert "per_device_train_batch_size: 2.5 is not a whole number" in text


def test_coercion_from_strings_and_lists():
    cfg = TrainingConfig.from_dict(
        {
            "lora_r": "16",
            "learning_rate": "1e-4",
            "load_in_4bit": "true",
            "lora_target_modules": "q_proj, v_proj",
            "max_steps": 10.0,
        }
    )
    assert cfg.lora_r == 16 and cfg.learning_rate == 1e-4 and cfg.load_in_4bit is True
    assert cfg.lora_target_modules == ("q_proj", "v_proj") and cfg.max_steps == 10
    assert TrainingConfig.from_dict({"lora_target_modules": ["k_proj"]}).lora_target_modules == ("k_proj",)


def test_round_trip_through_json(tmp_path):
    cfg = TrainingConfig(lora_r=4, lora_target_modules=("q_proj",), dataset_name="x.jsonl")
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert TrainingConfig.from_json_file(path) == cfg


def test_bad_json_file_is_a_config_error(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"lora_r": 8,,}')
    with pytest.raises(ConfigError, match="not valid JSON"):
        TrainingConfig.from_json_file(path)
    with pytest.raises(ConfigError, match="must be a JSON object"):
        TrainingConfig.from_dict([1, 2])  # type: ignore[arg-type]


def test_every_field_has_help_text():
    for name in TrainingConfig.field_names():
        assert len(TrainingConfig.help_for(name)) > 10, name


def test_unknown_keys_and_bad_values_are_reported_together(tmp_path):
    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_dict({"foo": 1, "lora_r": "abc", "lora_alpha": 0})
    fields = sorted(p.split(":")[0] for p in info.value.problems)
    assert fields == ["foo", "lora_alpha", "lora_r"]
    path = tmp_path / "bom.json"
    path.write_bytes("\ufeff".encode() + json.dumps({"lora_r": 4}).encode())
    assert TrainingConfig.from_json_file(path).lora_r == 4  # a UTF-8 BOM is fine
    path.write_text(json.dumps({"lora_r": 4}), encoding="utf-16")
    with pytest.raises(ConfigError, match="not UTF-8"):
        TrainingConfig.from_json_file(path)
    with pytest.raises(ConfigError, match="is a folder"):
        TrainingConfig.from_json_file(tmp_path)
