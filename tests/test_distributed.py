"""Several processes through accelerate launch, on this CPU machine (gloo): two ranks of the embedded model train
like one process with the same global batch, Stop ends every rank, a killed rank fails the run and leaves no
process behind. Real launcher, real torch.distributed, real Trainer; plus the plan's arithmetic and messages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from core.config import TrainingConfig
from core.errors import ConfigError
from core.job import TrainingJob
from core.model import inspect_model
from core.parallel import (
    choose_strategy,
    cli_command,
    estimate_per_gpu,
    launcher_args,
    process_problems,
)
from core.runs import read_metrics
from core.space import DemoLimits, limit_problems
from core.vram import estimate_vram
from tests.conftest import ASSETS
from tests.test_cli import run_cli
from tests.test_vram import LLAMA2_7B


def cfg_for(tmp_path: Path, **changes) -> TrainingConfig:
    """A few steps of 64-token rows on the embedded model; dropout 0 so the ranks' dropout masks (drawn from each
    rank's own generator) cannot differ from one process's."""
    base = {
        "dataset_name": str(ASSETS / "humaneval_alpaca.jsonl"),
        "max_steps": 4,
        "max_length": 64,
        "per_device_train_batch_size": 1,
        "completion_only_loss": False,
        "monitor_rows": 0,
        "save_steps": 0,
        "lora_dropout": 0.0,
        "learning_rate": 5e-4,
        "output_dir": str(tmp_path),
    }
    return TrainingConfig.from_dict({**base, **changes})


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def processes_of(run_dir: Path) -> list[int]:
    """Live processes whose command line names the run folder (the launcher and its train-worker ranks)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(run_dir) in cmdline and alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def start_and_wait_for_a_step(cfg: TrainingConfig) -> tuple[TrainingJob, Path, dict[str, int], int]:
    job = TrainingJob()
    run_dir = job.start(cfg)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        snap = job.snapshot()
        if snap.step >= 1 and len(snap.info.get("rank_pids", {})) == 2 or not job.is_running():
            break
        time.sleep(0.2)
    assert snap.step >= 1, snap.message
    return job, run_dir, snap.info["rank_pids"], snap.info["launcher_pid"]


@pytest.fixture(scope="module")
def llama7b(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama2-7b-config")
    (folder / "config.json").write_text(json.dumps(LLAMA2_7B))
    return inspect_model(str(folder))


# ---------------------------------------------------------------- plan: strategy, memory per GPU, commands


def test_auto_strategy_and_memory_per_gpu(llama7b, tmp_path):
    lora = TrainingConfig(max_length=1024, per_device_train_batch_size=2, gradient_checkpointing=True)
    one = estimate_vram(llama7b, lora, "lora")
    assert 14.4 < one.total_gib < 30  # 7B in bf16 does not fit 90% of a 16 GiB GPU
    choice = choose_strategy(lora, llama7b, 4, 16.0)
    assert choice.strategy == "fsdp" and "FSDP over 4 GPUs" in choice.reason
    fsdp = estimate_per_gpu(one, llama7b, "fsdp", 4)
    assert fsdp.components_gib["weights"] == pytest.approx(one.components_gib["weights"] / 4)
    assert fsdp.components_gib["optimizer states"] == pytest.approx(
        one.components_gib["optimizer states"] / 4
    )
    assert fsdp.components_gib["activations"] == one.components_gib["activations"]  # each rank's own batch
    assert 3 < fsdp.total_gib < 14.4 and f"{fsdp.total_gib:.1f} GiB per GPU" in choice.reason
    ddp = estimate_per_gpu(one, llama7b, "ddp", 4)
    assert ddp.total_gib > one.total_gib  # replicated, plus gradient buckets
    assert ddp.components_gib["DDP gradient buckets"] == one.components_gib["gradients"]
    assert choose_strategy(lora, llama7b, 4, 80.0).strategy == "ddp"  # fits: replicate, only gradients travel
    qlora = lora.replace(load_in_4bit=True)
    assert choose_strategy(qlora, llama7b, 2, 16.0).strategy == "ddp"  # a 4-bit 7B fits one 16 GiB GPU
    assert choose_strategy(lora.replace(distributed_strategy="ddp"), llama7b, 4, 16.0).strategy == "ddp"
    assert choose_strategy(lora, llama7b, 2, None).strategy == "ddp"  # CPU: gloo DDP
    assert choose_strategy(lora, llama7b, 1, 16.0).strategy == "single"
    # QLoRA + FSDP: quantized on the CPU, so each GPU holds its shard of the 4-bit weights, never all of them
    q_one = estimate_vram(llama7b, qlora, "qlora")
    q_fsdp = estimate_per_gpu(q_one, llama7b, "fsdp", 8)
    assert q_fsdp.components_gib["weights"] == pytest.approx(q_one.components_gib["weights"] / 8)
    # the 2.0B shape of scripts/gpu_diag.py --cap-check: measured 3.40 GiB peak while FSDP wrapped the embeddings
    # and head (1.90 GiB sharded weights per GPU after wrapping), 2 GPUs
    from transformers import LlamaConfig

    LlamaConfig(
        vocab_size=49152,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=8,
        num_attention_heads=32,
    ).save_pretrained(tmp_path)
    shape = inspect_model(str(tmp_path))
    small = lora.replace(max_length=256, per_device_train_batch_size=2)
    two_b = estimate_per_gpu(estimate_vram(shape, small, "lora"), shape, "fsdp", 2)
    assert two_b.components_gib["weights"] == pytest.approx(1.899, rel=0.02)  # measured after wrapping
    assert 3.4 <= two_b.total_gib < 5.6  # peak allocated 3.40 at wrapping; reserved 5.53 while training
    # a big vocabulary on few layers: the estimate covers the wrapping moment (embeddings and head held twice)
    LlamaConfig(
        vocab_size=256000,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=2,
        num_attention_heads=16,
    ).save_pretrained(tmp_path / "wide")
    wide = inspect_model(str(tmp_path / "wide"))
    w8 = estimate_per_gpu(estimate_vram(wide, small.replace(max_length=32), "lora"), wide, "fsdp", 8)
    root = wide.embedding_params * 2 / 2**30
    assert w8.components_gib["FSDP gathered embeddings and head"] == pytest.approx(root)
    assert w8.components_gib["FSDP gathered layers"] < root / 4  # layers exclude the embeddings
    assert w8.total_gib >= w8.components_gib["weights"] + 2 * root


def test_bad_multi_process_settings_name_the_field_and_the_fix(tmp_path, embedded_path):
    problems = TrainingConfig(num_processes=-1, distributed_strategy="zero", load_in_8bit=True).validate()
    assert any(p.startswith("num_processes: -1 must be 1") for p in problems)
    assert any(p.startswith("distributed_strategy: 'zero' is not one of") for p in problems)
    problems = TrainingConfig(distributed_strategy="fsdp", load_in_8bit=True).validate()
    assert problems == [problems[0]] and "fsdp cannot shard bitsandbytes 8-bit" in problems[0]
    four = TrainingConfig(num_processes=4)
    assert "num_processes: 4 but 2 GPU(s) are visible" in process_problems(four, 2, True)[0]
    assert process_problems(four, 0, False) == []  # CPU: gloo processes, any number
    assert "fsdp needs CUDA GPUs" in process_problems(four.replace(distributed_strategy="fsdp"), 0, False)[0]
    missing = four.replace(accelerate_config_file=str(tmp_path / "none.yaml"))
    assert "accelerate_config_file:" in process_problems(missing, 0, False)[0]
    assert "num_processes: the demo trains in one process" in limit_problems(four, DemoLimits())[-1]
    # Refused before a run folder exists, as every config error.
    job = TrainingJob()
    with pytest.raises(ConfigError, match="fsdp needs CUDA GPUs"):
        job.start(cfg_for(tmp_path / "runs", num_processes=2, distributed_strategy="fsdp"))
    not_accelerate = tmp_path / "notes.yaml"
    not_accelerate.write_text("just: notes\n")
    with pytest.raises(ConfigError, match="accelerate_config_file: .* is not an accelerate config"):
        job.start(cfg_for(tmp_path / "runs", accelerate_config_file=str(not_accelerate)))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_launch_and_cli_commands(tmp_path):
    cfg = TrainingConfig(num_processes=2)
    cpu = launcher_args(cfg, 2, "ddp", False, 29555)
    assert "--multi_gpu" in cpu and cpu[cpu.index("--num_processes") + 1] == "2"  # torchrun, gloo on the CPU
    assert cpu[cpu.index("--main_process_port") + 1] == "29555"
    gpu = launcher_args(cfg, 4, "fsdp", True, 29555)
    assert "--use_fsdp" in gpu and "--multi_gpu" not in gpu
    assert gpu[gpu.index("--fsdp_cpu_ram_efficient_loading") + 1] == "true"
    multi = launcher_args(cfg.replace(accelerate_config_file="~/cluster.yaml"), 16, "ddp", True, 1)
    assert multi == ["--config_file", str(Path("~/cluster.yaml").expanduser())]
    assert cli_command(TrainingConfig()) == "python launch.py train CONFIG.json"
    assert cli_command(cfg.replace(distributed_strategy="fsdp")) == (
        "python launch.py train CONFIG.json --num-processes 2 --distributed-strategy fsdp"
    )
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"max_steps": 1}))
    out = run_cli("train", str(bad), "--num-processes", "-2")
    assert out.returncode == 2 and "num_processes: -2 must be 1" in out.stderr
    model = tmp_path / "llama2-7b"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(LLAMA2_7B))
    out = run_cli("estimate", "--model", str(model), "--gpu-gib", "16", "--num-processes", "4", "--json")
    per_gpu = json.loads(out.stdout.strip().splitlines()[-1])["per_gpu"]
    # the plan for one 16 GiB GPU is QLoRA, which fits each GPU whole: DDP
    assert per_gpu["method"] == "qlora" and per_gpu["distributed_strategy"] == "ddp"
    out = run_cli(
        "estimate",
        "--model",
        str(model),
        "--gpu-gib",
        "16",
        "--num-processes",
        "4",
        "--method",
        "lora",
        "--json",
    )
    per_gpu = json.loads(out.stdout.strip().splitlines()[-1])["per_gpu"]  # LoRA only: shard it
    assert per_gpu["distributed_strategy"] == "fsdp" and per_gpu["total_gib"] < 16 * 0.9
    assert per_gpu["reason"].startswith("FSDP over 4 GPUs")


# ---------------------------------------------------------------- real processes (gloo on the CPU)


def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path, embedded_path):
    """2 ranks x batch 1 take the rows one process takes as batch 2 (the Trainer's sampler is seeded and each
    rank takes every 2nd micro-batch); DDP averages the gradients: the same loss curve and the same adapter."""
    from safetensors.torch import load_file

    from core.export import export_adapter

    one, one_dir = TrainingJob(), None
    one_dir = one.start(cfg_for(tmp_path, per_device_train_batch_size=2))
    assert one.wait(600).status == "completed"
    two = TrainingJob()
    two_dir = two.start(cfg_for(tmp_path, num_processes=2))
    snap = two.wait(600)
    assert snap.status == "completed", snap.message
    loss_one = [r["loss"] for r in read_metrics(one_dir) if "loss" in r]
    loss_two = [r["loss"] for r in read_metrics(two_dir) if "loss" in r]
    assert len(loss_two) == 4 and loss_two[-1] < loss_two[0]
    assert max(abs(a - b) for a, b in zip(loss_one, loss_two, strict=True)) < 1e-3  # measured: ~1e-6
    assert [h["loss"] for h in snap.history if "loss" in h] == loss_two  # snapshot == metrics.jsonl
    plan = json.loads((two_dir / "launch.json").read_text())
    assert plan["num_processes"] == 2 and plan["distributed_strategy"] == "ddp"
    assert set(snap.info["rank_pids"]) == {"0", "1"} and snap.info["distributed_strategy"] == "ddp"
    # The adapter is saved once, as one process saves it, and nothing else is left in the run folder.
    assert sorted(p.name for p in (two_dir / "adapter").iterdir()) == sorted(
        p.name for p in (one_dir / "adapter").iterdir()
    )
    assert not [p for p in two_dir.iterdir() if p.name.startswith(".adapter")]
    a = load_file(str(one_dir / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(two_dir / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    lora_b = [k for k in a if "lora_B" in k]  # zero at the start: everything in them was learned
    moved = sum(float((b[k] ** 2).sum()) for k in lora_b) ** 0.5
    apart = sum(float(((a[k] - b[k]) ** 2).sum()) for k in lora_b) ** 0.5
    assert moved > 0 and apart / moved < 1e-2  # measured 2e-4 (Adam turns float-rounding noise into updates)
    result = json.loads((two_dir / "result.json").read_text())
    assert result["status"] == "completed" and result["num_processes"] == 2
    assert export_adapter(two_dir).zip_path.endswith(".zip")
    assert processes_of(two_dir) == []


def test_stop_ends_every_rank_at_the_same_step_and_keeps_the_adapter(tmp_path, embedded_path):
    """Launched from an accelerate config file (as for several machines), stopped from the job."""
    from core.distributed import _free_port

    config_file = tmp_path / "accelerate.yaml"
    config_file.write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nnum_machines: 1\nnum_processes: 2\n"
        f"mixed_precision: 'no'\nmain_process_port: {_free_port()}\n"
    )
    job, run_dir, pids, launcher = start_and_wait_for_a_step(
        cfg_for(tmp_path, max_steps=500, accelerate_config_file=str(config_file))
    )
    assert job.stop()
    snap = job.wait(300)
    # "stopped" needs accelerate launch to exit 0, i.e. both ranks left training and ended cleanly (a rank
    # stopping a step early would leave the other blocked in the all-reduce until it was killed).
    assert snap.status == "stopped" and 1 <= snap.step < 500, snap.message
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert (run_dir / "checkpoints" / f"checkpoint-{snap.step}").is_dir()  # resumable at the stop step
    assert json.loads((run_dir / "launch.json").read_text())["launch_command"][3:5] == [
        "--config_file",
        str(config_file),
    ]
    assert not any(alive(p) for p in [*pids.values(), launcher]) and processes_of(run_dir) == []


def test_a_killed_rank_fails_the_run_and_leaves_no_process(tmp_path, embedded_path):
    job, run_dir, pids, launcher = start_and_wait_for_a_step(
        cfg_for(tmp_path, max_steps=500, num_processes=2)
    )
    os.kill(pids["1"], signal.SIGKILL)
    snap = job.wait(300)
    assert snap.status == "failed"
    assert "rank 1 was killed by SIGKILL" in snap.message and "workers.log" in snap.message
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "failed" and result["adapter"] is None
    assert not (run_dir / "adapter").exists()
    assert not any(alive(p) for p in [*pids.values(), launcher]) and processes_of(run_dir) == []
    assert torch.distributed.is_available()  # the app's own process never joined a group
    assert not torch.distributed.is_initialized()


def test_adapter_from_a_gathered_state_dict_loads_as_peft_saves_it(tiny_llama, tmp_path):
    """FSDP's path (core.rank_save): the LoRA entries of a full state dict, written in peft's format, load with
    PeftModel.from_pretrained to the same weights; an adapter with no LoRA tensors is refused, not published."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from core.errors import TrainingFailed
    from core.health import require_healthy_adapter
    from core.model import prepare_for_training
    from core.rank_save import adapter_from_state_dict, write_peft_adapter

    base = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    model = prepare_for_training(base, TrainingConfig(), ("q_proj", "v_proj"), quantized=False)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    tensors = adapter_from_state_dict(model.state_dict(), "default")
    layers = AutoModelForCausalLM.from_pretrained(tiny_llama).config.num_hidden_layers
    assert len(tensors) == layers * 2 * 2 and not any(".default." in k for k in tensors)
    require_healthy_adapter(model, 2e-4, tensors)
    write_peft_adapter(model, tensors, tmp_path / "adapter")
    again = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), tmp_path / "adapter")
    ours = {n: p for n, p in model.named_parameters() if "lora_" in n}
    theirs = {n: p for n, p in again.named_parameters() if "lora_" in n}
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[n], theirs[n]) for n in ours)
    with pytest.raises(TrainingFailed, match="no LoRA weights"):
        require_healthy_adapter(model, 2e-4, {})  # what the Trainer's own save gathered under FSDP


def _cli_until_a_step(tmp_path: Path, processes: int) -> tuple[subprocess.Popen, Path]:
    """``launch.py train`` as a user runs it (own session, SIGINT not ignored), until the run logged a step."""
    from tests.test_cli import ROOT

    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(cfg_for(tmp_path, max_steps=500, output_dir=str(tmp_path / "runs")).to_dict())
    )
    cli = subprocess.Popen(
        [sys.executable, "launch.py", "train", str(config), "--num-processes", str(processes), "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        runs = sorted(Path(tmp_path / "runs").glob("run-*"))
        if runs and any("loss" in m for m in read_metrics(runs[-1])):
            return cli, runs[-1]
        assert cli.poll() is None, "the CLI ended before a step"
        time.sleep(0.5)
    raise AssertionError("no step within 300 s")


def test_ranks_end_with_a_supervisor_killed_outright(tmp_path, embedded_path):
    """SIGKILL of the CLI leaves the launcher no chance to clean up: the parent-death signal ends the launcher,
    and the ranks with it (a breaker pass found both ranks training on, re-parented to init)."""
    cli, run_dir = _cli_until_a_step(tmp_path, 2)
    assert len(processes_of(run_dir)) == 3  # the launcher and two ranks
    cli.kill()
    cli.wait(30)
    deadline = time.monotonic() + 60
    while processes_of(run_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_of(run_dir) == []


def test_ctrl_c_in_the_cli_stops_after_the_step_and_saves(tmp_path, embedded_path):
    """SIGINT while training: the CLI waits for the stop (a KeyboardInterrupt inside Thread.join used to make the
    job look finished, and the CLI exited without a result), then reports "stopped" with the adapter saved."""
    cli, run_dir = _cli_until_a_step(tmp_path, 1)
    cli.send_signal(signal.SIGINT)
    out, _ = cli.communicate(timeout=300)
    result = json.loads(out.strip().splitlines()[-1])
    assert cli.returncode == 0 and result["status"] == "stopped" and result["steps"] >= 1, result
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()


def test_estimate_refuses_a_negative_gpu_count_and_cpu_crowding_is_named(llama7b):
    out = run_cli(
        "estimate",
        "--model",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "--gpu-gib",
        "24",
        "--num-processes",
        "-1",
    )
    assert out.returncode == 2 and "-1 is not a number of GPUs" in out.stderr
    many = (os.cpu_count() or 1) + 1
    reason = choose_strategy(TrainingConfig(num_processes=many), llama7b, many, None).reason
    assert f"{many} processes share {os.cpu_count()} CPU cores" in reason
    if (os.cpu_count() or 1) >= 2:  # as many processes as cores: nothing to warn about
        assert "share" not in choose_strategy(TrainingConfig(num_processes=2), llama7b, 2, None).reason
