"""Training throughput: the seed chapter's recipe (baseline) vs LoRA Studio's engine, same model, same data, one run.

Baseline (seed 26.7.3-26.7.4): peft's prepare_model_for_kbit_training (fp32 norms/embeddings, gradient
checkpointing), micro-batch 4 x 4 accumulation, each micro-batch padded to its longest row, PyTorch SDPA.
Ours: core.engine.plan_engine + core.model.load_model_for_training + core.train.training_arguments, i.e. the
product's code path: padding-free packing, varlen flash attention on CUDA, Liger-Kernel when installed, 16-bit
norms, micro-batch sized from the memory estimate and the data's lengths. Both: 16 rows per optimizer step, the
same rows in the same order (same seed), gradient checkpointing on, LoRA r=16 alpha 32 on all linear layers.

Regimes: A = every row exactly 2048 tokens; B = chat-like lengths (log-normal, median 350, clipped to 32..2048).
Prints real (non-padding) tokens/s, peak allocated / reserved memory, the per-step losses of both sides (they
must agree: same rows, same weights) and the ratios.

    python bench/throughput.py --device cuda --arch Llama-2-7B --method qlora --regimes A B [--steps 20]
    python bench/throughput.py --device cpu --arch embedded --method lora --regimes B --steps 6
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from transformers import Trainer, TrainerCallback  # noqa: E402

from core.config import TrainingConfig  # noqa: E402
from core.engine import make_collator, plan_engine, studio_trainer  # noqa: E402
from core.model import (  # noqa: E402
    embedded_model_path,
    get_quantization_config,
    inspect_model,
    load_model_for_training,
    load_tokenizer,
    prepare_for_training,
)
from core.train import training_arguments  # noqa: E402

WARMUP = 3  # optimizer steps left out of tokens/s (kernel selection, allocator growth, compile)
ROWS_PER_STEP = 16


class _PadWithZero:
    """Stand-in tokenizer for DataCollatorForSeq2Seq when the model folder has no tokenizer files: pads input ids
    with 0 (masked by attention 0 and labels -100) through transformers' own padding code."""

    pad_token_id = 0
    padding_side = "right"
    model_input_names = ["input_ids", "attention_mask"]

    def pad(self, features, padding=True, max_length=None, pad_to_multiple_of=None, return_tensors=None, **_):
        n = max(len(f["input_ids"]) for f in features)
        out = {
            "input_ids": [f["input_ids"] + [0] * (n - len(f["input_ids"])) for f in features],
            "attention_mask": [[1] * len(f["input_ids"]) + [0] * (n - len(f["input_ids"])) for f in features],
        }
        if "labels" in features[0]:
            out["labels"] = [f["labels"] for f in features]
        return {k: torch.tensor(v) for k, v in out.items()}


class TokenClock(TrainerCallback):
    """Counts real tokens (labels-bearing, non-padding input ids) per optimizer step and its wall time."""

    def __init__(self) -> None:
        self.tokens = 0
        self.marks: list[tuple[float, int]] = []

    def on_step_end(self, args, state, control, **kwargs):
        # synchronise only at the two marks rate() reads: a sync every step would idle the GPU while the host
        # prepares the next step, a cost the product does not have
        if torch.cuda.is_available() and state.global_step in (WARMUP, state.max_steps):
            torch.cuda.synchronize()
        self.marks.append((time.perf_counter(), self.tokens))

    def rate(self) -> float:
        (t0, n0), (t1, n1) = self.marks[WARMUP - 1], self.marks[-1]
        return (n1 - n0) / (t1 - t0)


class CountingCollator:
    """Wraps a collator and adds the real tokens of each micro-batch to a TokenClock."""

    def __init__(self, inner, clock: TokenClock):
        self.inner, self.clock = inner, clock

    def __call__(self, features):
        self.clock.tokens += sum(len(f["input_ids"]) for f in features)
        return self.inner(features)


def make_rows(regime: str, n: int, vocab: int, seed: int, max_length: int = 2048) -> list[dict]:
    """n rows of random token ids (labels = inputs): A = max_length tokens each, B = log-normal(median 350,
    sigma 0.8) clipped to 32..max_length."""
    g = torch.Generator().manual_seed(seed)
    if regime == "A":
        lengths = [max_length] * n
    else:
        normal = torch.randn(n, generator=g) * 0.8 + math.log(350)
        lengths = [int(min(max_length, max(32, round(math.exp(x))))) for x in normal.tolist()]
    rows = []
    for length in lengths:
        ids = torch.randint(3, vocab, (length,), generator=g).tolist()
        rows.append({"input_ids": ids, "attention_mask": [1] * length, "labels": ids})
    return rows


def model_dir(arch: str, root: Path, device: str) -> Path:
    if arch == "embedded":
        return embedded_model_path()
    from vram_accuracy import model_folder

    return model_folder(arch, root, with_weights=True)


def run_side(
    side: str,
    cfg: TrainingConfig,
    folder: Path,
    rows: list[dict],
    device: str,
    steps: int,
    args_overrides: dict | None = None,
    extra_callbacks: list | None = None,
) -> dict:
    """Train ``steps`` optimizer steps with one side's recipe; returns tokens/s, memory and losses.
    ``args_overrides`` (TrainingArguments fields) and ``extra_callbacks`` serve diagnostics (bench/trainer_step.py)."""
    has_cuda = device == "cuda"
    spec = inspect_model(str(folder))
    targets = spec.linear_names
    tok = load_tokenizer(str(folder)) if (folder / "tokenizer_config.json").is_file() else None
    dtype = "bfloat16" if has_cuda else "float32"
    gc.collect()
    if has_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    quantized = cfg.load_in_4bit
    if side == "baseline":
        from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq

        kwargs: dict = {
            "dtype": getattr(torch, dtype),
            "device_map": {"": device},
            "attn_implementation": "sdpa",
        }
        if quantized:
            kwargs["quantization_config"] = get_quantization_config(cfg)
        base = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
        model = prepare_for_training(base, cfg, targets, quantized=quantized, upcast_non_quantized=True)
        plan = plan_engine(
            cfg.replace(
                packing=False,
                use_liger_kernel=False,
                auto_micro_batch=False,
                attn_implementation="sdpa",
            ),
            spec,
            has_cuda,
            None,
        )
        plan = dataclasses.replace(  # the recipe: peft's own LoRA forward
            plan, fused_lora=False, notes=tuple(n for n in plan.notes if not n.startswith("LoRA branch"))
        )
        collator = DataCollatorForSeq2Seq(
            tok if tok is not None else _PadWithZero(), padding=True, label_pad_token_id=-100
        )
    else:
        gpu_gib = torch.cuda.get_device_properties(0).total_memory / 2**30 if has_cuda else None
        plan = plan_engine(cfg, spec, has_cuda, gpu_gib, [len(r["input_ids"]) for r in rows])
        cfg = plan.apply(cfg)
        model = load_model_for_training(
            cfg, str(folder), device, dtype, targets, plan.attn_implementation, fused_lora=plan.fused_lora
        )
        collator = make_collator(tok, plan.packing, has_cuda)
    load_peak = torch.cuda.max_memory_allocated() / 2**30 if has_cuda else 0.0
    clock = TokenClock()
    args = training_arguments(cfg, plan, Path(f"/tmp/bench-{side}"), has_cuda, dtype, False, steps)
    args.save_strategy = "no"
    args.disable_tqdm = True
    args.logging_steps = 1
    if side == "baseline":  # the recipe's TrainingArguments defaults: NaN filter on, no token counting
        args.logging_nan_inf_filter = True
        args.include_num_input_tokens_seen = "no"
    for key, value in (args_overrides or {}).items():
        setattr(args, key, value)
    trainer = (Trainer if side == "baseline" else studio_trainer)(
        model=model,
        args=args,
        train_dataset=rows,
        data_collator=CountingCollator(collator, clock),
        callbacks=[clock, *(extra_callbacks or [])],
    )
    t0 = time.time()
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    out = {
        "side": side,
        "engine": list(plan.notes),
        "micro_batch": cfg.per_device_train_batch_size,
        "accumulation": cfg.gradient_accumulation_steps,
        "tokens_per_s": clock.rate(),
        "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if has_cuda else None,
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if has_cuda else None,
        "load_peak_gib": load_peak,
        "losses": losses,
        "wall_s": time.time() - t0,
    }
    del trainer, model
    gc.collect()
    if has_cuda:
        torch.cuda.empty_cache()
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument(
        "--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    p.add_argument("--arch", default="Llama-2-7B", help="a bench/vram_accuracy.py ARCHS name, or 'embedded'")
    p.add_argument("--method", choices=["qlora", "lora"], default="qlora")
    p.add_argument("--regimes", nargs="+", default=["A", "B"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=1, help="baseline/ours pairs per regime (ABBA order)")
    p.add_argument("--root", default="/tmp/vram-models")
    p.add_argument("--rows-per-step", type=int, default=ROWS_PER_STEP)
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--micro-batch", type=int, default=4, help="the baseline's per_device_train_batch_size")
    p.add_argument(
        "--ours-micro-batch",
        type=int,
        nargs="*",
        default=[],
        help="also run ours at these fixed micro-batches",
    )
    p.add_argument("--json", default=None)
    a = p.parse_args()
    if a.device == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
    folder = model_dir(a.arch, Path(a.root), a.device)
    spec = inspect_model(str(folder))
    results = []
    for regime in a.regimes:
        rows = make_rows(regime, a.rows_per_step * a.steps, min(spec.vocab_size, 32000), 0, a.max_length)
        cfg = TrainingConfig(
            model_name_or_path=str(folder),
            load_in_4bit=a.method == "qlora",
            lora_r=16,
            lora_alpha=32,
            lora_target_modules=tuple(spec.linear_names),
            max_length=a.max_length,
            per_device_train_batch_size=a.micro_batch,
            gradient_accumulation_steps=a.rows_per_step // a.micro_batch,
            gradient_checkpointing=True,
            max_steps=a.steps,
            learning_rate=2e-4,
            monitor_rows=0,
            save_steps=0,
            seed=0,
        )
        order = (
            ["baseline", "ours", "ours", "baseline"] * a.repeats if a.repeats > 1 else ["baseline", "ours"]
        )
        sides: dict[str, list[dict]] = {"baseline": [], "ours": []}
        for side in order:
            r = run_side(side, cfg, folder, rows, a.device, a.steps)
            r["regime"] = regime
            sides[side].append(r)
            results.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "losses"}), flush=True)
        for k in a.ours_micro_batch:  # the sizing's alternatives, for the record
            fixed = cfg.replace(
                auto_micro_batch=False,
                per_device_train_batch_size=k,
                gradient_accumulation_steps=a.rows_per_step // k,
            )
            r = run_side("ours", fixed, folder, rows, a.device, a.steps)
            r["regime"], r["forced_micro_batch"] = regime, k
            results.append(r)
            base_alloc = sides["baseline"][0]["peak_allocated_gib"]
            print(
                f"ours at micro-batch {k} x {a.rows_per_step // k}: {r['tokens_per_s']:,.0f} tokens/s "
                f"({r['tokens_per_s'] / sides['baseline'][0]['tokens_per_s']:.2f}x), peak allocated "
                f"{r['peak_allocated_gib'] or 0:.2f} GiB"
                + (f" ({r['peak_allocated_gib'] / base_alloc:.2f}x)" if base_alloc else ""),
                flush=True,
            )
        base, ours = sides["baseline"], sides["ours"]
        rate_b = statistics.median(r["tokens_per_s"] for r in base)
        rate_o = statistics.median(r["tokens_per_s"] for r in ours)
        diffs = [abs(x - y) / max(abs(x), 1e-9) for x, y in zip(base[0]["losses"], ours[0]["losses"])]
        print(f"\n## {a.arch} {a.method} regime {regime} on {a.device}")
        print(
            "| side | micro-batch | real tokens/s | peak allocated GiB | peak reserved GiB | first / last loss |"
        )
        print("|---|---|---|---|---|---|")
        for r in (base[0], ours[0]):
            mem = (
                f"{r['peak_allocated_gib']:.2f} | {r['peak_reserved_gib']:.2f}"
                if r["peak_allocated_gib"] is not None
                else "- | -"
            )
            print(
                f"| {r['side']} | {r['micro_batch']} x {r['accumulation']} | "
                f"{statistics.median(x['tokens_per_s'] for x in sides[r['side']]):,.0f} | {mem} | "
                f"{r['losses'][0]:.4f} / {r['losses'][-1]:.4f} |"
            )
        mem_ratio = (
            f"{ours[0]['peak_allocated_gib'] / base[0]['peak_allocated_gib']:.2f}"
            if base[0]["peak_allocated_gib"]
            else "n/a"
        )
        print(
            f"ratio ours/baseline: tokens/s {rate_o / rate_b:.2f}x, peak allocated {mem_ratio}x; "
            f"per-step loss |rel diff| first step {diffs[0]:.2e}, median {statistics.median(diffs):.2e}, "
            f"max {max(diffs):.2e}"
        )
        print("ours:", "; ".join(ours[0]["engine"]))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
