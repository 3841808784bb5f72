"""End to end on the embedded SmolLM2-135M: CLI train -> export merged -> reload and generate; QLoRA on CPU."""

import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import ASSETS, ROOT

pytestmark = pytest.mark.slow


def cli(*args, timeout=900):
    out = subprocess.run(
        [sys.executable, "launch.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def mean_loss(model, tokenizer, rows):
    from core.tokenization import tokenize_example

    losses = []
    with torch.no_grad():
        for example in rows:
            ids, labels = tokenize_example(tokenizer, example, 256)
            out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
            losses.append(float(out.loss))
    return sum(losses) / len(losses)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, embedded_path):
    out_dir = tmp_path_factory.mktemp("runs")
    cfg = {
        "model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "dataset_name": str(ASSETS / "humaneval_alpaca.jsonl"),
        "max_steps": 10,
        "per_device_train_batch_size": 2,
        "max_length": 256,
        "learning_rate": 5e-4,
        "seed": 0,
        "output_dir": str(out_dir),
    }
    path = out_dir / "config.json"
    path.write_text(json.dumps(cfg))
    return cli("train", str(path), "--json")


def test_cli_train_writes_a_complete_run_folder(trained_run):
    from pathlib import Path

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from core.model import resolve_model_path

    assert trained_run["status"] == "completed" and trained_run["steps"] == 10
    assert trained_run["final_loss"] is not None and trained_run["trainable_params"] == 2_442_240
    run = Path(trained_run["run_dir"])
    assert {"config.json", "metrics.jsonl", "adapter", "train.log", "result.json"} <= {
        p.name for p in run.iterdir()
    }
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == list(range(1, 11))
    base = AutoModelForCausalLM.from_pretrained(
        resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct"), dtype=torch.float32
    )
    model = PeftModel.from_pretrained(base, run / "adapter")
    assert sum(p.abs().sum().item() for n, p in model.named_parameters() if "lora_B" in n) > 0


def test_training_lowers_the_loss_on_its_data(trained_run, embedded_path):
    """Loss of base vs base+adapter on 8 fixed training rows (not the noisy per-batch log)."""
    from pathlib import Path

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from core.data import load_dataset_report
    from core.model import load_tokenizer

    tokenizer = load_tokenizer(embedded_path)
    rows = load_dataset_report(str(ASSETS / "humaneval_alpaca.jsonl")).examples[:8]
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(embedded_path, dtype=torch.float32),
        Path(trained_run["run_dir"]) / "adapter",
    )
    after = mean_loss(model, tokenizer, rows)
    with model.disable_adapter():
        before = mean_loss(model, tokenizer, rows)
    assert after < before * 0.95, (before, after)


def test_export_merged_reloads_and_generates(trained_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    result = cli("export", trained_run["run_dir"], "--merged", "--out", str(out), "--json")
    assert result["mean_abs_diff_vs_reference"] <= result["tolerance"]
    assert result["mean_abs_diff_vs_base"] > result["mean_abs_diff_vs_reference"]
    assert (out / "model.safetensors").is_file() and (out / "chat_template.jinja").is_file()
    assert (tmp_path / "merged.zip").stat().st_size > 100e6
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.dtype == torch.bfloat16 and not hasattr(model.config, "quantization_config")
    tok = AutoTokenizer.from_pretrained(out)
    enc = tok.apply_chat_template(
        [{"role": "user", "content": "Write a Python function that adds two numbers."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    gen = model.generate(**enc, max_new_tokens=24, do_sample=False)
    text = tok.decode(gen[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert len(text.strip()) > 10
    # never overwritten: a second export to the same folder is refused
    again = subprocess.run(
        [sys.executable, "launch.py", "export", trained_run["run_dir"], "--merged", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    adapter = cli("export", trained_run["run_dir"], "--adapter", "--json")
    assert adapter["path"].endswith("adapter-export") and adapter["mean_abs_diff_vs_base"] > 0


def test_qlora_nf4_trains_on_cpu(tmp_path, embedded_path):
    import bitsandbytes  # noqa: F401  (bitsandbytes >= 0.50 has CPU 4-bit kernels)

    from core.config import TrainingConfig
    from core.job import TrainingJob

    cfg = TrainingConfig(
        dataset_name=str(ASSETS / "humaneval_messages.jsonl"),
        load_in_4bit=True,
        max_steps=2,
        per_device_train_batch_size=1,
        max_length=128,
        output_dir=str(tmp_path),
        bnb_4bit_compute_dtype="float32",
    )
    job = TrainingJob()
    job.start(cfg)
    snap = job.wait(timeout_s=900)
    assert snap.status == "completed", snap.message
    assert snap.step == 2 and snap.info["dtype"] == "float32"
    losses = [h["loss"] for h in snap.history if "loss" in h]
    assert len(losses) == 2 and all(0 < v < 20 for v in losses)
    from peft import PeftConfig

    assert PeftConfig.from_pretrained(snap.run_dir + "/adapter").r == 8
