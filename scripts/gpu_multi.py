"""Issue 8 on a 2-GPU machine: the product's own multi-process path (TrainingJob -> accelerate launch -> train-worker
ranks) on CUDA, with a SmolLM2-135M-shaped Llama (random weights from its config) and real tokenizer files.

Checks, printed as JSON lines (and written to --out):
  1. DDP, LoRA bf16: 2 ranks x batch 1 vs 1 process x batch 2, same rows, dropout 0 -> per-step loss difference.
  2. DDP, QLoRA nf4: 2 ranks train to completion; adapter saved once.
  3. FSDP, LoRA bf16: 2 ranks train to completion (or the error, verbatim).
  4. Stop: a long DDP run stopped after step 2 ends every rank at the same step, no process left.
  5. A killed rank (SIGKILL rank 1) fails the run with the reason; no process left.

    python scripts/gpu_multi.py --tokenizer .bench-tok --out $OUT/multi.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import TrainingConfig  # noqa: E402
from core.job import TrainingJob  # noqa: E402
from core.runs import read_metrics  # noqa: E402

SMOLLM2 = dict(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    rope_theta=100000.0,
    tie_word_embeddings=True,
)


def build_model(folder: Path, tokenizer: Path, shape: dict | None = None) -> str:
    """Save a Llama of ``shape`` (default SMOLLM2) with random bf16 weights and the tokenizer files to ``folder``."""
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        model = LlamaForCausalLM(
            LlamaConfig(**(shape or SMOLLM2), bos_token_id=1, eos_token_id=2, pad_token_id=2)
        )
        model.to(torch.bfloat16).save_pretrained(folder)
        for f in tokenizer.iterdir():
            shutil.copy(f, folder / f.name)
    return str(folder)


def base_config(model: str, output_dir: Path, **changes: object) -> TrainingConfig:
    """HumanEval alpaca rows at 256 tokens on ``model``, dropout 0 (so ranks and one process draw no different
    masks), no fixed-row evaluation or periodic checkpoints; ``changes`` override any field."""
    fields: dict[str, object] = dict(
        model_name_or_path=model,
        dataset_name=str(ROOT / "assets" / "humaneval_alpaca.jsonl"),
        max_length=256,
        completion_only_loss=False,
        monitor_rows=0,
        save_steps=0,
        lora_dropout=0.0,
        learning_rate=5e-4,
        output_dir=str(output_dir),
    )
    return TrainingConfig.from_dict({**fields, **changes})


def pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def run(cfg: TrainingConfig, timeout_s: float = 400) -> tuple[TrainingJob, Path]:
    job = TrainingJob()
    run_dir = job.start(cfg)
    job.wait(timeout_s)
    return job, run_dir


def losses(run_dir: Path) -> list[float]:
    return [m["loss"] for m in read_metrics(run_dir) if "loss" in m]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tokenizer", default=".bench-tok")
    p.add_argument("--out", default="multi.json")
    args = p.parse_args()
    import torch

    results: dict[str, object] = {"gpus": torch.cuda.device_count(), "device": torch.cuda.get_device_name(0)}
    work = Path("/tmp/multi")
    model = build_model(work / "model", ROOT / args.tokenizer)
    base = base_config(model, work / "runs", max_steps=8, per_device_train_batch_size=1)

    def report(name: str, value: object) -> None:
        results[name] = value
        print(json.dumps({name: value}), flush=True)
        Path(args.out).write_text(json.dumps(results, indent=1))

    t0 = time.time()
    one, one_dir = run(base.replace(per_device_train_batch_size=2, num_processes=1))
    two, two_dir = run(base.replace(num_processes=2, distributed_strategy="ddp"))
    a, b = losses(one_dir), losses(two_dir)
    report(
        "ddp_lora_vs_single",
        {
            "single": [one.snapshot().status, a],
            "two": [two.snapshot().status, b, two.snapshot().message[-300:]],
            "max_abs_diff": max((abs(x - y) for x, y in zip(a, b)), default=None),
            "adapter_files": sorted(p.name for p in (two_dir / "adapter").iterdir())
            if (two_dir / "adapter").is_dir()
            else None,
            "info": {k: two.snapshot().info.get(k) for k in ("strategy", "strategy_reason", "estimate_gib")},
            "s": round(time.time() - t0, 1),
        },
    )
    t0 = time.time()
    q, q_dir = run(base.replace(num_processes=2, distributed_strategy="ddp", load_in_4bit=True))
    report(
        "ddp_qlora",
        {
            "status": q.snapshot().status,
            "losses": losses(q_dir),
            "msg": q.snapshot().message[-300:],
            "s": round(time.time() - t0, 1),
        },
    )
    t0 = time.time()
    f, f_dir = run(base.replace(num_processes=2, distributed_strategy="fsdp"))
    report(
        "fsdp_lora",
        {
            "status": f.snapshot().status,
            "losses": losses(f_dir),
            "msg": f.snapshot().message[-600:],
            "s": round(time.time() - t0, 1),
        },
    )
    # Stop and a killed rank on long runs
    for name in ("stop", "kill_rank1"):
        t0 = time.time()
        job = TrainingJob()
        run_dir = job.start(base.replace(num_processes=2, distributed_strategy="ddp", max_steps=2000))
        deadline = time.time() + 300
        while time.time() < deadline:
            snap = job.snapshot()
            if snap.step >= 2 and len(snap.info.get("rank_pids", {})) == 2 or not job.is_running():
                break
            time.sleep(0.2)
        ranks = {int(k): int(v) for k, v in snap.info.get("rank_pids", {}).items()}
        pids = [*ranks.values(), int(snap.info.get("launcher_pid") or 0)]
        if name == "stop":
            job.stop()
        elif 1 in ranks:
            os.kill(ranks[1], signal.SIGKILL)
        end = job.wait(300)
        time.sleep(2)
        report(
            name,
            {
                "status": end.status,
                "step": end.step,
                "message": end.message[-400:],
                "left_alive": pids_alive([p for p in pids if p]),
                "adapter": (run_dir / "adapter").is_dir(),
                "s": round(time.time() - t0, 1),
            },
        )


if __name__ == "__main__":
    main()
