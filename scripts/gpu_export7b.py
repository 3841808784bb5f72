"""On a CUDA GPU: train a 7B-shaped QLoRA run for a few steps through the product, then time the merged and
adapter exports and record their peak GPU memory (issue 6's GPU check).

    python scripts/gpu_export7b.py --tokenizer DIR [--steps 5] [--out /tmp/export7b]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from core.config import TrainingConfig  # noqa: E402
from core.export import export_adapter, export_merged  # noqa: E402
from core.job import TrainingJob  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--steps", type=int, default=5)
    a = p.parse_args()
    from qlora_gpu import build_random_model

    folder = build_random_model(Path(tempfile.mkdtemp()) / "llama2-7b-random", a.tokenizer)
    cfg = TrainingConfig(
        model_name_or_path=str(folder),
        dataset_name=str(ROOT / "assets" / "humaneval_alpaca.jsonl"),
        load_in_4bit=True,
        lora_r=16,
        lora_alpha=32,
        max_steps=a.steps,
        per_device_train_batch_size=4,
        max_length=512,
        learning_rate=1e-3,
        output_dir=str(Path(tempfile.mkdtemp())),
        monitor_rows=4,
    )
    job = TrainingJob()
    job.start(cfg)
    snap = job.wait()
    print(f"== train: {snap.status} after {snap.step} steps: {snap.message}", flush=True)
    assert snap.status == "completed", snap.message
    report = {}
    for kind in ("merged", "adapter"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.time()
        result = export_merged(snap.run_dir) if kind == "merged" else export_adapter(snap.run_dir)
        seconds = time.time() - t0
        peak = torch.cuda.max_memory_allocated() / 2**30
        report[kind] = {"seconds": seconds, "peak_allocated_gib": peak, "summary": result.summary()}
        print(f"== {kind} export: {seconds:.0f} s, peak GPU allocated {peak:.1f} GiB", flush=True)
        print(f"   {result.summary()}", flush=True)
        checks = json.loads((Path(result.path) / "verification.json").read_text())["checks"]
        print("   checks: " + "; ".join(f"{c['name']}: {c['passed']}" for c in checks), flush=True)
        files = sorted(x.name for x in Path(result.path).iterdir())
        print(f"   files: {files}", flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
