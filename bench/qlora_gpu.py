"""QLoRA / LoRA on a 7B-shaped Llama: LoRA Studio's engine vs the seed chapter's plain Trainer + PEFT recipe.

Both runs use the same model folder, data, batches and settings, one after the other: the baseline in this
process, ours in the worker process its TrainingJob starts (each side in its own process); the
script prints tokens/s and peak GPU memory for each and the ratio ours / baseline, plus the VRAM estimator's
prediction next to the measured peak. Needs a CUDA GPU with bitsandbytes.

    python bench/qlora_gpu.py --tokenizer DIR [--steps 30] [--batch 4] [--max-length 512] [--json OUT.json]

The model is Llama-2-7B-shaped (hidden 4096, 32 layers, MLP 11008) with random weights, built from a config and
saved once (weights do not matter for speed or memory); its vocabulary is the tokenizer's.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from transformers import TrainerCallback  # noqa: E402

from core.config import TrainingConfig  # noqa: E402
from core.data import load_dataset_report  # noqa: E402
from core.model import inspect_model, load_tokenizer  # noqa: E402
from core.tokenization import tokenize_report  # noqa: E402
from core.vram import estimate_vram  # noqa: E402

WARMUP_STEPS = 3  # excluded from tokens/s (allocator growth, kernel selection)


def build_random_model(folder: Path, tokenizer_dir: str) -> Path:
    """Save a Llama-2-7B-shaped model with random bf16 weights to ``folder`` (once)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if (folder / "config.json").is_file():
        return folder
    tok = load_tokenizer(tokenizer_dir)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    t0 = time.time()
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    del model
    torch.cuda.empty_cache()
    print(f"built and saved random 7B-shaped model in {time.time() - t0:.0f}s", flush=True)
    return folder


class StepClock(TrainerCallback):
    """Records (monotonic time, non-padding tokens seen) at every optimizer step."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, int]] = []

    def on_step_end(self, args, state, control, **kwargs):
        torch.cuda.synchronize()
        self.marks.append((time.monotonic(), int(state.num_input_tokens_seen)))


def tokens_per_s(marks: list[tuple[float, int]]) -> float:
    (t0, n0), (t1, n1) = marks[WARMUP_STEPS - 1], marks[-1]
    return (n1 - n0) / (t1 - t0)


def baseline(cfg: TrainingConfig, model_dir: Path, features: list[dict]) -> dict:
    """The seed chapter's recipe (26.7.3-26.7.4): BitsAndBytesConfig, prepare_model_for_kbit_training,
    get_peft_model, Trainer with fp16/bf16, DataCollatorForSeq2Seq padding each batch to its longest row."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import (
        AutoModelForCausalLM,
        BitsAndBytesConfig,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
    )

    kwargs: dict = {"dtype": torch.bfloat16, "device_map": {"": 0}}
    if cfg.load_in_4bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        )
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    if cfg.load_in_4bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    model = get_peft_model(
        model,
        LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.lora_target_modules),
            bias="none",
            task_type="CAUSAL_LM",
        ),
    )
    tok = load_tokenizer(str(model_dir))
    clock = StepClock()
    args = TrainingArguments(
        output_dir="/tmp/bench-baseline",
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        bf16=True,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=cfg.seed,
        data_seed=cfg.seed,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=features,
        callbacks=[clock],
        data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100),
    )
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    del trainer, model
    return {"tokens_per_s": tokens_per_s(clock.marks), "final_loss": losses[-1], "steps": len(clock.marks)}


def ours(cfg: TrainingConfig) -> dict:
    """LoRA Studio's TrainingJob on the same settings: its thread supervises a worker process (launch.py
    train-worker), so the peak memory is the worker's, as its callback logged it (peak_allocated_gib)."""
    from core.job import TrainingJob

    job = TrainingJob()
    job.start(cfg)
    snap = job.wait()
    assert snap.status == "completed", snap.message
    marks = [(h["elapsed_s"], int(h["num_input_tokens_seen"])) for h in snap.history if "loss" in h]
    losses = [h["loss"] for h in snap.history if "loss" in h]
    peaks = [h["peak_allocated_gib"] for h in snap.history if "peak_allocated_gib" in h]
    reserved = [h["peak_reserved_gib"] for h in snap.history if "peak_reserved_gib" in h]
    return {
        "peak_gib": max(peaks),
        "reserved_gib": max(reserved),
        "tokens_per_s": tokens_per_s(marks),
        "final_loss": losses[-1],
        "steps": snap.step,
        "run_dir": snap.run_dir,
        "dtype": snap.info.get("dtype"),
    }


def measure(name: str, fn, *args) -> dict:
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    result = fn(*args)
    result.setdefault("peak_gib", torch.cuda.max_memory_allocated() / 2**30)  # ours: its worker's own peak
    result.setdefault("reserved_gib", torch.cuda.max_memory_reserved() / 2**30)
    result["wall_s"] = time.time() - t0
    print(f"{name}: {json.dumps(result)}", flush=True)
    gc.collect()
    torch.cuda.empty_cache()
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument(
        "--tokenizer", required=True, help="folder with tokenizer files (e.g. the converted SmolLM2)"
    )
    p.add_argument("--model-dir", default="/tmp/llama7b-random")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--methods", default="qlora,lora")
    p.add_argument(
        "--repeats", type=int, default=2, help="runs per side, interleaved ABBA; medians are compared"
    )
    p.add_argument("--json", default=None)
    a = p.parse_args()
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    model_dir = build_random_model(Path(a.model_dir), a.tokenizer)
    spec = inspect_model(str(model_dir))
    data = str(ROOT / "assets" / "humaneval_alpaca.jsonl")
    rows = []
    for method in a.methods.split(","):
        cfg = TrainingConfig(
            model_name_or_path=str(model_dir),
            dataset_name=data,
            load_in_4bit=method == "qlora",
            lora_target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
            max_steps=a.steps,
            per_device_train_batch_size=a.batch,
            max_length=a.max_length,
            lora_dropout=0.05,
            output_dir="/tmp/bench-runs",
            monitor_rows=0,  # the baseline has no fixed-row evaluation; compare like for like
            seed=0,
        )
        features = tokenize_report(
            load_dataset_report(data), load_tokenizer(str(model_dir)), a.max_length
        ).features
        # ABBA order: the first run in a process pays one-time CUDA / bitsandbytes warm-up and the shared host
        # drifts, so each side runs ``repeats`` times interleaved and the medians are compared.
        runs: dict[str, list[dict]] = {"baseline": [], "ours": []}
        order = (("baseline", "ours", "ours", "baseline") * a.repeats)[: 2 * a.repeats]
        for who in order:
            if who == "baseline":
                runs[who].append(
                    measure(f"{method} baseline (Trainer+PEFT)", baseline, cfg, model_dir, features)
                )
            else:
                runs[who].append(measure(f"{method} LoRA Studio", ours, cfg))
        base, mine = (
            {
                k: (statistics.median(r[k] for r in rs) if isinstance(rs[0][k], float) else rs[-1][k])
                for k in rs[0]
            }
            for rs in (runs["baseline"], runs["ours"])
        )
        base["all_tokens_per_s"] = [r["tokens_per_s"] for r in runs["baseline"]]
        mine["all_tokens_per_s"] = [r["tokens_per_s"] for r in runs["ours"]]
        est = estimate_vram(spec, cfg, method)
        rows.append(
            {
                "method": method,
                "baseline": base,
                "ours": mine,
                "estimate_gib": est.total_gib - est.components_gib["CUDA context"],
                "estimate_components_gib": est.components_gib,
            }
        )
    print(
        f"\n{torch.cuda.get_device_name()} | torch {torch.__version__} | {spec.num_params / 1e9:.2f} B params, "
        f"batch {a.batch}, max_length {a.max_length}, {a.steps} steps, r=8 on q/k/v/o"
    )
    print("| method | run | tokens/s | peak allocated GiB | final loss |")
    print("|---|---|---|---|---|")
    for r in rows:
        for who in ("baseline", "ours"):
            m = r[who]
            print(
                f"| {r['method']} | {who} | {m['tokens_per_s']:,.0f} | {m['peak_gib']:.2f} | {m['final_loss']:.4f} |"
            )
        print(
            f"| {r['method']} | ratio ours/baseline | {r['ours']['tokens_per_s'] / r['baseline']['tokens_per_s']:.3f} "
            f"| {r['ours']['peak_gib'] / r['baseline']['peak_gib']:.3f} | |"
        )
        print(f"| {r['method']} | estimator (allocated, no context) | | {r['estimate_gib']:.2f} | |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
