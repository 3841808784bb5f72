"""Where a training micro-batch's time goes: one model loaded once, forward + backward timed per variant in process.

The product's model (core.model.load_model_for_training + Liger through transformers' apply_liger_kernel, as the
Trainer applies it), autocast bf16 as the Trainer runs it, CUDA events around each micro-batch after warm-up.
Variants switch one thing at a time in place (LoRA branch fused or peft's; attention varlen or SDPA; micro-batch
size; dropout off as a diagnostic only; some layers without checkpointing), and one micro-batch is profiled with
torch.profiler, kernels summed by kind. Prints one line per variant and writes JSON.

    python bench/profile_step.py --arch Llama-2-7B --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from throughput import _PadWithZero, make_rows, model_dir  # noqa: E402

from core.config import TrainingConfig  # noqa: E402
from core.engine import make_collator, plan_engine  # noqa: E402
from core.lora_fused import disable_fused_lora, enable_fused_lora  # noqa: E402
from core.model import inspect_model, load_model_for_training  # noqa: E402

KINDS = (
    ("attention", ("flash", "fmha", "attn", "cudnn")),
    ("dequant", ("dequant", "kdequant")),
    ("gemm", ("gemm", "sm90_xmma", "cutlass", "nvjet", "ampere", "sm80")),
    ("dropout", ("dropout", "masked_scale")),
    ("liger", ("_rms_norm", "_swiglu", "_triton_rope", "liger", "cross_entropy", "fused_linear")),
    (
        "elementwise",
        ("elementwise", "vectorized", "unrolled", "reduce", "copy", "fill", "cat", "index", "memcpy"),
    ),
)  # call 1's log predates this order: its "liger" row also counted elementwise and dropout kernels


def kind_of(name: str) -> str:
    low = name.lower()
    for kind, keys in KINDS:
        if any(k in low for k in keys):
            return kind
    return "other"


def collate(rows: list[dict], mb: int, packed: bool) -> list[dict]:
    from transformers import DataCollatorForSeq2Seq

    coll = (
        make_collator(None, True, True)
        if packed
        else DataCollatorForSeq2Seq(_PadWithZero(), padding=True, label_pad_token_id=-100)
    )
    out = []
    for i in range(0, len(rows), mb):
        b = coll(rows[i : i + mb])
        out.append({k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in b.items()})
    return out


def step(model, batch) -> float:
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(**batch).loss
    loss.backward()
    return float(loss.detach())


def time_variant(name: str, model, batches: list[dict], warm: int = 2, reps: int = 4) -> dict:
    tokens = int(sum(int((b["labels"] != -100).sum()) + b["labels"].shape[0] for b in batches[:1]))
    real = sum(int(b["input_ids"].numel()) for b in batches[:1])
    if "attention_mask" in batches[0]:
        real = int(batches[0]["attention_mask"].sum())
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times, losses, counted = [], [], 0
    for i in range(warm + reps):
        b = batches[i % len(batches)]
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        losses.append(step(model, b))
        end.record()
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= warm:
            times.append(start.elapsed_time(end) / 1e3)
            counted += (
                int(b["attention_mask"].sum()) if "attention_mask" in b else int(b["input_ids"].numel())
            )
    med = statistics.median(times)
    r = {
        "variant": name,
        "ms_per_microbatch": med * 1e3,
        "spread_ms": (max(times) - min(times)) * 1e3,
        "real_tokens": real,
        "tokens_per_s": counted / sum(times),
        "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
        "first_loss": losses[0],
        "_tokens": tokens,
    }
    print(
        f"{name:48s} {r['ms_per_microbatch']:8.1f} ms (±{r['spread_ms']:.0f})  {r['tokens_per_s']:9,.0f} tok/s  "
        f"alloc {r['peak_allocated_gib']:6.2f}  reserved {r['peak_reserved_gib']:6.2f}  loss {losses[0]:.5f}",
        flush=True,
    )
    return r


def profile(model, batch, label: str) -> dict:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    step(model, batch)
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    with tprofile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        step(model, batch)
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
    kinds: dict[str, float] = {}
    rows = []
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if e.device_type.name != "CUDA" or t <= 0:
            continue
        kinds[kind_of(e.key)] = kinds.get(kind_of(e.key), 0.0) + t / 1e3
        rows.append((t / 1e3, e.count, e.key[:110]))
    rows.sort(reverse=True)
    total = sum(kinds.values())
    print(f"\n# profile {label}: GPU kernel time {total:.1f} ms")
    for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {k:12s} {v:8.1f} ms  {100 * v / total:5.1f}%")
    for t, n, key in rows[:28]:
        print(f"  {t:8.1f} ms  x{n:<5d} {key}")
    return {"label": label, "kinds_ms": kinds, "top": rows[:60]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="Llama-2-7B")
    p.add_argument("--root", default="/tmp/vram-models")
    p.add_argument("--json", default=None)
    p.add_argument("--quick", action="store_true", help="only the engine's default (fused) A and B variants")
    a = p.parse_args()
    folder = model_dir(a.arch, Path(a.root), "cuda")
    spec = inspect_model(str(folder))
    vocab = min(spec.vocab_size, 32000)
    rows_a = make_rows("A", 32, vocab, 0)
    rows_b = make_rows("B", 32, vocab, 0)
    cfg = TrainingConfig(
        model_name_or_path=str(folder),
        load_in_4bit=True,
        lora_r=16,
        lora_alpha=32,
        lora_target_modules=tuple(spec.linear_names),
        max_length=2048,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=4,
        gradient_checkpointing=True,
        seed=0,
    )
    plan = plan_engine(cfg, spec, True, 139.0, [len(r["input_ids"]) for r in rows_a])
    print("plan:", plan.notes, flush=True)
    t0 = time.time()
    torch.manual_seed(0)
    model = load_model_for_training(
        cfg, str(folder), "cuda", "bfloat16", spec.linear_names, plan.attn_implementation
    )
    from transformers.integrations.liger import apply_liger_kernel

    apply_liger_kernel(model, None)
    model.train()
    print(f"loaded in {time.time() - t0:.0f}s; layer mlp: {type(model.base_model.model.model.layers[0].mlp)}")
    with torch.no_grad():  # B non-zero, as after some training (B = 0 is a special case for no kernel)
        for n, prm in model.named_parameters():
            if "lora_B" in n:
                prm.normal_(0, 1e-3)
    res: list[dict] = []
    a4 = collate(rows_a[:16], 4, True)
    a8 = collate(rows_a[:16], 8, True)
    b16 = collate(rows_b[:32], 16, True)
    a4_pad = collate(rows_a[:16], 4, False)
    if a.quick:
        enable_fused_lora(model)
        res.append(time_variant("A packed 4x2048 varlen, fused LoRA", model, a4, warm=2, reps=6))
        res.append(time_variant("B packed 16 rows varlen, fused LoRA", model, b16, warm=2, reps=6))
        if a.json:
            Path(a.json).write_text(json.dumps({"variants": res}, indent=1, default=str))
        return
    res.append(time_variant("A packed 4x2048 varlen, peft LoRA", model, a4))
    res.append(time_variant("B packed 16 rows varlen, peft LoRA", model, b16))
    prof = [profile(model, a4[0], "A peft LoRA")]
    print(f"fused layers: {enable_fused_lora(model)}")
    res.append(time_variant("A packed 4x2048 varlen, fused LoRA", model, a4))
    res.append(time_variant("B packed 16 rows varlen, fused LoRA", model, b16))
    prof.append(profile(model, a4[0], "A fused LoRA"))
    res.append(time_variant("A packed 8x2048 varlen, fused LoRA", model, a8))
    cfg_attn = model.base_model.model.config
    impl = cfg_attn._attn_implementation
    try:
        model.base_model.model.set_attn_implementation("sdpa")
    except Exception as exc:  # older API: flip the config
        print("set_attn_implementation failed:", exc)
        cfg_attn._attn_implementation = "sdpa"
    res.append(time_variant("A batch 4x2048 SDPA (no packing), fused LoRA", model, a4_pad))
    try:
        model.base_model.model.set_attn_implementation(impl)
    except Exception:
        cfg_attn._attn_implementation = impl
    drops = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    for m in drops:
        m.p = 0.0
    res.append(time_variant("A fused LoRA, dropout 0 (diagnostic only)", model, a4))
    for m in drops:
        m.p = 0.05
    layers = model.base_model.model.model.layers
    for k in (2, 4):
        for layer in layers[-k:]:
            layer.gradient_checkpointing = False
        res.append(time_variant(f"A fused LoRA, last {k} layers not checkpointed", model, a4))
        for layer in layers:
            layer.gradient_checkpointing = True
    for layer in layers:
        layer.gradient_checkpointing = False
    res.append(
        time_variant("A fused LoRA, no checkpointing (diagnostic only)", model, a4[:2], warm=1, reps=2)
    )
    res.append(time_variant("B fused LoRA, no checkpointing (diagnostic only)", model, b16, warm=1, reps=2))
    for layer in layers:
        layer.gradient_checkpointing = True
    disable_fused_lora(model)
    res.append(time_variant("A packed 4x2048 varlen, peft LoRA (again)", model, a4))
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4)
    step(model, a4[0])
    times = []
    for _ in range(5):
        torch.cuda.synchronize()
        t = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    print(f"optimizer step + clip: {1e3 * statistics.median(times):.1f} ms", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"variants": res, "profiles": prof}, indent=1, default=str))


if __name__ == "__main__":
    main()
