"""VRAM estimator accuracy: train a few real steps for a grid of configurations and compare with the estimate.

For each configuration a real architecture (random weights, built from its config) is trained for ``--steps`` steps
with every row exactly ``max_length`` tokens (the estimator's worst case; no packing) through the Trainer, and
``torch.cuda.max_memory_reserved()`` is recorded, with ``max_memory_allocated()`` and the memory right after the
model is loaded and prepared (weights only), so weights and activations can be fitted apart. The estimate compared is
``core.vram.estimate_vram`` without the CUDA context (which torch's allocator does not see), both ways:
``estimate_gib`` with ``upcast_non_quantized=False`` (the product's path) and ``estimate_upcast_gib``.

``--prepare`` picks how the model is readied (default ``product``):
  product  exactly as the product: core.model.load_model_for_training for k-bit bases (prepare_for_training with its
           defaults: no fp32 upcast of norms/embeddings) and the fused LoRA branch when core.engine.fused_lora_enabled();
           a 16-bit base is built from its config on the GPU (same memory as loading it) and prepared the same way;
  upcast   peft's prepare_model_for_kbit_training (fp32 norms/embeddings), peft's own LoRA forward: the path the
           v3/v4 constants were calibrated on (grids fit/check/holdout/8bit, session 1-2);
  unfused  prepare_for_training's defaults without the fused branch (what this script did between the engine's
           16-bit k-bit preparation and session 5).
Needs a CUDA GPU and bitsandbytes (``--dry-run`` prints the grid and the estimates on any machine).

    python bench/vram_accuracy.py --grid arch-fit [--only NAME ...] [--prepare product] [--json OUT.json]
    python bench/vram_accuracy.py --grid arch-holdout --dry-run
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import TrainingConfig  # noqa: E402
from core.model import (  # noqa: E402
    get_quantization_config,
    inspect_model,
    load_model_for_training,
    prepare_for_training,
    target_modules_for,
)
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
    # Session 5 (issue 14 section 7): shapes beyond the grids above, from each model's config.json on the hub.
    # Large vocabulary (262,144), tied, explicit head_dim 256 != 1152 / 4, one KV head, 5:1 sliding/full layers,
    # four norms per layer and q/k norms.
    "Gemma-3-1B": {
        "model_type": "gemma3_text",
        "hidden_size": 1152,
        "intermediate_size": 6912,
        "num_hidden_layers": 26,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 256,
        "query_pre_attn_scalar": 256,
        "sliding_window": 512,
        "vocab_size": 262144,
        "tie_word_embeddings": True,
        "max_position_embeddings": 32768,
    },
    # Fused projections: qkv_proj (3072 -> 9216) and gate_up_proj (3072 -> 16384).
    "Phi-3-mini-4k": {
        "model_type": "phi3",
        "hidden_size": 3072,
        "intermediate_size": 8192,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "vocab_size": 32064,
        "tie_word_embeddings": False,
        "max_position_embeddings": 4096,
        "pad_token_id": 32000,
    },
    # Tied embeddings, GQA 32/8.
    "Llama-3.2-1B": {
        "model_type": "llama",
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "vocab_size": 128256,
        "tie_word_embeddings": True,
    },
    # Tied embeddings, GQA 24/8.
    "Llama-3.2-3B": {
        "model_type": "llama",
        "hidden_size": 3072,
        "intermediate_size": 8192,
        "num_hidden_layers": 28,
        "num_attention_heads": 24,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 128256,
        "tie_word_embeddings": True,
    },
    # GQA 28/4, vocabulary 152,064, untied: the known bad case (QLoRA 512 x 4, r 16, no checkpointing: estimated
    # 35.7 GiB, reserved 24.9 GiB).
    "Qwen2.5-7B": {
        "model_type": "qwen2",
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
    },
    # Explicit head_dim: 32 heads x 128 = 4096 != hidden 2560; 8 KV heads; q/k norms; tied.
    "Qwen3-4B": {
        "model_type": "qwen3",
        "hidden_size": 2560,
        "intermediate_size": 9728,
        "num_hidden_layers": 36,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
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

# Session 5 (issue 14 section 7): the new architectures above, mixing methods, checkpointing, lengths, batches and
# ranks. arch-fit is what a refit of core/vram.py may use; arch-holdout is never used for fitting. Each grid is
# ordered by architecture so each architecture's random weights are written at most once per grid.
GRID_ARCH_FIT = [
    ("Qwen2.5-7B", "qlora", 512, 4, 16, False),  # the known bad case (estimated 35.7 GiB, reserved 24.9 GiB)
    ("Qwen2.5-7B", "lora", 1024, 2, 8, True),
    ("Gemma-3-1B", "lora", 1024, 4, 16, False),
    ("Gemma-3-1B", "qlora", 256, 8, 32, True),
    ("Phi-3-mini-4k", "qlora", 2048, 2, 32, True),
    ("Phi-3-mini-4k", "lora8", 512, 4, 16, False),
    ("Llama-3.2-1B", "lora8", 1024, 4, 8, True),
    ("Llama-3.2-3B", "lora", 512, 8, 64, False),
    ("Qwen3-4B", "qlora", 1024, 4, 8, False),
]
GRID_ARCH_HOLDOUT = [
    ("Qwen2.5-7B", "qlora", 2048, 1, 64, True),
    ("Qwen2.5-7B", "lora8", 512, 2, 16, False),
    ("Gemma-3-1B", "lora8", 512, 4, 8, False),
    ("Phi-3-mini-4k", "lora", 1024, 4, 8, False),
    ("Llama-3.2-1B", "qlora", 2048, 4, 16, False),
    ("Llama-3.2-1B", "lora", 256, 8, 32, True),
    ("Llama-3.2-3B", "qlora", 512, 8, 16, True),
    ("Qwen3-4B", "lora", 2048, 2, 16, True),
    ("Qwen3-4B", "lora8", 256, 8, 64, False),
]
GRIDS = {
    "fit": GRID,
    "check": GRID_CHECK,
    "holdout": GRID_HOLDOUT,
    "8bit": GRID_8BIT,
    "arch-fit": GRID_ARCH_FIT,
    "arch-holdout": GRID_ARCH_HOLDOUT,
}
# Smoke mode (CPU test of every code path): each architecture shrunk to 2 layers, 16-wide heads and a 512-entry
# vocabulary, keeping its family, head counts, tying and fused projections.
SMOKE_HEAD_DIM = 16


def arch_spec(arch: str, smoke: bool = False) -> dict:
    """The config.json fields of ``arch`` (shrunk in smoke mode), without max_position_embeddings' default."""
    spec = dict(ARCHS[arch])
    spec.setdefault("max_position_embeddings", 8192)
    if smoke:
        heads = spec["num_attention_heads"]
        spec.update(
            hidden_size=heads * SMOKE_HEAD_DIM,
            intermediate_size=4 * SMOKE_HEAD_DIM,
            num_hidden_layers=2,
            vocab_size=512,
        )
        if "head_dim" in spec:
            spec["head_dim"] = 2 * SMOKE_HEAD_DIM  # still != hidden / heads where the real one differs
        if "query_pre_attn_scalar" in spec:
            spec["query_pre_attn_scalar"] = spec["head_dim"]
        if "pad_token_id" in spec:
            spec["pad_token_id"] = 0
    return spec


def _weights_present(folder: Path) -> bool:
    return (folder / "model.safetensors.index.json").is_file() or (folder / "model.safetensors").is_file()


def _make_room(root: Path, keep: Path, need_bytes: float) -> None:
    """Delete other architectures' saved weights under ``root`` (oldest first) until ``need_bytes`` are free: the
    new grids' random weights together (~45 GB) come close to a 64 GiB device disk. A deleted folder's weights are
    written again if a later configuration needs them."""
    others = sorted(
        (f for f in root.iterdir() if f.is_dir() and f != keep and _weights_present(f)),
        key=lambda f: f.stat().st_mtime,
    )
    while shutil.disk_usage(root).free < need_bytes and others:
        victim = others.pop(0)
        for w in list(victim.glob("*.safetensors")) + list(victim.glob("model.safetensors.index.json")):
            w.unlink()
        print(f"  freed disk: removed {victim.name}'s weights", flush=True)


def model_folder(arch: str, root: Path, with_weights: bool, smoke: bool = False) -> Path:
    """config.json for ``arch`` (and, for k-bit or from_pretrained loading, random bf16 weights saved once)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = root / (arch + ("-smoke" if smoke else ""))
    spec = arch_spec(arch, smoke)
    config = AutoConfig.for_model(spec.pop("model_type"), **spec)
    if not (folder / "config.json").is_file():
        config.save_pretrained(folder)
    if with_weights and not _weights_present(folder):
        t0 = time.time()
        device = "cuda" if torch.cuda.is_available() else "cpu"
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        need = sum(p.numel() for p in model.parameters()) * 2 * 1.05 + 2 * 2**30
        _make_room(root, folder, need)
        model.save_pretrained(folder)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
        print(f"  saved random {arch} weights in {time.time() - t0:.0f}s", flush=True)
    return folder


def make_cfg(
    folder: Path, method: str, max_length: int, batch: int, r: int, gc_on: bool, dtype: str = "bfloat16"
) -> TrainingConfig:
    """The run's TrainingConfig (alpha = 2r, default targets, AdamW, lora_dropout 0.05)."""
    return TrainingConfig(
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


def estimates(spec, cfg: TrainingConfig, method: str) -> dict:
    """The estimate both ways (product: no fp32 upcast; upcast: peft's k-bit preparation), without the CUDA context."""
    out = {}
    for key, upcast in (("", False), ("_upcast", True)):
        est = estimate_vram(spec, cfg, method, upcast_non_quantized=upcast)
        out[f"estimate{key}_gib"] = est.total_gib - est.components_gib["CUDA context"]
        out[f"components{key}_gib"] = est.components_gib
    return out


def load_prepared(
    cfg: TrainingConfig, folder: Path, method: str, targets, dtype: str, prepare: str, device: str
):
    """The PeftModel ready to train, readied per ``prepare`` (see the module docstring); returns (model, fused)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from core.engine import fused_lora_enabled
    from core.lora_fused import enable_fused_lora

    quantized = method in ("qlora", "lora8")
    fused = prepare == "product" and fused_lora_enabled()
    if quantized and prepare == "product":
        # exactly the product's loading (core.train.run_training -> load_model_for_training)
        model = load_model_for_training(
            cfg, str(folder), device, dtype, targets, attn_implementation="sdpa", fused_lora=fused
        )
        return model, fused
    if quantized:
        base = AutoModelForCausalLM.from_pretrained(
            folder,
            quantization_config=get_quantization_config(cfg),
            dtype=torch.bfloat16,
            device_map={"": device},
            attn_implementation="sdpa",
        )
    else:
        # same memory as from_pretrained of the same shape, without writing 16-bit weights to disk first
        with torch.device(device):
            base = AutoModelForCausalLM.from_config(
                AutoConfig.from_pretrained(folder), dtype=getattr(torch, dtype), attn_implementation="sdpa"
            )
    model = prepare_for_training(
        base, cfg, targets, quantized=quantized, upcast_non_quantized=prepare == "upcast"
    )
    if fused:
        enable_fused_lora(model)
    return model, fused


def _versions() -> dict:
    import peft
    import transformers

    out = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
    try:
        import bitsandbytes

        out["bitsandbytes"] = bitsandbytes.__version__
    except ImportError:
        out["bitsandbytes"] = None
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
    return out


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
    prepare: str = "product",
    smoke: bool = False,
) -> dict:
    from transformers import Trainer, TrainingArguments

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    quantized = method in ("qlora", "lora8")
    folder = model_folder(arch, root, with_weights=quantized, smoke=smoke)
    cfg = make_cfg(folder, method, max_length, batch, r, gc_on, dtype)
    spec = inspect_model(str(folder))
    targets = target_modules_for(cfg, spec)
    est = estimates(spec, cfg, method)
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t_load = time.time()
    model, fused = load_prepared(cfg, folder, method, targets, dtype, prepare, device)
    if cuda:
        torch.cuda.synchronize()
    # weights only: the base as loaded and prepared plus the LoRA A/B matrices, before any activation or state
    loaded_alloc = torch.cuda.memory_allocated() / 2**30 if cuda else 0.0
    loaded_reserved = torch.cuda.memory_reserved() / 2**30 if cuda else 0.0
    load_peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    load_s = time.time() - t_load
    lora_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    gen = torch.Generator().manual_seed(0)
    rows = [
        {"input_ids": ids, "attention_mask": [1] * max_length, "labels": ids}
        for ids in torch.randint(0, spec.vocab_size, (batch * steps, max_length), generator=gen).tolist()
    ]
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=batch,
        max_steps=steps,
        bf16=cuda and dtype == "bfloat16",
        fp16=cuda and dtype == "float16",
        use_cpu=not cuda,
        learning_rate=1e-4,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    t0 = time.time()
    Trainer(model=model, args=args, train_dataset=rows).train()
    measured = torch.cuda.max_memory_reserved() / 2**30 if cuda else 0.0
    allocated = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    train_s = time.time() - t0
    del model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    comp = est["components_gib"]
    return {
        "arch": arch,
        "method": method,
        "max_length": max_length,
        "batch": batch,
        "r": r,
        "gc": gc_on,
        "dtype": dtype,
        "prepare": prepare,
        "fused_lora": fused,
        "params_b": spec.num_params / 1e9,
        "lora_params": lora_params,
        "estimate_gib": est["estimate_gib"],
        "estimate_upcast_gib": est["estimate_upcast_gib"],
        "reserved_gib": measured,
        "allocated_gib": allocated,
        "loaded_allocated_gib": loaded_alloc,
        "loaded_reserved_gib": loaded_reserved,
        "load_peak_allocated_gib": load_peak,
        "estimate_weights_gib": comp["weights"] + comp["LoRA weights"],
        "error_pct": 100 * (est["estimate_gib"] - measured) / measured if measured else None,
        "error_upcast_pct": 100 * (est["estimate_upcast_gib"] - measured) / measured if measured else None,
        "components_gib": comp,
        "components_upcast_gib": est["components_upcast_gib"],
        "load_s": load_s,
        "train_s": train_s,
        "versions": _versions(),
    }


def dry_run(grid: list, root: Path, only: list | None) -> None:
    """Print the grid and both estimates from config.json alone (no weights, any machine)."""
    print(
        "| model | params B | method | max_length | batch | r | ckpt | targets | estimate GiB | upcast GiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for arch, method, max_length, batch, r, gc_on, *rest in grid:
        if only and arch not in only:
            continue
        folder = model_folder(arch, root, with_weights=False)
        cfg = make_cfg(folder, method, max_length, batch, r, gc_on, rest[0] if rest else "bfloat16")
        spec = inspect_model(str(folder))
        est = estimates(spec, cfg, method)
        print(
            f"| {arch} | {spec.num_params / 1e9:.2f} | {method} | {max_length} | {batch} | {r} "
            f"| {'on' if gc_on else 'off'} | {','.join(target_modules_for(cfg, spec))} "
            f"| {est['estimate_gib']:.2f} | {est['estimate_upcast_gib']:.2f} |",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--only", nargs="*", default=None, help="architectures to run (default: all)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--root", default="/tmp/vram-models")
    p.add_argument(
        "--grid",
        choices=list(GRIDS),
        default="check",
        help="fit: the grid v3 was fitted on; check, holdout, 8bit: v3/v4's checks; arch-fit: new architectures a "
        "refit may use; arch-holdout: new architectures never used for fitting",
    )
    p.add_argument(
        "--prepare",
        choices=["product", "upcast", "unfused"],
        default="product",
        help="product (default): as core.model.load_model_for_training with the fused LoRA branch; upcast: peft's "
        "prepare_model_for_kbit_training (the v3/v4 calibration path); unfused: product without the fused branch",
    )
    p.add_argument("--json", default=None)
    p.add_argument("--dry-run", action="store_true", help="print the grid and the estimates; no GPU needed")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="CPU test of the code paths: each architecture shrunk to 2 layers and a 512-entry vocabulary",
    )
    a = p.parse_args()
    root = Path(a.root)
    root.mkdir(parents=True, exist_ok=True)
    grid = GRIDS[a.grid]
    if a.dry_run:
        dry_run(grid, root, a.only)
        return
    assert torch.cuda.is_available() or a.smoke, "needs a CUDA GPU (or --dry-run / --smoke)"
    print(json.dumps({"grid": a.grid, "prepare": a.prepare, **_versions()}), flush=True)
    results = []
    for arch, method, max_length, batch, r, gc_on, *rest in grid:
        if a.only and arch not in a.only:
            continue
        dtype = rest[0] if rest else "bfloat16"
        try:
            row = measure(
                arch, method, max_length, batch, r, gc_on, root, a.steps, dtype, a.prepare, smoke=a.smoke
            )
        except torch.cuda.OutOfMemoryError as exc:
            row = {
                "arch": arch,
                "method": method,
                "max_length": max_length,
                "batch": batch,
                "r": r,
                "gc": gc_on,
                "prepare": a.prepare,
                "error": f"OOM: {exc}"[:200],
            }
            gc.collect()
            torch.cuda.empty_cache()
        except Exception as exc:  # one architecture's failure must not lose the rest of the grid
            import traceback

            traceback.print_exc()
            row = {
                "arch": arch,
                "method": method,
                "max_length": max_length,
                "batch": batch,
                "r": r,
                "gc": gc_on,
                "prepare": a.prepare,
                "error": f"{type(exc).__name__}: {exc}"[:300],
            }
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        results.append(row)
        print(
            json.dumps(
                {
                    k: v
                    for k, v in row.items()
                    if k not in ("components_gib", "components_upcast_gib", "versions")
                }
            ),
            flush=True,
        )
        if a.json:
            Path(a.json).write_text(json.dumps(results, indent=2))
    ok = [r for r in results if r.get("error_pct") is not None]
    if torch.cuda.is_available():
        print(f"\n{torch.cuda.get_device_name()} | torch {torch.__version__}")
    print(
        "| model | method | dtype | max_length | batch | r | ckpt | estimate GiB | upcast est. GiB | weights est. GiB "
        "| loaded GiB | allocated GiB | reserved GiB | error | upcast error |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in ok:
        print(
            f"| {r['arch']} | {r['method']} | {r['dtype']} | {r['max_length']} | {r['batch']} | {r['r']} "
            f"| {'on' if r['gc'] else 'off'} "
            f"| {r['estimate_gib']:.2f} | {r['estimate_upcast_gib']:.2f} | {r['estimate_weights_gib']:.2f} "
            f"| {r['loaded_allocated_gib']:.2f} | {r['allocated_gib']:.2f} | {r['reserved_gib']:.2f} "
            f"| {r['error_pct']:+.1f}% | {r['error_upcast_pct']:+.1f}% |"
        )
    for key in ("error_pct", "error_upcast_pct"):
        if ok:
            errors = [abs(r[key]) for r in ok]
            under = min(r[key] for r in ok)
            print(
                f"{key}: median |error| {statistics.median(errors):.1f}%, worst {max(errors):.1f}%, most under "
                f"{under:+.1f}% (goal: median <= 7%, worst <= 15%, never under by more than 10%)"
            )


if __name__ == "__main__":
    main()
