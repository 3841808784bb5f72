"""Plans end to end on a capped GPU: does the plan the planner picks for a 16, 24 or 48 GB card really fit it?

For each architecture (random bf16 weights built from its config, the carried tokenizer) and each card size, the
parent asks core.plan.plan_training for the fastest plan at the textbook's settings (max_length 512, effective
batch 4, r 8, the family's default targets) and starts one child process per plan, so every run has a fresh
allocator. The child caps PyTorch's caching allocator at the card size minus the CUDA context
(``torch.cuda.set_per_process_memory_fraction``; the context lives outside the allocator, as on a real card) and
trains ``--steps`` optimizer steps through the product (core.job.TrainingJob: packing, the engine's kernels, the
micro-batch sizing) on rows that are all at least max_length tokens long (the estimate's worst case). It reports
peak reserved memory against the cap and the plan's estimate. Goals (issue 14): no plan runs out of memory, and
the fastest plan uses at least 70% of the budget (90% of the card).

    python bench/plan_check.py --tokenizer .bench-tok --arch Llama-2-7B --gpu-gib 16 24 48 [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from vram_accuracy import ARCHS as SHAPES  # noqa: E402  (config.json facts of each model on the hub)

# Llama-2-7B gets SmolLM2's 49,152-token vocabulary so the carried tokenizer's ids fit (its own is 32,000: 0.14 B
# fewer embedding parameters); Llama-3.1-8B is Llama-3-8B's shape with the 3.1 RoPE base.
ARCHS = {
    "Llama-2-7B": {**SHAPES["Llama-2-7B"], "vocab_size": 49152},
    "Llama-3.1-8B": {**SHAPES["Llama-3-8B"], "rope_theta": 500000.0},
}
CUDA_CONTEXT_GIB = 0.6  # core.vram.CUDA_CONTEXT_GIB: outside the caching allocator


def build_model(arch: str, root: Path, tokenizer: Path) -> Path:
    """Save ``arch`` with random bf16 weights (built on the GPU) and the tokenizer files, once."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = root / arch
    if (folder / "model.safetensors.index.json").is_file() or (folder / "model.safetensors").is_file():
        return folder
    spec = dict(ARCHS[arch])
    config = AutoConfig.for_model(
        spec.pop("model_type"), **spec, max_position_embeddings=4096, bos_token_id=1, eos_token_id=2
    )
    t0 = time.time()
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    del model
    torch.cuda.empty_cache()
    for f in tokenizer.iterdir():
        shutil.copy(f, folder / f.name)
    print(f"saved random {arch} in {time.time() - t0:.0f}s", flush=True)
    return folder


def long_rows(path: Path, n: int = 96, words: int = 900) -> Path:
    """A text dataset whose every row is longer than 512 tokens (truncated to max_length: the worst case)."""
    rng = random.Random(0)
    vocab = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
        for _ in range(5000)
    ]
    with path.open("w", encoding="utf-8") as f:
        for _ in range(n):
            f.write(json.dumps({"text": " ".join(rng.choice(vocab) for _ in range(words))}) + "\n")
    return path


def child(config_path: str, cap_gib: float) -> None:
    """One plan in this process: cap the allocator, train through TrainingJob, print one JSON line."""
    import torch

    from core.config import TrainingConfig
    from core.job import TrainingJob
    from core.runs import read_metrics

    total = torch.cuda.get_device_properties(0).total_memory / 2**30
    torch.cuda.set_per_process_memory_fraction((cap_gib - CUDA_CONTEXT_GIB) / total, 0)
    cfg = TrainingConfig.from_json_file(config_path)
    job = TrainingJob()
    t0 = time.time()
    run_dir = job.start(cfg)
    snap = job.wait(540)
    metrics = read_metrics(run_dir)
    steps = [m for m in metrics if "loss" in m]
    out = {
        "status": snap.status,
        "message": snap.message[:400],
        "steps": snap.step,
        "first_loss": steps[0]["loss"] if steps else None,
        "last_loss": steps[-1]["loss"] if steps else None,
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
        "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
        "estimate_gib": snap.info.get("estimate_gib"),
        "wall_s": time.time() - t0,
        "engine": [n for n in snap.info.get("engine", []) if "Micro" in n or "checkpointing" in n],
    }
    print("RESULT " + json.dumps(out), flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--child", default=None, help="internal: run this plan config")
    p.add_argument("--cap", type=float, default=0.0, help="internal: the card size, GiB")
    p.add_argument("--tokenizer", default=".bench-tok")
    p.add_argument("--arch", nargs="+", default=["Llama-2-7B"], choices=list(ARCHS))
    p.add_argument("--gpu-gib", nargs="+", type=float, default=[16.0, 24.0, 48.0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--root", default="/tmp/plan-check")
    p.add_argument("--json", default=None)
    p.add_argument("--dry-run", action="store_true", help="print the plans only (no GPU needed)")
    p.add_argument(
        "--rejected",
        action="store_true",
        help="also run the leanest of the faster plans the planner turned down (expect OOM)",
    )
    a = p.parse_args()
    if a.child:
        child(a.child, a.cap)
        return
    from core.config import TrainingConfig
    from core.model import inspect_model
    from core.plan import plan_training

    root = Path(a.root)
    root.mkdir(parents=True, exist_ok=True)
    data = long_rows(root / "rows.jsonl")
    results = []
    for arch in a.arch:
        if a.dry_run:
            folder = root / arch
            if not (folder / "config.json").is_file():
                from transformers import AutoConfig

                spec_fields = dict(ARCHS[arch])
                AutoConfig.for_model(spec_fields.pop("model_type"), **spec_fields).save_pretrained(folder)
        else:
            folder = build_model(arch, root, ROOT / a.tokenizer)
        spec = inspect_model(str(folder))
        base = TrainingConfig(
            model_name_or_path=str(folder),
            dataset_name=str(data),
            dataset_format="text",
            completion_only_loss=False,
            max_length=512,
            per_device_train_batch_size=4,
            gradient_accumulation_steps=1,
            max_steps=a.steps,
            monitor_rows=0,
            save_steps=0,
            logging_steps=1,
            output_dir=str(root / "runs"),
        )
        for gib in a.gpu_gib:
            result = plan_training(spec, base, gib)
            row: dict = {
                "arch": arch,
                "gpu_gib": gib,
                "budget_gib": result.budget_gib,
                "reason": result.reason,
            }
            plan = result.chosen
            if plan is None:
                row["plan"] = None
                runs = []
            else:
                runs = [(row, plan)]
                if a.rejected:  # the fastest plan the planner turned down: does it really not fit?
                    from core.plan import candidate_plans

                    faster = [
                        p
                        for p in candidate_plans(spec, base)
                        if p.step_cost < plan.step_cost and p.total_gib > result.budget_gib
                    ]
                    if faster:
                        reject = min(faster, key=lambda p: p.total_gib)  # the closest call
                        runs.append(
                            (
                                {
                                    "arch": arch,
                                    "gpu_gib": gib,
                                    "budget_gib": result.budget_gib,
                                    "reason": "rejected by the planner",
                                    "rejected": True,
                                },
                                reject,
                            )
                        )
            for row, plan in runs:  # noqa: B020 (each run reports into its own row)
                row["plan"] = plan.describe()
                row["plan_estimate_gib"] = plan.total_gib
                if not a.dry_run:
                    cfg_path = root / f"{arch}-{gib:g}{'-rejected' if row.get('rejected') else ''}.json"
                    cfg_path.write_text(json.dumps(plan.apply(base).to_dict()))
                    proc = subprocess.run(
                        [sys.executable, __file__, "--child", str(cfg_path), "--cap", str(gib)],
                        capture_output=True,
                        text=True,
                        env={**os.environ, "PYTHONUNBUFFERED": "1"},
                        timeout=600,
                    )
                    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                    row.update(json.loads(lines[-1][7:]) if lines else {"status": "crashed"})
                    if not lines:
                        row["stderr"] = proc.stderr[-1500:]
                    if "peak_reserved_gib" in row:
                        # what a real card holds: the allocator's peak plus the CUDA context outside it
                        row["peak_with_context_gib"] = row["peak_reserved_gib"] + CUDA_CONTEXT_GIB
                        row["budget_used_pct"] = 100 * row["peak_with_context_gib"] / result.budget_gib
                        row["estimate_error_pct"] = (
                            100
                            * (plan.total_gib - row["peak_with_context_gib"])
                            / row["peak_with_context_gib"]
                        )
                results.append(row)
                print(json.dumps(row), flush=True)
                if a.json:
                    Path(a.json).write_text(json.dumps(results, indent=2))
            if not runs:
                results.append(row)
                print(json.dumps(row), flush=True)
    print("\n| model | card GiB | plan | estimate GiB | peak reserved + context GiB | of budget | status |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['arch']} | {r['gpu_gib']:g} | {'(rejected) ' if r.get('rejected') else ''}{r['plan'] or 'nothing fits'} | {r.get('plan_estimate_gib', 0):.1f} "
            f"| {r.get('peak_with_context_gib', float('nan')):.2f} | {r.get('budget_used_pct', float('nan')):.0f}% "
            f"| {r.get('status', '-')} |"
        )


if __name__ == "__main__":
    main()
