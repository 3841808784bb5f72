"""Peak memory of a merged export on the CPU, measured against core.export_memory's estimate.

Trains a 4-step LoRA run on the embedded SmolLM2-135M-Instruct (or takes ``--run-dir``), then, for each case, runs
``core.export.export_merged`` in a fresh process (so nothing from training or an earlier export is counted) while a
thread samples the process's resident set (VmRSS, RssAnon, RssFile from /proc/self/status) every 2 ms. Prints the
process's RSS before the export, the peak during it, the peak increase (what the export itself holds: the number the
estimate predicts), ru_maxrss, RSS at each phase of export_merged (its log lines), and the estimate's components.
A case is an export dtype, optionally with ``@GIB``: the available memory export_merged is told (its
``available_gib``), which makes it verify in bfloat16 instead of float32 when 4N exceeds 60% of it.

``--random-1b`` measures a 1.17B-parameter Llama with random bf16 weights instead (hidden 2048, 22 layers, MLP 5632,
4 KV heads, SmolLM2's 49,152-token vocabulary, untied head) and a random r 16 adapter on all 7 linear modules.

    python bench/merge_memory.py [--run-dir RUN] [--cases auto auto@0.8 float32]
    python bench/merge_memory.py --random-1b --cases auto auto@5 float32
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def status_kib() -> dict[str, int]:
    """VmRSS, RssAnon and RssFile of this process in KiB (Linux /proc/self/status)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0])
    return out


def train(out: Path) -> Path:
    """A finished 4-step LoRA run (r 8 on all 7 linear modules, like tests/test_export.py's fixture)."""
    from core.config import TrainingConfig
    from core.job import TrainingJob

    cfg = TrainingConfig.from_dict(
        {
            "dataset_name": str(ROOT / "assets" / "humaneval_alpaca.jsonl"),
            "max_steps": 4,
            "max_length": 128,
            "per_device_train_batch_size": 2,
            "completion_only_loss": False,
            "monitor_rows": 0,
            "save_steps": 0,
            "output_dir": str(out),
            "learning_rate": 2e-3,
        }
    )
    job = TrainingJob()
    run_dir = job.start(cfg)
    snap = job.wait(600)
    assert snap.status == "completed", snap.message
    return Path(run_dir)


def random_1b_run(root: Path) -> Path:
    """A run folder whose base is a random 1.17B Llama (bf16 safetensors) and whose adapter is a random r 16 LoRA
    (B drawn from N(0, 0.01), so the merge changes the model and verifies)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from core.model import embedded_model_path, load_tokenizer

    tok = load_tokenizer(str(embedded_model_path()))
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    base, run = root / "random-1b", root / "run"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.01)
    peft_model.save_pretrained(run / "adapter")
    (run / "config.json").write_text(json.dumps({"model_name_or_path": str(base), "lora_r": 16}))
    return run


def measure(run_dir: str, case: str) -> dict[str, object]:
    """Export ``run_dir`` merged as ``case`` ("DTYPE" or "DTYPE@GIB") in this (fresh) process; RSS in MiB."""
    import peft  # noqa: F401  # imported before the baseline: the export's imports are not what it holds
    import torch
    import transformers  # noqa: F401

    from core.export import export_merged
    from core.export_memory import available_memory_gib, merge_memory_for_run, verifies_in_float32

    dtype, _, avail = case.partition("@")
    available_gib = float(avail) if avail else None
    torch.set_num_threads(2)
    est = merge_memory_for_run(run_dir, dtype, "cpu")
    base = status_kib()
    peak = dict(base)
    phases: list[tuple[str, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            now = status_kib()
            for k, v in now.items():
                peak[k] = max(peak[k], v)
            time.sleep(0.002)

    class Mark(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            phases.append((record.getMessage(), status_kib()["VmRSS"] / 1024))

    handler = Mark()
    logging.getLogger("core.export").addHandler(handler)
    logging.getLogger("core.export").setLevel(logging.INFO)
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        result = export_merged(run_dir, out=Path(tmp) / "merged", dtype=dtype, available_gib=available_gib)
        phases.append(("after export (result freed by the caller later)", status_kib()["VmRSS"] / 1024))
    seconds = time.time() - t0
    done.set()
    thread.join()
    limit_gib = available_memory_gib("cpu") if available_gib is None else available_gib
    verify = "float32" if verifies_in_float32(est.num_params, limit_gib) else "bfloat16"
    return {
        "case": case,
        "verification_dtype": verify,
        "saved_bytes": result.size_bytes,
        "seconds": round(seconds, 1),
        "rss_before_mib": round(base["VmRSS"] / 1024),
        "rss_peak_mib": round(peak["VmRSS"] / 1024),
        "rss_peak_increase_mib": round((peak["VmRSS"] - base["VmRSS"]) / 1024),
        "anon_peak_increase_mib": round((peak["RssAnon"] - base["RssAnon"]) / 1024),
        "file_peak_increase_mib": round((peak["RssFile"] - base["RssFile"]) / 1024),
        "ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "phases_rss_mib": [(m, round(r)) for m, r in phases],
        "estimate_gib": {k: round(v, 4) for k, v in est.as_dict().items()},
        "estimate_total_mib": round(est.total_gib * 1024),
        "estimate_total_float32_verification_mib": round(est.total_float32_verification_gib * 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", help="a finished run folder (default: train a 4-step run first)")
    parser.add_argument("--random-1b", action="store_true", help="a random 1.17B base and adapter instead")
    parser.add_argument("--cases", nargs="+", default=["auto", "auto@0.8", "float32"])
    # child modes: one export (JSON on stdout), or building the run folder in a process of its own; ru_maxrss
    # survives fork + exec, so the parent stays small and every child's figures are its own
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--prepare", choices=["train", "random-1b"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.cases[0])))
        return
    if args.prepare:
        folder = Path(args.run_dir)
        print(random_1b_run(folder) if args.prepare == "random-1b" else train(folder))
        return
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.run_dir) if args.run_dir and not args.random_1b else None
        if run_dir is None:
            built = subprocess.run(
                [sys.executable, __file__, "--prepare", "random-1b" if args.random_1b else "train"]
                + ["--run-dir", tmp],
                capture_output=True,
                text=True,
                check=True,
            )
            run_dir = Path(built.stdout.strip().splitlines()[-1])
        for case in args.cases:
            out = subprocess.run(
                [sys.executable, __file__, "--measure", str(run_dir), "--cases", case],
                capture_output=True,
                text=True,
                check=True,
            )
            print(json.dumps(json.loads(out.stdout.strip().splitlines()[-1]), indent=1))


if __name__ == "__main__":
    main()
