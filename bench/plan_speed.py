"""Step-time cost table for the planner (issue 14 section 1): what checkpointing, a 4-bit or 8-bit base, the
micro-batch size and the optimizer cost per optimizer step, measured on one GPU.

One Llama-2-7B-shaped model (random bf16 weights) per method, loaded the way the product loads it
(core.model.load_model_for_training with SDPA attention and the fused LoRA branch; LoRA r 16, alpha 32, dropout
0.05 on all 7 projections), trained on uniform rows of random tokens without padding. For each method x gradient
checkpointing (off, on) x micro-batch rows x max_length, CUDA events time forward + backward of one micro-batch
under autocast bf16 (as the Trainer runs it): 2 warm-ups, then the median of 3. One optimizer step on the LoRA
parameters (torch AdamW vs bitsandbytes' paged 8-bit AdamW, the Trainer's "adamw_torch" and "paged_adamw_8bit") and
the gradient clipping are timed after a backward. Cells that run out of memory are recorded as OOM.

This is a cost table, not an ours-vs-baseline comparison: each method is loaded once in this process (memory freed
between methods) and checkpointing is switched on the loaded model the way prepare_for_training switches it.

Prints ms per 1k tokens per cell and the ratios the planner needs (checkpointing on/off per method, qlora/lora,
lora8/lora, efficiency against tokens per micro-batch, optimizer step ms); writes JSON after every cell.

    python bench/plan_speed.py --json speed.json
    python bench/plan_speed.py --dry-run                       # the cells and configs, no GPU
    python bench/plan_speed.py --device cpu --arch SmolLM2-135M --max-length 32 --long-length 64   # CPU smoke
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
sys.path.insert(0, str(ROOT / "bench"))

from vram_accuracy import _versions, model_folder  # noqa: E402

from core.config import TrainingConfig  # noqa: E402
from core.model import inspect_model, load_model_for_training  # noqa: E402

METHODS = ("lora", "qlora", "lora8")
# the 2048-token rows: not for the 8-bit base (its cost shows at 512 already)
LONG_METHODS = ("lora", "qlora")


def make_cfg(folder: Path, method: str, checkpointing: bool, max_length: int) -> TrainingConfig:
    """The recipe of the cost table: LoRA r 16 alpha 32 dropout 0.05, bf16, NF4 + double quant for QLoRA."""
    return TrainingConfig(
        model_name_or_path=str(folder),
        load_in_4bit=method == "qlora",
        load_in_8bit=method == "lora8",
        lora_r=16,
        lora_alpha=32,
        lora_dropout=0.05,
        max_length=max_length,
        per_device_train_batch_size=1,
        gradient_checkpointing=checkpointing,
        dtype="bfloat16",
        monitor_rows=0,
    )


def cells(method: str, batches: list[int], long_batches: list[int], length: int, long_length: int) -> list:
    """(checkpointing, rows, max_length) in the order they are timed: all of checkpointing off, then on."""
    out = []
    for ckpt in (False, True):
        out += [(ckpt, b, length) for b in batches]
        if method in LONG_METHODS:
            out += [(ckpt, b, long_length) for b in long_batches]
    return out


def set_checkpointing(model, on: bool) -> None:
    """Switch gradient checkpointing on the loaded PeftModel as core.model.prepare_for_training sets it (non-
    reentrant checkpoint of each decoder layer, inputs that require grad), or off as a run without it has it."""
    base = model.base_model.model
    if on:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    else:
        base.gradient_checkpointing_disable()
        base.disable_input_require_grads()
    model.train()


def checkpointing_active(model) -> bool:
    """Whether the inner transformers model has gradient checkpointing on (no reference to it is kept: a kept
    reference held the previous method's model on the GPU in session 5's first run)."""
    base = model.base_model.model
    return bool(getattr(base, "is_activation_checkpointing", None) or base.is_gradient_checkpointing)


class Timer:
    """CUDA events on a GPU (no host sync inside the timed region), perf_counter on the CPU."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda

    def __enter__(self) -> Timer:
        if self.cuda:
            self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            self.end.record()
        else:
            self.t1 = time.perf_counter()

    def ms(self) -> float:
        if self.cuda:
            self.end.synchronize()
            return self.start.elapsed_time(self.end)
        return (self.t1 - self.t0) * 1e3


def fwd_bwd(model, ids: torch.Tensor, device: str) -> None:
    """One micro-batch: forward under autocast bf16 (as the Trainer runs it) and backward; grads accumulate."""
    with torch.autocast(device, dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()


def time_cell(
    model, rows: int, length: int, vocab: int, device: str, warm: int, reps: int, slow_ms: float
) -> dict:
    """Median ms of forward + backward of a (rows, length) micro-batch; fewer repeats when one takes > slow_ms."""
    cuda = device == "cuda"
    gen = torch.Generator().manual_seed(rows * 100_003 + length)
    ids = torch.randint(0, vocab, (rows, length), generator=gen).to(device)
    model.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times: list[float] = []
    i = 0
    while i < warm + reps:
        with Timer(cuda) as t:
            fwd_bwd(model, ids, device)
        model.zero_grad(set_to_none=True)
        ms = t.ms()
        if i == 0 and ms > slow_ms:  # a slow cell (8-bit base): one warm-up and two repeats are enough
            warm, reps = 1, 2
        if i >= warm:
            times.append(ms)
        i += 1
    med = statistics.median(times)
    tokens = rows * length
    return {
        "ms": med,
        "spread_ms": max(times) - min(times),
        "times_ms": times,
        "tokens": tokens,
        "ms_per_1k_tokens": med / tokens * 1e3,
        "tokens_per_s": tokens / med * 1e3,
        "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if cuda else None,
    }


def time_optimizers(model, vocab: int, length: int, device: str, steps: int = 5) -> dict:
    """One optimizer step on the LoRA parameters after a backward: torch AdamW (the Trainer's adamw_torch: foreach)
    and bitsandbytes' AdamW(optim_bits=8, is_paged=True) (paged_adamw_8bit), plus clip_grad_norm_(1.0) (the
    Trainer's max_grad_norm). Median of ``steps`` after 2 warm-ups (the first step allocates the states)."""
    cuda = device == "cuda"
    params = [p for p in model.parameters() if p.requires_grad]
    ids = torch.randint(0, vocab, (1, length), generator=torch.Generator().manual_seed(7)).to(device)
    model.zero_grad(set_to_none=True)
    fwd_bwd(model, ids, device)
    out: dict = {"lora_params": sum(p.numel() for p in params)}
    makers = {"adamw_torch": lambda: torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)}
    if cuda:
        import bitsandbytes as bnb

        makers["paged_adamw_8bit"] = lambda: bnb.optim.AdamW(
            params, lr=2e-4, weight_decay=0.0, optim_bits=8, is_paged=True
        )
    for name, make in makers.items():
        opt = make()
        times = []
        for i in range(2 + steps):
            with Timer(cuda) as t:
                opt.step()
            ms = t.ms()
            if i >= 2:
                times.append(ms)
        out[f"{name}_ms"] = statistics.median(times)
        del opt
        gc.collect()
    times = []
    for i in range(2 + steps):
        with Timer(cuda) as t:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        if i >= 2:
            times.append(t.ms())
    out["clip_grad_norm_ms"] = statistics.median(times)
    model.zero_grad(set_to_none=True)
    return out


def derive(rows: list[dict]) -> dict:
    """The planner's factors from the measured cells (medians over matching cells)."""
    ok = {(r["method"], r["ckpt"], r["batch"], r["max_length"]): r for r in rows if r.get("status") == "ok"}
    out: dict = {"ckpt_factor": {}, "vs_lora": {}, "efficiency": {}}
    for method in METHODS:
        pairs = [
            ok[(m, True, b, L)]["ms"] / ok[(m, False, b, L)]["ms"]
            for (m, ck, b, L) in ok
            if m == method and not ck and (m, True, b, L) in ok
        ]
        if pairs:
            out["ckpt_factor"][method] = {
                "median": statistics.median(pairs),
                "min": min(pairs),
                "max": max(pairs),
            }
    for method in ("qlora", "lora8"):
        for ckpt in (False, True):
            pairs = [
                ok[(method, ck, b, L)]["ms"] / ok[("lora", ck, b, L)]["ms"]
                for (m, ck, b, L) in ok
                if m == method and ck == ckpt and ("lora", ck, b, L) in ok
            ]
            if pairs:
                out["vs_lora"][f"{method}/lora ckpt {'on' if ckpt else 'off'}"] = {
                    "median": statistics.median(pairs),
                    "min": min(pairs),
                    "max": max(pairs),
                }
    for method in METHODS:
        for ckpt in (False, True):
            mine = [r for (m, ck, _, _), r in ok.items() if m == method and ck == ckpt]
            if not mine:
                continue
            best = min(r["ms_per_1k_tokens"] for r in mine)
            out["efficiency"][f"{method} ckpt {'on' if ckpt else 'off'}"] = {
                f"{r['batch']}x{r['max_length']} ({r['tokens']} tokens)": best / r["ms_per_1k_tokens"]
                for r in sorted(mine, key=lambda r: (r["tokens"], r["max_length"]))
            }
    return out


def print_tables(rows: list[dict], derived: dict, optim: dict) -> None:
    print(
        "\n| method | ckpt | rows x max_length | tokens | ms / micro-batch (spread) | ms per 1k tokens | tokens/s "
        "| peak alloc GiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        cell = f"| {r['method']} | {'on' if r['ckpt'] else 'off'} | {r['batch']} x {r['max_length']} "
        if r.get("status") != "ok":
            print(cell + f"| {r['batch'] * r['max_length']} | {r.get('status')} | | | |")
            continue
        alloc = "" if r["peak_allocated_gib"] is None else f"{r['peak_allocated_gib']:.2f}"
        print(
            cell + f"| {r['tokens']} | {r['ms']:.1f} (±{r['spread_ms']:.1f}) | {r['ms_per_1k_tokens']:.1f} "
            f"| {r['tokens_per_s']:,.0f} | {alloc} |"
        )
    print("\nCheckpointing on / off (same cell):")
    for m, v in derived["ckpt_factor"].items():
        print(f"  {m}: median {v['median']:.3f} (range {v['min']:.3f}-{v['max']:.3f})")
    print("Base cost vs LoRA on a bf16 base (same cell):")
    for k, v in derived["vs_lora"].items():
        print(f"  {k}: median {v['median']:.3f} (range {v['min']:.3f}-{v['max']:.3f})")
    print("Efficiency (best ms per 1k tokens / this cell's):")
    for k, v in derived["efficiency"].items():
        print(f"  {k}: " + ", ".join(f"{c} {e:.2f}" for c, e in v.items()))
    for method, o in optim.items():
        print(
            f"Optimizer step ({method} loaded, {o.get('lora_params', 0):,} LoRA parameters): "
            + ", ".join(f"{k[:-3]} {v:.2f} ms" for k, v in o.items() if k.endswith("_ms"))
        )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="Llama-2-7B", help="an architecture of bench/vram_accuracy.py's ARCHS")
    p.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    p.add_argument("--batches", nargs="*", type=int, default=[1, 2, 4, 8])
    p.add_argument("--long-batches", nargs="*", type=int, default=[1, 2])
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--long-length", type=int, default=2048)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--slow-ms", type=float, default=2500.0, help="a first warm-up slower than this: 1 + 2 runs"
    )
    p.add_argument(
        "--method-budget-s", type=float, default=150.0, help="skip a method's remaining cells after this"
    )
    p.add_argument("--root", default="/tmp/vram-models")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--json", default=None)
    p.add_argument("--dry-run", action="store_true", help="print the cells and the configs; no GPU needed")
    a = p.parse_args()
    root = Path(a.root)
    root.mkdir(parents=True, exist_ok=True)
    if a.dry_run:
        folder = model_folder(a.arch, root, with_weights=False)
        spec = inspect_model(str(folder))
        print(f"{a.arch}: {spec.num_params / 1e9:.2f} B parameters, targets {spec.linear_names}")
        for method in a.methods:
            cfg = make_cfg(folder, method, True, a.max_length)
            print(
                f"{method}: load_in_4bit={cfg.load_in_4bit} load_in_8bit={cfg.load_in_8bit} r={cfg.lora_r} "
                f"alpha={cfg.lora_alpha} dropout={cfg.lora_dropout} LoRA params {spec.lora_params(16, spec.linear_names):,}"
            )
            for ck, b, L in cells(method, a.batches, a.long_batches, a.max_length, a.long_length):
                print(f"  ckpt {'on ' if ck else 'off'} {b} x {L} = {b * L} tokens")
        return
    assert a.device == "cpu" or torch.cuda.is_available(), "needs a CUDA GPU (or --device cpu / --dry-run)"
    print(json.dumps({"arch": a.arch, **_versions()}), flush=True)
    t_all = time.time()
    folder = model_folder(a.arch, root, with_weights=True)
    spec = inspect_model(str(folder))
    rows: list[dict] = []
    optim: dict = {}
    result: dict = {"arch": a.arch, "versions": _versions(), "cells": rows, "optimizer": optim}

    def save() -> None:
        result["derived"] = derive(rows)
        if a.json:
            Path(a.json).write_text(json.dumps(result, indent=1))

    for method in a.methods:
        gc.collect()  # the previous method's model (peft holds reference cycles) is gone before the next loads
        if a.device == "cuda":
            torch.cuda.empty_cache()
        t0 = time.time()
        cfg = make_cfg(folder, method, False, a.max_length)
        torch.manual_seed(0)
        model = load_model_for_training(
            cfg,
            str(folder),
            a.device,
            "bfloat16",
            tuple(spec.linear_names),
            attn_implementation="sdpa",
            fused_lora=True,
        )
        model.train()
        with torch.no_grad():  # B non-zero, as after some training
            for n, prm in model.named_parameters():
                if "lora_B" in n:
                    prm.normal_(0, 1e-3)
        loaded = torch.cuda.memory_allocated() / 2**30 if a.device == "cuda" else None
        print(f"{method}: loaded in {time.time() - t0:.0f}s, {loaded} GiB allocated", flush=True)
        ckpt_now = False
        for ckpt, b, L in cells(method, a.batches, a.long_batches, a.max_length, a.long_length):
            row = {"method": method, "ckpt": ckpt, "batch": b, "max_length": L}
            if time.time() - t0 > a.method_budget_s:
                row["status"] = "skipped (time budget)"
                rows.append(row)
                continue
            if ckpt != ckpt_now:
                set_checkpointing(model, ckpt)
                ckpt_now = ckpt
            try:
                row.update(time_cell(model, b, L, spec.vocab_size, a.device, a.warmup, a.repeats, a.slow_ms))
                row["ckpt_active"] = checkpointing_active(model)
                row["status"] = "ok"
            except torch.cuda.OutOfMemoryError as exc:
                row["status"] = "OOM"
                row["error"] = str(exc)[:200]
                model.zero_grad(set_to_none=True)
                gc.collect()
                torch.cuda.empty_cache()
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "times_ms"}), flush=True)
            save()
        try:
            optim[method] = time_optimizers(model, spec.vocab_size, a.max_length, a.device)
            print(f"{method} optimizer: {optim[method]}", flush=True)
        except Exception as exc:  # the cost table matters more than this line
            optim[method] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            print(f"{method} optimizer failed: {exc}", flush=True)
        save()
        del model
        gc.collect()
        if a.device == "cuda":
            torch.cuda.empty_cache()
        print(f"{method}: done in {time.time() - t0:.0f}s", flush=True)
    save()
    print_tables(rows, result["derived"], optim)
    print(f"total {time.time() - t_all:.0f}s", flush=True)


if __name__ == "__main__":
    main()
