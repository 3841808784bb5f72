"""VRAM estimator accuracy: train a few real steps for a grid of configurations and compare with the estimate.

For each configuration a real architecture (random weights, built from its config) is trained for ``--steps`` steps
with every row exactly ``max_length`` tokens (the estimator's worst case), through core.model.prepare_for_training
and the Trainer, and ``torch.cuda.max_memory_reserved()`` is recorded. The estimate compared is
``core.vram.estimate_vram`` without the CUDA context (which torch's allocator does not see). Needs a CUDA GPU and
bitsandbytes.

    python bench/vram_accuracy.py [--only NAME ...] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import TrainingConfig  # noqa: E402
from core.model import get_quantization_config, inspect_model, prepare_for_training, target_modules_for  # noqa: E402
from core.vram import estimate_vram  # noqa: E402

# Shapes from each model's config.json on the hub (random weights are enough for memory).
ARCHS = {
    "SmolLM2-135M": {
        "model_type": "llama",
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "vocab_size": 49152,
        "tie_word_embeddings": True,
    },
    "Qwen2.5-0.5B": {
        "model_type": "qwen2",
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    },
    "Qwen2.5-1.5B": {
        "model_type": "qwen2",
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    },
    "Llama-2-7B": {
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "vocab_size": 32000,
        "tie_word_embeddings": False,
    },
    "Llama-3-8B": {
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "tie_word_embeddings": False,
    },
    "Mistral-7B": {
        "model_type": "mistral",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 32768,
        "tie_word_embeddings": False,
    },
}
# (arch, method, max_length, batch, r, gradient checkpointing)
GRID = [
    ("SmolLM2-135M", "lora", 256, 8, 8, False),
    ("SmolLM2-135M", "qlora", 1024, 4, 16, False),
    ("Qwen2.5-0.5B", "lora", 512, 4, 8, False),
    ("Qwen2.5-0.5B", "qlora", 2048, 2, 32, True),
    ("Qwen2.5-1.5B", "lora", 1024, 4, 16, False),
    ("Qwen2.5-1.5B", "qlora", 4096, 1, 64, True),
    ("Llama-2-7B", "lora", 512, 2, 8, False),
    ("Llama-2-7B", "qlora", 1024, 4, 16, True),
    ("Llama-3-8B", "qlora", 2048, 2, 8, True),
    ("Llama-3-8B", "lora", 256, 8, 64, False),
    ("Mistral-7B", "qlora", 512, 8, 8, False),
    ("Mistral-7B", "lora", 4096, 1, 16, True),
]


# A second grid, never used to set the estimator's constants, to check them.
GRID_CHECK = [
    ("SmolLM2-135M", "qlora", 512, 16, 32, True),
    ("SmolLM2-135M", "lora", 2048, 2, 64, True),
    ("Qwen2.5-0.5B", "lora", 1024, 8, 16, True),
    ("Qwen2.5-0.5B", "qlora", 256, 8, 8, False),
    ("Qwen2.5-1.5B", "qlora", 2048, 4, 8, False),
    ("Qwen2.5-1.5B", "lora", 512, 2, 32, True),
    ("Llama-2-7B", "qlora", 2048, 2, 64, False),
    ("Llama-2-7B", "lora", 4096, 2, 8, True),
    ("Llama-3-8B", "lora", 1024, 4, 16, True),
    ("Llama-3-8B", "qlora", 512, 4, 32, False),
    ("Mistral-7B", "lora", 512, 8, 8, False),
    ("Mistral-7B", "qlora", 4096, 2, 16, True),
]


# A third grid of configurations never measured before v3's constants were set (a true hold-out), with the
# precision as a seventh field (bfloat16 when absent).
GRID_HOLDOUT = [
    ("SmolLM2-135M", "lora", 1024, 4, 16, False, "float32"),
    ("SmolLM2-135M", "qlora", 2048, 8, 8, True),
    ("Qwen2.5-0.5B", "lora", 2048, 4, 32, False, "float16"),
    ("Qwen2.5-0.5B", "qlora", 4096, 2, 16, True),
    ("Qwen2.5-1.5B", "lora", 256, 16, 8, False),
    ("Qwen2.5-1.5B", "qlora", 1024, 8, 64, True),
    ("Llama-2-7B", "lora", 2048, 1, 32, True, "float16"),
    ("Llama-2-7B", "qlora", 512, 8, 8, False),
    ("Llama-3-8B", "qlora", 4096, 1, 16, True),
    ("Llama-3-8B", "lora", 2048, 2, 8, True),
    ("Mistral-7B", "qlora", 1024, 4, 64, False),
    ("Mistral-7B", "lora", 256, 4, 32, False),
]

# LoRA on an 8-bit base (LLM.int8): the first four were measured with the activation factor borrowed from QLoRA;
# the rest were added to calibrate it, with and without checkpointing.
GRID_8BIT = [
    ("Qwen2.5-0.5B", "lora8", 1024, 4, 16, False),
    ("Qwen2.5-1.5B", "lora8", 2048, 2, 8, True),
    ("Llama-2-7B", "lora8", 512, 4, 16, False),
    ("Mistral-7B", "lora8", 2048, 2, 8, True),
    ("SmolLM2-135M", "lora8", 512, 8, 8, False),
    ("SmolLM2-135M", "lora8", 1024, 4, 16, True),
    ("Qwen2.5-0.5B", "lora8", 2048, 2, 8, True),
    ("Qwen2.5-1.5B", "lora8", 512, 4, 16, False),
    ("Llama-2-7B", "lora8", 1024, 2, 8, True),
    ("Llama-3-8B", "lora8", 1024, 2, 16, True),
    ("Mistral-7B", "lora8", 256, 8, 16, False),
]


def model_folder(arch: str, root: Path, with_weights: bool) -> Path:
    """config.json for ``arch`` (and, for 4-bit loading, random bf16 weights saved once)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = root / arch
    spec = dict(ARCHS[arch])
    config = AutoConfig.for_model(spec.pop("model_type"), **spec, max_position_embeddings=8192)
    if not (folder / "config.json").is_file():
        config.save_pretrained(folder)
    if (
        with_weights
        and not (folder / "model.safetensors.index.json").is_file()
        and not (folder / "model.safetensors").is_file()
    ):
        t0 = time.time()
        with torch.device("cuda"):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        model.save_pretrained(folder)
        del model
        torch.cuda.empty_cache()
        print(f"  saved random {arch} weights in {time.time() - t0:.0f}s", flush=True)
    return folder


def measure(
    arch: str,
    method: str,
    max_length: int,
    batch: int,
    r: int,
    gc_on: bool,
    root: Path,
    steps: int,
    dtype: str = "bfloat16",
) -> dict:
    from transformers import AutoConfig, AutoModelForCausalLM, Trainer, TrainingArguments

    folder = model_folder(arch, root, with_weights=method in ("qlora", "lora8"))
    cfg = TrainingConfig(
        model_name_or_path=str(folder),
        load_in_4bit=method == "qlora",
        load_in_8bit=method == "lora8",
        lora_r=r,
        lora_alpha=2 * r,
        max_length=max_length,
        per_device_train_batch_size=batch,
        gradient_checkpointing=gc_on,
        monitor_rows=0,
        dtype=dtype,
    )
    spec = inspect_model(str(folder))
    targets = target_modules_for(cfg, spec)
    est = estimate_vram(spec, cfg, method)
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    if method in ("qlora", "lora8"):
        base = AutoModelForCausalLM.from_pretrained(
            folder, quantization_config=get_quantization_config(cfg), dtype=torch.bfloat16, device_map={"": 0}
        )
    else:
        with torch.device("cuda"):
            base = AutoModelForCausalLM.from_config(
                AutoConfig.from_pretrained(folder), dtype=getattr(torch, dtype)
            )
    model = prepare_for_training(base, cfg, targets, quantized=method in ("qlora", "lora8"))
    gen = torch.Generator().manual_seed(0)
    rows = [
        {"input_ids": ids, "attention_mask": [1] * max_length, "labels": ids}
        for ids in torch.randint(0, spec.vocab_size, (batch * steps, max_length), generator=gen).tolist()
    ]
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=batch,
        max_steps=steps,
        bf16=dtype == "bfloat16",
        fp16=dtype == "float16",
        learning_rate=1e-4,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    t0 = time.time()
    Trainer(model=model, args=args, train_dataset=rows).train()
    measured = torch.cuda.max_memory_reserved() / 2**30
    allocated = torch.cuda.max_memory_allocated() / 2**30
    estimate = est.total_gib - est.components_gib["CUDA context"]
    del model, base
    gc.collect()
    torch.cuda.empty_cache()
    return {
        "arch": arch,
        "method": method,
        "max_length": max_length,
        "batch": batch,
        "r": r,
        "gc": gc_on,
        "dtype": dtype,
        "params_b": spec.num_params / 1e9,
        "estimate_gib": estimate,
        "reserved_gib": measured,
        "allocated_gib": allocated,
        "error_pct": 100 * (estimate - measured) / measured,
        "components_gib": est.components_gib,
        "train_s": time.time() - t0,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--only", nargs="*", default=None, help="architectures to run (default: all)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--root", default="/tmp/vram-models")
    p.add_argument(
        "--grid",
        choices=["fit", "check", "holdout", "8bit"],
        default="check",
        help="fit: the grid the constants were fitted on; check: a held-out grid",
    )
    p.add_argument("--json", default=None)
    a = p.parse_args()
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    results = []
    grids = {"fit": GRID, "check": GRID_CHECK, "holdout": GRID_HOLDOUT, "8bit": GRID_8BIT}
    for arch, method, max_length, batch, r, gc_on, *rest in grids[a.grid]:
        if a.only and arch not in a.only:
            continue
        dtype = rest[0] if rest else "bfloat16"
        try:
            row = measure(arch, method, max_length, batch, r, gc_on, Path(a.root), a.steps, dtype)
        except torch.cuda.OutOfMemoryError as exc:
            row = {
                "arch": arch,
                "method": method,
                "max_length": max_length,
                "batch": batch,
                "r": r,
                "gc": gc_on,
                "error": f"OOM: {exc}"[:200],
            }
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "components_gib"}), flush=True)
        if a.json:
            Path(a.json).write_text(json.dumps(results, indent=2))
    ok = [r for r in results if "error_pct" in r]
    print(f"\n{torch.cuda.get_device_name()} | torch {torch.__version__}")
    print("| model | method | dtype | max_length | batch | r | ckpt | estimate GiB | reserved GiB | error |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in ok:
        print(
            f"| {r['arch']} | {r['method']} | {r['dtype']} | {r['max_length']} | {r['batch']} | {r['r']} "
            f"| {'on' if r['gc'] else 'off'} "
            f"| {r['estimate_gib']:.2f} | {r['reserved_gib']:.2f} | {r['error_pct']:+.1f}% |"
        )
    if ok:
        errors = [abs(r["error_pct"]) for r in ok]
        under = min(r["error_pct"] for r in ok)
        print(
            f"median |error| {statistics.median(errors):.1f}%, worst {max(errors):.1f}%, most under {under:+.1f}% "
            f"(goal: median <= 7%, worst <= 15%, never under by more than 10%)"
        )


if __name__ == "__main__":
    main()
