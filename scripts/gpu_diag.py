"""Single-GPU engine variants on the SmolLM2-135M shape (random weights): first losses, grad norms, status.

python scripts/gpu_diag.py --tokenizer .bench-tok
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from gpu_multi import SMOLLM2, base_config, build_model  # noqa: E402

from core.job import TrainingJob  # noqa: E402
from core.runs import read_metrics  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tokenizer", default=".bench-tok")
    p.add_argument(
        "--two-gpus", action="store_true", help="one process on 2 visible GPUs, then FSDP variants"
    )
    p.add_argument("--qlora-fsdp", action="store_true", help="QLoRA with FSDP, the auto default, exports")
    p.add_argument(
        "--shard-check",
        action="store_true",
        help="per-GPU peak memory of DDP vs FSDP (LoRA and QLoRA) on a 2.0B Llama shape (hidden 4096, 8 layers)",
    )
    p.add_argument(
        "--cap-check",
        action="store_true",
        help="the 2.0B shape on GPUs capped below its weights (scripts/gpu_cap): DDP must fail, FSDP must train",
    )
    p.add_argument("--cap-lora-gib", default="3.4", help="--cap-check: per-GPU cap for the LoRA pair")
    p.add_argument(
        "--mem-trace", action="store_true", help="--cap-check: print FSDP wrapping memory per rank"
    )
    p.add_argument("--only", nargs="*", default=None, help="run only these variant names")
    p.add_argument("--lora-only", action="store_true", help="--cap-check: skip the QLoRA pair")
    args = p.parse_args()
    if args.cap_check:
        args.shard_check = True
        cap = str(ROOT / "scripts" / "gpu_cap")
        if args.mem_trace:
            os.environ["STUDIO_DIAG_MEM_TRACE"] = "1"
        os.environ["PYTHONPATH"] = os.pathsep.join([cap, os.environ.get("PYTHONPATH", "")])
    if args.shard_check:  # weights big enough (4.0 GB bf16) that sharding them shows in each GPU's peak
        shape = {**SMOLLM2, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 8}
        shape.update(num_attention_heads=32, num_key_value_heads=32, tie_word_embeddings=False)
        model = build_model(Path("/tmp/diag/model2b"), ROOT / args.tokenizer, shape)
    else:
        model = build_model(Path("/tmp/diag/model"), ROOT / args.tokenizer)
    base = base_config(model, Path("/tmp/diag/runs"), max_steps=3, per_device_train_batch_size=2)
    variants = {
        "default": {},
        "batch1": {"per_device_train_batch_size": 1},
        "no_fused": {"_env": "0"},
        "no_liger": {"use_liger_kernel": False},
        "no_packing": {"packing": False},
        "sdpa": {"attn_implementation": "sdpa"},
        "no_auto_mb": {"auto_micro_batch": False},
        "fp32_no_liger_sdpa_nopack": {
            "use_liger_kernel": False,
            "packing": False,
            "attn_implementation": "sdpa",
            "dtype": "float32",
        },
    }
    if args.two_gpus:
        variants = {
            "single_on_2_visible": {},
            "fsdp": {"num_processes": 2, "distributed_strategy": "fsdp"},
            "fsdp_no_fused": {"num_processes": 2, "distributed_strategy": "fsdp", "_env": "0"},
            "fsdp_no_fused_no_liger": {
                "num_processes": 2,
                "distributed_strategy": "fsdp",
                "_env": "0",
                "use_liger_kernel": False,
            },
        }
    if args.qlora_fsdp:
        variants = {
            "qlora_fsdp": {"num_processes": 2, "distributed_strategy": "fsdp", "load_in_4bit": True},
            "lora_fsdp": {"num_processes": 2, "distributed_strategy": "fsdp"},
            "auto_default": {},  # num_processes 0: one process per visible GPU
        }
    if args.shard_check:
        variants = {
            f"{s}_{m}": {"num_processes": 2, "distributed_strategy": s, "load_in_4bit": m == "qlora"}
            for m in ("lora", "qlora")
            for s in ("ddp", "fsdp")
        }
    if args.cap_check:  # weights: 3.7 GiB in bf16, ~1.5 GiB in 4-bit (embeddings and head stay bf16)
        variants = {
            f"{s}_{m}_cap{gib}": {
                "num_processes": 2,
                "distributed_strategy": s,
                "load_in_4bit": m == "qlora",
                "_cap": gib,
            }
            for m, gib in (("lora", args.cap_lora_gib), ("qlora", "1.2"))
            for s in ("ddp", "fsdp")
            if m == "lora" or not args.lora_only
        }
    if args.only is not None:
        variants = {k: v for k, v in variants.items() if k in args.only}
    for name, change in variants.items():
        change = dict(change)
        os.environ["STUDIO_DIAG_GPU_GIB"] = change.pop("_cap", "")
        os.environ["LORA_STUDIO_FUSED_LORA"] = change.pop("_env", "1")
        job = TrainingJob()
        run_dir = job.start(base.replace(**change))
        snap = job.wait(300)
        rows = [
            {k: m[k] for k in ("step", "loss", "grad_norm") if k in m}
            for m in read_metrics(run_dir)
            if "loss" in m
        ]
        notes = [
            line
            for line in snap.logs
            if "Packing" in line
            or "Attention" in line
            or "Liger" in line
            or "micro" in line.lower()
            or "Fused" in line
        ]
        out = {"status": snap.status, "rows": rows, "msg": snap.message[:700], "notes": notes[-5:]}
        peaks = [m["peak_reserved_gib"] for m in read_metrics(run_dir) if "peak_reserved_gib" in m]
        out["rank0_peak_reserved_gib"] = max(peaks, default=None)
        out["estimate_gib"] = snap.info.get("estimate_gib")
        if args.qlora_fsdp and snap.status == "completed":
            from core.export import export_adapter, export_merged

            for kind, fn in (("merged", export_merged), ("adapter", export_adapter)):
                try:
                    out[kind] = fn(run_dir).summary()[:400]
                except Exception as exc:  # report, do not stop the other checks
                    out[kind] = f"{type(exc).__name__}: {exc}"[:400]
            launch = run_dir / "launch.json"
            out["launch"] = json.loads(launch.read_text()) if launch.exists() else None
        print(json.dumps({name: out}, default=str), flush=True)


if __name__ == "__main__":
    main()
