"""The GPU memory planner (core.plan): the fastest plan that fits, on the textbook's examples; gradient
checkpointing "auto"; the plan as a config that `launch.py train` accepts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import TrainingConfig
from core.errors import ConfigError
from core.model import inspect_model
from core.plan import Plan, plan_training
from core.plan_report import resolve_gradient_checkpointing
from core.step_cost import step_cost
from core.vram import HEADROOM, estimate_vram

ROOT = Path(__file__).resolve().parents[1]
from tests.test_vram import LLAMA2_7B  # noqa: E402  (meta-llama/Llama-2-7b-hf config.json, the textbook's)

# meta-llama/Llama-2-70b-hf config.json, shape fields
LLAMA2_70B = {
    **LLAMA2_7B,
    "hidden_size": 8192,
    "intermediate_size": 28672,
    "num_attention_heads": 64,
    "num_hidden_layers": 80,
    "num_key_value_heads": 8,
}
# the textbook's setting: max_length 512, effective batch 4
TEXTBOOK = TrainingConfig(max_length=512, per_device_train_batch_size=4, gradient_accumulation_steps=1)


def _spec(tmp_path_factory, name, config):
    folder = tmp_path_factory.mktemp(name)
    (folder / "config.json").write_text(json.dumps(config))
    return inspect_model(str(folder))  # meta device: no weights


@pytest.fixture(scope="module")
def llama7b(tmp_path_factory):
    return _spec(tmp_path_factory, "llama2-7b", LLAMA2_7B)


@pytest.fixture(scope="module")
def llama70b(tmp_path_factory):
    return _spec(tmp_path_factory, "llama2-70b", LLAMA2_70B)


def _fits_and_keeps_the_effective_batch(plan: Plan, gpu_gib: float) -> None:
    assert plan.total_gib <= gpu_gib * HEADROOM
    assert plan.per_device_train_batch_size * plan.gradient_accumulation_steps == 4
    assert plan.max_length == 512 and not plan.shortened


def test_7b_on_16_gb_is_qlora_with_checkpointing_or_a_smaller_micro_batch(llama7b):
    result = plan_training(llama7b, TEXTBOOK, 16)
    plan = result.chosen
    assert plan is not None and plan.method == "qlora"
    _fits_and_keeps_the_effective_batch(plan, 16)
    assert plan.gradient_checkpointing or plan.per_device_train_batch_size < 4
    # the alternatives are slower, and each fits too
    assert [p.relative_time for p in result.plans] == sorted(p.relative_time for p in result.plans)
    assert result.plans[0].relative_time == 1.0 and 1 <= len(result.plans) <= 4
    for p in result.plans:
        _fits_and_keeps_the_effective_batch(p, 16)
    # LoRA on a 16-bit base is faster per step but cannot fit: the reason names it
    assert "Faster plans need more" in result.reason and "LoRA (16-bit base)" in result.reason


def test_7b_on_24_gb_takes_the_fastest_of_the_plans_that_fit(llama7b):
    result = plan_training(llama7b, TEXTBOOK, 24)
    plan = result.chosen
    assert plan is not None
    _fits_and_keeps_the_effective_batch(plan, 24)
    # every combination that fits is at least as slow as the chosen one
    from core.plan import candidate_plans

    fitting = [p for p in candidate_plans(llama7b, TEXTBOOK) if p.total_gib <= 24 * HEADROOM]
    assert plan.step_cost == min(p.step_cost for p in fitting)
    # the textbook's 24 GB row: QLoRA (LoRA on a 16-bit base fits only with a smaller micro-batch or
    # checkpointing, both slower by the measured step costs)
    assert plan.method in ("qlora", "lora8")
    assert any(p.method == "lora" and p.relative_time > 1 for p in result.plans)


def test_7b_on_80_gb_is_lora_as_set(llama7b):
    plan = plan_training(llama7b, TEXTBOOK, 80).chosen
    assert plan is not None and plan.method == "lora"
    assert not plan.gradient_checkpointing and plan.per_device_train_batch_size == 4
    assert plan.optim == "adamw_torch"


def test_70b_on_48_gb_is_qlora_and_on_24_gb_nothing_fits_with_the_reason(llama70b):
    plan = plan_training(llama70b, TEXTBOOK, 48).chosen
    assert plan is not None and plan.method == "qlora"
    assert plan.total_gib <= 48 * HEADROOM
    none = plan_training(llama70b, TEXTBOOK, 24)
    assert none.chosen is None and none.method == "none" and none.plans == ()
    assert "Nothing fits 24 GiB" in none.reason and "weights alone" in none.reason
    # the smallest catalogue GPU on which the leanest plan fits
    assert none.smallest_gpu and "48 GB" in none.smallest_gpu and none.smallest_gpu in none.reason


def test_max_length_is_shortened_only_when_nothing_fits_and_says_so(llama7b):
    cfg = TrainingConfig(max_length=4096, per_device_train_batch_size=1, gradient_accumulation_steps=1)
    # QLoRA with checkpointing at 4096 tokens needs more than 90% of 6 GiB, at a shorter length it fits
    full = plan_training(llama7b, cfg, 6)
    assert full.chosen is not None and full.chosen.shortened and full.chosen.max_length < 4096
    assert "max_length 4096" in full.reason and "longer rows are cut" in full.reason
    assert plan_training(llama7b, cfg, 24).chosen.max_length == 4096  # fits: never shortened


def test_fixed_choices_are_kept(llama7b):
    lora_only = plan_training(llama7b, TEXTBOOK, 24, methods=("lora",))
    assert all(p.method == "lora" for p in lora_only.plans)
    on = plan_training(llama7b, TEXTBOOK.replace(gradient_checkpointing=True), 80)
    assert on.chosen.gradient_checkpointing is True  # the user set it: not searched
    same_batch = plan_training(llama7b, TEXTBOOK, 16, split_batch=False)
    assert all(p.per_device_train_batch_size == 4 for p in same_batch.plans)


def test_a_rank_that_is_not_low_rank_and_moe_models_are_refused(tmp_path_factory, llama7b):
    tiny = _spec(
        tmp_path_factory,
        "tiny",
        {**LLAMA2_7B, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "vocab_size": 64},
    )
    refused = plan_training(tiny, TrainingConfig(lora_r=64), 24)
    assert refused.chosen is None and "no longer low-rank" in refused.reason
    from dataclasses import replace

    moe = plan_training(replace(llama7b, model_type="mixtral"), TEXTBOOK, 80)
    assert moe.chosen is None and "mixture-of-experts" in moe.reason


def test_step_cost_orders_checkpointing_quantization_and_micro_batches():
    lora = step_cost("lora", False, 2048, 1, "adamw_torch")
    assert step_cost("lora", True, 2048, 1, "adamw_torch") > lora  # recompute
    assert step_cost("qlora", False, 2048, 1, "adamw_torch") > lora  # dequantization
    assert step_cost("lora", False, 512, 4, "adamw_torch") > lora  # four small micro-batches, same tokens
    assert step_cost("lora", False, 2048, 1, "paged_adamw_8bit") > lora


def test_plan_fields_apply_to_a_valid_config_and_name_the_changes(llama7b):
    plan = plan_training(llama7b, TEXTBOOK, 16).chosen
    cfg = plan.apply(TEXTBOOK)
    assert cfg.method == plan.method and cfg.max_length == 512
    assert cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps == 4
    assert estimate_vram(llama7b, cfg, cfg.method).total_gib == pytest.approx(plan.total_gib)
    assert "load_in_4bit: false -> true" in plan.changes(TEXTBOOK)
    assert plan.changes(cfg) == []


def test_gradient_checkpointing_accepts_true_false_and_auto():
    assert TrainingConfig().gradient_checkpointing == "auto" and not TrainingConfig().checkpointing_on
    for raw, want in [(True, True), ("false", False), ("on", True), ("AUTO", "auto"), (0, False)]:
        assert TrainingConfig.from_dict({"gradient_checkpointing": raw}).gradient_checkpointing == want
    with pytest.raises(ConfigError, match="gradient_checkpointing: 'sometimes' is not true, false or auto"):
        TrainingConfig.from_dict({"gradient_checkpointing": "sometimes"})


def test_auto_checkpointing_turns_on_only_when_needed_and_says_why(llama7b):
    cfg = TrainingConfig(max_length=2048, per_device_train_batch_size=2)
    off = estimate_vram(llama7b, cfg.replace(gradient_checkpointing=False), "lora").total_gib
    on, why = resolve_gradient_checkpointing(cfg, llama7b, True, 24.0)
    assert on is True and f"{off:.1f} GiB" in why and "auto -> on" in why
    on, why = resolve_gradient_checkpointing(cfg, llama7b, True, 140.0)
    assert on is False and "auto -> off" in why and f"{off:.1f} GiB" in why
    assert resolve_gradient_checkpointing(cfg, llama7b, False, None)[0] is False  # CPU: off
    fixed = cfg.replace(gradient_checkpointing=False)
    assert resolve_gradient_checkpointing(fixed, llama7b, True, 24.0) == (
        False,
        "Gradient checkpointing: off (as set).",
    )


def test_the_engine_resolves_auto_checkpointing(llama7b):
    from core.engine import plan_engine

    cfg = TrainingConfig(max_length=2048, per_device_train_batch_size=2, auto_micro_batch=False)
    gpu = plan_engine(cfg, llama7b, has_cuda=True, gpu_gib=24.0)
    assert gpu.gradient_checkpointing is True and gpu.apply(cfg).gradient_checkpointing is True
    assert any("auto -> on" in n for n in gpu.notes)
    cpu = plan_engine(cfg, llama7b, has_cuda=False, gpu_gib=None)
    assert cpu.gradient_checkpointing is False and any("auto -> off" in n for n in cpu.notes)


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "launch.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_cli_plan_writes_a_config_that_train_accepts_unchanged(tiny_llama, tmp_path):
    start = tmp_path / "mine.json"
    start.write_text(
        json.dumps(
            {
                "dataset_name": str(ROOT / "assets" / "humaneval_alpaca.jsonl"),
                "max_steps": 1,
                "max_length": 128,
                "monitor_rows": 0,
                "output_dir": str(tmp_path / "runs"),
                "per_device_train_batch_size": 2,
                "gradient_accumulation_steps": 2,
            }
        )
    )
    out = tmp_path / "plan.json"
    done = run_cli(
        "plan", "--model", str(tiny_llama), "--gpu-gib", "16", "--config", str(start), "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert f"Config written to {out}" in done.stdout and "Plan for 16 GiB: LoRA (16-bit base)" in done.stdout
    planned = json.loads(out.read_text())
    assert planned["dataset_name"].endswith("humaneval_alpaca.jsonl") and planned["max_steps"] == 1
    assert planned["per_device_train_batch_size"] * planned["gradient_accumulation_steps"] == 4
    assert isinstance(planned["gradient_checkpointing"], bool)
    again = run_cli("plan", "--model", str(tiny_llama), "--gpu-gib", "16", "--out", str(out))
    assert again.returncode == 2 and "never overwrites" in again.stderr  # the first plan is kept
    trained = run_cli("train", str(out), "--json")
    assert trained.returncode == 0, trained.stdout + trained.stderr[-3000:]
    result = json.loads(trained.stdout.strip().splitlines()[-1])
    assert result["status"] == "completed" and result["steps"] == 1
    as_json = run_cli("estimate", "--model", str(tiny_llama), "--gpu-gib", "16", "--json")
    report = json.loads(as_json.stdout.strip().splitlines()[-1])
    assert report["plan"]["config"]["model_name_or_path"] == str(tiny_llama)
    assert TrainingConfig.from_dict(report["plan"]["config"]).method == report["plan"]["method"]


def test_auto_checkpointing_lets_ddp_replicate_what_fits_with_it(llama7b):
    from core.parallel import choose_strategy

    cfg = TrainingConfig(max_length=2048, per_device_train_batch_size=2)  # "auto"
    off = estimate_vram(llama7b, cfg, "lora").total_gib
    on = estimate_vram(llama7b, cfg.replace(gradient_checkpointing=True), "lora").total_gib
    gpu = (on / HEADROOM + off / HEADROOM) / 2  # fits with checkpointing only
    assert choose_strategy(cfg, llama7b, 2, gpu).strategy == "ddp"
    assert choose_strategy(cfg.replace(gradient_checkpointing=False), llama7b, 2, gpu).strategy == "fsdp"


def test_a_mixture_of_experts_model_is_refused_with_the_reason_offline(tmp_path):
    out = tmp_path / "moe.json"
    done = subprocess.run(
        [
            sys.executable,
            "launch.py",
            "plan",
            "--model",
            "mistralai/Mixtral-8x7B-Instruct-v0.1",
            "--gpu-gib",
            "80",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 1 and "not estimated" in done.stdout and "mixture-of-experts" in done.stdout
    assert not out.exists() and "Nothing written" in done.stdout


def test_splits_stay_within_the_limits_the_config_and_the_form_accept(llama7b):
    big = TrainingConfig(max_length=512, per_device_train_batch_size=4, gradient_accumulation_steps=512)
    result = plan_training(llama7b, big, 6)  # effective batch 2048 on a small card
    assert result.plans and all(p.gradient_accumulation_steps <= 1024 for p in result.plans)
    for p in result.plans:
        p.apply(big)  # a valid TrainingConfig: no ConfigError
    form = plan_training(
        llama7b,
        TrainingConfig(per_device_train_batch_size=2, gradient_accumulation_steps=64),
        140,
        max_batch=64,
        max_accumulation=64,
    )
    assert all(
        p.per_device_train_batch_size <= 64 and p.gradient_accumulation_steps <= 64 for p in form.plans
    )
    prime = TrainingConfig(per_device_train_batch_size=1, gradient_accumulation_steps=997)
    assert all(
        p.per_device_train_batch_size * p.gradient_accumulation_steps == 997
        for p in plan_training(llama7b, prime, 24).plans
    )
    assert (
        "No split of the effective batch"
        in plan_training(llama7b, prime, 24, max_batch=64, max_accumulation=64).reason
    )


def test_a_shorter_max_length_is_the_longest_that_fits_within_the_context(llama7b):
    cfg = TrainingConfig(max_length=8192, per_device_train_batch_size=1)
    result = plan_training(llama7b, cfg, 8)
    plan = result.chosen
    assert plan.shortened and plan.max_length % 64 == 0
    assert plan.max_length <= llama7b.max_position_embeddings  # Llama-2: 4096
    longer = plan_training(llama7b, cfg.replace(max_length=plan.max_length + 64), 8).chosen
    assert longer is None or longer.shortened  # 64 tokens more does not fit


def test_cli_refuses_bad_out_paths_and_misspelled_targets_before_any_work(tiny_llama, tmp_path):
    base = ["plan", "--model", str(tiny_llama), "--gpu-gib", "16"]
    for out, why in [
        ("", "is not a file name"),
        (str(tmp_path) + "/", "is not a file name"),
        (str(tmp_path / "no" / "p.json"), "does not exist"),
    ]:
        done = run_cli(*base, "--out", out)
        assert done.returncode == 2 and why in done.stderr, (out, done.stderr)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"lora_target_modules": ["c_attn"]}))
    done = run_cli(*base, "--config", str(cfg), "--out", str(tmp_path / "p.json"))
    assert done.returncode == 2 and "c_attn" in done.stderr and not (tmp_path / "p.json").exists()
    done = run_cli(*base, "--out", str(tmp_path / "ok.json"), "--json")
    assert done.returncode == 0 and json.loads(done.stdout.splitlines()[-1])["out"] == str(
        tmp_path / "ok.json"
    )
    assert (tmp_path / "ok.json").stat().st_mode & 0o044  # readable like any saved file
