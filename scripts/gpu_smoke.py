"""GPU smoke test of the whole engine: QLoRA and LoRA runs through TrainingJob, status line, merged export.

Builds a Qwen2.5-0.5B-shaped model with random weights (tokenizer files from ``--tokenizer``), trains a few steps on
the HumanEval sample with each method, prints the status line the UI shows (which carries the measured GPU peak next
to the estimate) and exports merged weights of the QLoRA run.

    python scripts/gpu_smoke.py --tokenizer DIR [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import TrainingConfig  # noqa: E402
from core.export import export_merged  # noqa: E402
from core.job import TrainingJob  # noqa: E402
from core.model import load_tokenizer  # noqa: E402
from ui.views import status_markdown  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--optim", default="adamw_torch")
    p.add_argument("--methods", default="qlora,lora")
    p.add_argument("--no-export", action="store_true")
    p.add_argument(
        "--oom-first",
        action="store_true",
        help="first start a run that cannot fit (64 rows x 8192 tokens); the next runs must work in the same job",
    )
    a = p.parse_args()
    from transformers import AutoConfig, AutoModelForCausalLM

    tok = load_tokenizer(a.tokenizer)
    folder = Path(tempfile.mkdtemp()) / "qwen-0.5b-random"
    config = AutoConfig.for_model(
        "qwen2",
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=len(tok),
        tie_word_embeddings=True,
        max_position_embeddings=4096,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    with torch.device("cuda"):
        AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).save_pretrained(folder)
    tok.save_pretrained(folder)
    runs = {}
    job = TrainingJob()  # one job object for every run, as in the app
    if a.oom_first:
        long_rows = Path(tempfile.mkdtemp()) / "long.jsonl"
        words = " ".join(f"token{i}" for i in range(6000))
        long_rows.write_text("\n".join(json.dumps({"text": words}) for _ in range(64)) + "\n")
        job.start(
            TrainingConfig(
                model_name_or_path=str(folder),
                dataset_name=str(long_rows),
                max_steps=2,
                per_device_train_batch_size=64,
                max_length=8192,
                packing=False,
                auto_micro_batch=False,
                output_dir=str(Path(tempfile.mkdtemp())),
            )
        )
        snap = job.wait()
        print(f"== oom run: {snap.status}: {snap.message}", flush=True)
        print(
            f"== after the failed run: allocated {torch.cuda.memory_allocated() / 2**30:.2f} GiB, "
            f"reserved {torch.cuda.memory_reserved() / 2**30:.2f} GiB",
            flush=True,
        )
        assert snap.status == "failed" and "out of memory" in snap.message
    for method in a.methods.split(","):
        cfg = TrainingConfig(
            model_name_or_path=str(folder),
            dataset_name=str(ROOT / "assets" / "humaneval_alpaca.jsonl"),
            load_in_4bit=method == "qlora",
            max_steps=a.steps,
            per_device_train_batch_size=4,
            max_length=512,
            output_dir=str(Path(tempfile.mkdtemp())),
            learning_rate=1e-3,
            optim=a.optim,
        )
        job.start(cfg)
        snap = job.wait()
        print(f"== {method}: {status_markdown(snap)}", flush=True)
        assert snap.status == "completed", snap.message
        runs[method] = snap.run_dir
    if not a.no_export:
        print("== export:", export_merged(next(iter(runs.values()))).summary())


if __name__ == "__main__":
    main()
