"""Issue 15, round two: output that cannot crash, config edge cases, refusals that name the real reason."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

EMOJI_NAME = "greet_\u2047_\U0001f642.jsonl"


def run_cli(*args: str, encoding: str | None = None) -> subprocess.CompletedProcess:
    """Run ``launch.py`` with ``PYTHONIOENCODING=encoding`` (bytes decoded back with that encoding)."""
    env = dict(os.environ)
    if encoding:
        env["PYTHONIOENCODING"] = encoding
    out = subprocess.run(
        [sys.executable, "launch.py", *args], cwd=ROOT, capture_output=True, timeout=600, env=env
    )
    codec = encoding or "utf-8"
    return subprocess.CompletedProcess(
        out.args, out.returncode, out.stdout.decode(codec), out.stderr.decode(codec)
    )


def _chat_file(folder, name: str = EMOJI_NAME):
    rows = [
        {
            "messages": [
                {"role": "user", "content": "Say hi \U0001f642"},
                {"role": "assistant", "content": "hi"},
            ]
        },
        {"messages": [{"role": "user", "content": "Add 2 and 3"}, {"role": "assistant", "content": "5"}]},
        {"messages": [{"role": "\U0001f916", "content": "beep"}, {"role": "assistant", "content": "boop"}]},
    ]
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("encoding", ["gbk", "ascii"])
def test_validate_survives_a_console_that_cannot_encode_the_file_name(tmp_path, embedded_path, encoding):
    data = _chat_file(tmp_path)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"dataset_name": str(data), "max_length": 128}), encoding="utf-8")
    out = run_cli("validate", str(cfg), encoding=encoding)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "UnicodeEncodeError" not in out.stderr
    assert "greet_\\u2047_\\U0001f642.jsonl" in out.stdout  # escaped, not dropped
    # argparse's own errors go through the same safe stream
    bad = run_cli("validate", str(cfg), "--no-such-\u2047-flag", encoding=encoding)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "\\u2047" in bad.stderr


# ---------------------------------------------------------------- config edge cases


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply to read"),
        ('{"lora_r": ' + "9" * 5000 + "}", "holds a number too long to read"),
        ('{"max_steps": null}', "max_steps: null is not a whole number; leave the key out for the default."),
    ],
)
def test_hostile_config_files_are_one_message_refusals(tmp_path, text, needle):
    cfg = tmp_path / "c.json"
    cfg.write_text(text, encoding="utf-8")
    for command in ("train", "validate"):
        out = run_cli(command, str(cfg), "--json")
        assert out.returncode == 2, out.stderr
        assert needle in out.stderr and "Traceback" not in out.stderr
        assert json.loads(out.stdout.strip().splitlines()[-1]) == {
            "status": "invalid",
            "error": out.stderr.strip(),
        }


def test_null_is_refused_for_every_kind_of_field():
    from core.config import TrainingConfig
    from core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        TrainingConfig.from_dict(
            {
                "learning_rate": None,
                "packing": None,
                "lora_target_modules": None,
                "gradient_checkpointing": None,
            }
        )
    assert err.value.problems == [
        "lora_target_modules: null is not a list of module names; leave the key out for the default.",
        "learning_rate: null is not a number; leave the key out for the default.",
        "gradient_checkpointing: null is not true, false or auto; leave the key out for the default.",
        "packing: null is not true/false; leave the key out for the default.",
    ]
    assert TrainingConfig.from_dict({}).max_steps == -1  # leaving the key out still means the default


def test_micro_batch_larger_than_the_data_is_capped_and_recorded(tmp_path, tiny_llama):
    """64 asked, 10 rows: the run trains 10-row steps and says so in its log and result; the log file is UTF-8
    and the console (ASCII only) gets escapes."""
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Say {i} \U0001f642"},
                {"role": "assistant", "content": f"{i}"},
            ]
        }
        for i in range(10)
    ]
    data = tmp_path / EMOJI_NAME
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps(
            {
                "model_name_or_path": str(tiny_llama),
                "dataset_name": str(data),
                "dtype": "float32",
                "max_length": 64,
                "max_steps": 1,
                "per_device_train_batch_size": 64,
                "monitor_rows": 0,
                "save_steps": 0,
                "output_dir": str(tmp_path / "runs"),
            }
        ),
        encoding="utf-8",
    )
    out = run_cli("train", str(cfg), "--json", encoding="ascii")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "completed" and result["steps"] == 1
    capped = "per_device_train_batch_size 64 is more than the 10 training rows: using 10."
    assert capped in out.stderr and "greet_\\u2047_\\U0001f642.jsonl" in out.stderr
    run_dir = result["run_dir"]
    recorded = json.loads(open(os.path.join(run_dir, "result.json"), encoding="utf-8").read())
    assert recorded["per_device_train_batch_size"] == 10
    log = open(os.path.join(run_dir, "train.log"), encoding="utf-8").read()  # UTF-8 whatever the console
    assert capped in log and EMOJI_NAME in log
    assert "Padding uses EOS '<|im_end|>'" in log and "EOS stays a training target" in log


def test_the_pad_note_names_eos_only_when_eos_pads(embedded_path):
    from core.model import load_tokenizer
    from core.train import pad_token_note

    tok = load_tokenizer(embedded_path)
    assert pad_token_note(tok).startswith(f"Padding uses EOS {tok.eos_token!r} (id {tok.eos_token_id})")
    tok.pad_token = "<|endoftext|>"  # a separate pad token: nothing to say
    assert tok.pad_token != tok.eos_token and pad_token_note(tok) == ""


# ---------------------------------------------------------------- refusals that name the real reason


class _Planted:
    """Unpickling this creates a file: the proof that a pickle runs code when loaded."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _checkpoint(folder):
    """A checkpoint folder as the Trainer writes one (the weights' contents do not matter to the refusal)."""
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8, "lora_alpha": 16, "target_modules": []}))
    (folder / "adapter_model.safetensors").write_bytes(b"")
    (folder / "training_args.bin").write_bytes(b"")  # written by every Trainer checkpoint, never loaded back
    return folder


def test_resume_refuses_a_pickled_bin_naming_it_and_never_loads_it(tmp_path):
    import pickle

    run = tmp_path / "run"
    ckpt = _checkpoint(run / "checkpoints" / "checkpoint-2")
    marker = tmp_path / "pickle-ran"
    (ckpt / "pytorch_model.bin").write_bytes(pickle.dumps(_Planted(str(marker))))
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"instruction": "hi", "output": "hello"}) + "\n")
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"dataset_name": str(data), "resume_from_checkpoint": str(run)}))
    out = run_cli("train", str(cfg), "--json")
    assert out.returncode == 2, out.stderr
    assert f"{ckpt / 'pytorch_model.bin'} is a pickled PyTorch file" in out.stderr
    assert "loading a pickle can run code" in out.stderr and "only safetensors" in out.stderr
    assert "weights_only" not in out.stderr and "Traceback" not in out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["status"] == "invalid"
    assert not marker.exists()


def test_resume_names_an_adapter_kept_only_as_a_pickle(tmp_path):
    from core.errors import ConfigError
    from core.resume import resolve_checkpoint

    ckpt = _checkpoint(tmp_path / "checkpoint-3")
    assert resolve_checkpoint(str(ckpt)) == ckpt  # training_args.bin alone is fine: it is never read back
    (ckpt / "adapter_model.safetensors").rename(ckpt / "adapter_model.bin")
    with pytest.raises(ConfigError) as err:
        resolve_checkpoint(str(ckpt))
    assert "adapter_model.bin, a pickle (only safetensors are loaded)" in str(err.value)


def test_lm_head_of_a_tied_model_is_refused_as_tied(tmp_path, tiny_llama):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"lora_target_modules": ["q_proj", "lm_head"]}))
    out = run_cli(
        "plan",
        "--model",
        str(tiny_llama),
        "--gpu-gib",
        "16",
        "--config",
        str(cfg),
        "--out",
        str(tmp_path / "p.json"),
    )
    assert out.returncode == 2, out.stderr
    assert "lm_head is tied to the input embeddings (it shares its weights with embed_tokens)" in out.stderr
    assert "leave lm_head out" in out.stderr and "not Linear" not in out.stderr


def test_lm_head_of_an_untied_model_and_a_misspelled_module_are_both_named(tiny_llama):
    import dataclasses

    from core.config import TrainingConfig
    from core.errors import ModelError
    from core.model import inspect_model, target_modules_for

    spec = inspect_model(str(tiny_llama))
    untied = dataclasses.replace(spec, embedding_params=2 * spec.vocab_size * spec.hidden_size)
    cfg = TrainingConfig.from_dict({"lora_target_modules": ["lm_head", "q_prj"]})
    with pytest.raises(ModelError) as err:
        target_modules_for(cfg, untied)
    text = str(err.value)
    assert "lm_head (the output layer) is not adapted here" in text and "tied" not in text
    assert "['q_prj'] are not Linear modules of this model" in text
