"""Where the Trainer's time per optimizer step goes beyond forward + backward (issue 5 diagnostics).

Runs the product's side of bench/throughput.py (``run_side("ours", ...)``) in regime B with one change at a time:
as benchmarked; fewer logs; no token counting; and one run under torch.profiler for two steps (GPU busy time vs
wall time, the CPU ops that take longest). Prints one line per variant.

    python bench/trainer_step.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from throughput import make_rows, model_dir, run_side  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from core.config import TrainingConfig  # noqa: E402
from core.model import inspect_model  # noqa: E402


class StepProfiler(TrainerCallback):
    """torch.profiler over optimizer steps [first, last): GPU kernel time vs wall time, top CPU ops."""

    def __init__(self, first: int = 5, last: int = 7) -> None:
        self.first, self.last, self.prof, self.t0, self.report = first, last, None, 0.0, {}

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.first and self.prof is None:
            from torch.profiler import ProfilerActivity, profile

            torch.cuda.synchronize()
            self.prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
            self.prof.__enter__()
            self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.prof is not None and state.global_step == self.last and not self.report:
            torch.cuda.synchronize()
            wall = time.perf_counter() - self.t0
            self.prof.__exit__(None, None, None)
            events = self.prof.key_averages()
            gpu = sum(e.self_device_time_total for e in events if e.device_type.name == "CUDA") / 1e6
            cpu = sorted(((e.self_cpu_time_total / 1e3, e.count, e.key[:90]) for e in events), reverse=True)[
                :20
            ]
            self.report = {
                "steps": self.last - self.first,
                "wall_s": wall,
                "gpu_kernel_s": gpu,
                "top_cpu": cpu,
            }
            print(f"profiled {self.last - self.first} steps: wall {wall:.3f}s, GPU kernels {gpu:.3f}s")
            for t, n, k in cpu:
                print(f"  {t:9.1f} ms self CPU  x{n:<6d} {k}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="Llama-2-7B")
    p.add_argument("--root", default="/tmp/vram-models")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--json", default=None)
    p.add_argument("--baseline", action="store_true")
    p.add_argument("--variants", type=int, default=6, help="run only the first N variants")
    a = p.parse_args()
    folder = model_dir(a.arch, Path(a.root), "cuda")
    spec = inspect_model(str(folder))
    rows = make_rows("B", 16 * a.steps, min(spec.vocab_size, 32000), 0, 2048)
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
        max_steps=a.steps,
        learning_rate=2e-4,
        monitor_rows=0,
        save_steps=0,
        seed=0,
    )
    variants = [
        ("ours as benchmarked", {}, None),
        ("ours, logging_steps 100", {"logging_steps": 100}, None),
        ("ours, no token counting", {"include_num_input_tokens_seen": "no"}, None),
        ("ours, dataloader_pin_memory off", {"dataloader_pin_memory": False}, None),
        ("ours, profiled steps 5-7", {}, StepProfiler()),
        ("ours as benchmarked (again)", {}, None),
    ]
    out = []
    if a.baseline:
        r = run_side("baseline", cfg, folder, rows, "cuda", a.steps)
        print(f"{'baseline':40s} {r['tokens_per_s']:9,.0f} tok/s", flush=True)
        out.append({"variant": "baseline", **r})
    for name, overrides, cb in variants[: a.variants]:
        r = run_side("ours", cfg, folder, rows, "cuda", a.steps, overrides, [cb] if cb else None)
        if cb is not None:
            r["profile"] = cb.report
        print(f"{name:40s} {r['tokens_per_s']:9,.0f} tok/s  alloc {r['peak_allocated_gib']:.2f}", flush=True)
        out.append({"variant": name, **r})
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
