"""Estimator arithmetic against the seed chapter's numbers and peft's own parameter count."""

import json

import pytest

from core.config import TrainingConfig
from core.model import inspect_model
from core.vram import GIB, NF4_DQ_SCALE_BYTES, estimate_all, estimate_vram, recommend

# meta-llama/Llama-2-7b-hf config.json (the seed chapter's example model), shape fields only.
LLAMA2_7B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-05,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
}


@pytest.fixture(scope="module")
def llama7b(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama2-7b-config")
    (folder / "config.json").write_text(json.dumps(LLAMA2_7B))
    return inspect_model(str(folder))  # meta device: no weights exist or are read


def test_spec_matches_the_seed_print_trainable_parameters(llama7b):
    # Seed 26.7.2: "trainable params: 4,194,304 || all params: 6,742,609,920" for r=8 on q_proj, v_proj.
    trainable = llama7b.lora_params(8, ["q_proj", "v_proj"])
    assert trainable == 4_194_304
    assert llama7b.num_params + trainable == 6_742_609_920
    assert llama7b.linear_names == [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ]
    per_module = llama7b.lora_params_by_module(8, ["q_proj", "down_proj"])
    assert per_module == {"q_proj": 32 * 8 * (4096 + 4096), "down_proj": 32 * 8 * (11008 + 4096)}
    assert llama7b.has_chat_template is False and llama7b.max_position_embeddings == 4096


def test_full_finetuning_is_weights_gradients_and_adam(llama7b):
    est = estimate_vram(llama7b, TrainingConfig(), "full")
    c = est.components_gib
    # seed 26.1.1: 2 B weights + 2 B gradients + 4 B Adam = 8 B per parameter (56 GB for "7B")
    assert (c["weights"] + c["gradients"] + c["optimizer states"]) * GIB == pytest.approx(
        llama7b.num_params * 8
    )
    assert est.trainable_params == llama7b.num_params


def test_qlora_weights_are_nf4_plus_fp32_rest(llama7b):
    cfg = TrainingConfig(load_in_4bit=True)
    q = estimate_vram(llama7b, cfg, "qlora").components_gib["weights"] * GIB
    packed = llama7b.linear_params
    assert q == pytest.approx(packed * (0.5 + NF4_DQ_SCALE_BYTES) + (llama7b.num_params - packed) * 4)
    no_dq = estimate_vram(llama7b, cfg.replace(bnb_4bit_use_double_quant=False), "qlora").components_gib[
        "weights"
    ]
    assert no_dq * GIB > q  # double quantization saves ~0.37 bit per packed weight
    assert (no_dq * GIB - q) / packed == pytest.approx(4 / 64 - NF4_DQ_SCALE_BYTES)


def test_totals_land_in_the_seed_table_ranges(llama7b):
    # seed 26.6.3: LoRA (fp16) 7B needs 16-20 GB, QLoRA 6-8 GB (short sequences, batch 1, checkpointing)
    cfg = TrainingConfig(
        max_length=512,
        per_device_train_batch_size=1,
        gradient_checkpointing=True,
        lora_r=8,
        lora_target_modules=("q_proj", "v_proj"),
    )
    est = estimate_all(llama7b, cfg)
    assert 14 <= est["lora"].total_gib <= 20
    assert 5 <= est["qlora"].total_gib <= 8
    assert est["full"].total_gib > 50


def test_activations_scale_with_tokens_and_checkpointing_cuts_them(llama7b):
    base = TrainingConfig(max_length=1024, per_device_train_batch_size=2)
    a1 = estimate_vram(llama7b, base, "lora").components_gib
    a2 = estimate_vram(llama7b, base.replace(per_device_train_batch_size=4), "lora").components_gib
    assert a2["activations"] == pytest.approx(2 * a1["activations"])
    assert a2["logits / loss"] == pytest.approx(2 * a1["logits / loss"])
    gc = estimate_vram(llama7b, base.replace(gradient_checkpointing=True), "lora").components_gib
    assert gc["activations"] < a1["activations"] / 5


def test_recommendation_follows_the_seed_table(llama7b):
    cfg = TrainingConfig(max_length=512, per_device_train_batch_size=1, gradient_checkpointing=True)
    est = estimate_all(llama7b, cfg)
    assert recommend(est, 80).method == "lora"  # 80 GB, 7B -> LoRA
    assert recommend(est, 40).method == "lora"  # 40 GB, 7B -> LoRA
    assert recommend(est, 16).method == "qlora"  # 16 GB -> only 4-bit fits
    rec = recommend(est, 4)
    assert rec.method == "none" and "max_length" in rec.reason


def test_unknown_method_raises(llama7b):
    with pytest.raises(ValueError, match="method"):
        estimate_vram(llama7b, TrainingConfig(), "prefix")


def test_spec_count_equals_peft_count(tiny_llama):
    """r x (in + out) per adapted matrix, summed, is exactly what peft trains."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from core.model import get_peft_config

    spec = inspect_model(str(tiny_llama))
    for r, targets in [(8, ("q_proj", "v_proj")), (4, tuple(spec.linear_names)), (16, ("down_proj",))]:
        model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
        peft_model = get_peft_model(model, get_peft_config(TrainingConfig(lora_r=r), targets))
        trainable, total = peft_model.get_nb_trainable_parameters()
        assert trainable == spec.lora_params(r, targets), (r, targets)
        assert total - trainable == spec.num_params


def test_fit_status_and_the_cheapest_change_that_fits(llama7b):
    from core.vram import cheapest_fix, estimate_cpu_ram_gib, fit_status

    assert (
        fit_status(8, 10) == "fits"
        and fit_status(10.2, 10) == "tight"
        and fit_status(11, 10) == "does not fit"
    )
    cfg = TrainingConfig(max_length=4096, per_device_train_batch_size=8)
    est = estimate_all(llama7b, cfg)
    rec = recommend(est, 24, llama7b, cfg)
    assert rec.method == "none" and "Cheapest change that fits" in rec.reason
    fix = cheapest_fix(llama7b, cfg, 24)
    assert fix == (
        "turn on gradient checkpointing; per_device_train_batch_size 1 with gradient_accumulation_steps 8: "
        "about 19.0 GiB with LoRA."
    )
    fixed = cfg.replace(
        gradient_checkpointing=True, per_device_train_batch_size=1, gradient_accumulation_steps=8
    )
    assert estimate_vram(llama7b, fixed, "lora").total_gib <= 24 * 0.9  # the change it names really fits
    assert "QLoRA" in cheapest_fix(llama7b, cfg, 12)  # a smaller GPU needs the 4-bit base too
    assert cheapest_fix(llama7b, cfg, 2) is None  # nothing makes a 7B train in 2 GiB
    ram = estimate_cpu_ram_gib(llama7b, TrainingConfig(max_length=256, per_device_train_batch_size=1))
    assert 4 * llama7b.num_params / 2**30 < ram < 4 * llama7b.num_params / 2**30 + 6


def test_8bit_adam_shrinks_full_finetuning_optimizer_states(llama7b):
    from core.vram import ADAM_8BIT_BYTES

    plain = estimate_vram(llama7b, TrainingConfig(), "full").components_gib["optimizer states"]
    eight = estimate_vram(llama7b, TrainingConfig(optim="paged_adamw_8bit"), "full").components_gib[
        "optimizer states"
    ]
    assert eight * GIB == pytest.approx(llama7b.num_params * ADAM_8BIT_BYTES)
    assert eight < plain / 1.9


def test_8bit_base_weights_and_one_quantized_base_only(llama7b):
    w8 = estimate_vram(llama7b, TrainingConfig(load_in_8bit=True), "lora8").components_gib["weights"] * GIB
    rows = sum(g.out_features * g.count for g in llama7b.linear_groups)
    packed = llama7b.linear_params
    assert w8 == pytest.approx(packed + rows * 4 + (llama7b.num_params - packed) * 4)
    est = estimate_all(llama7b, TrainingConfig())
    assert est["qlora"].total_gib < est["lora8"].total_gib < est["lora"].total_gib
    assert TrainingConfig(load_in_8bit=True).method == "lora8" and TrainingConfig().method == "lora"
    with pytest.raises(Exception, match="choose one quantized base"):
        TrainingConfig.from_dict({"load_in_4bit": True, "load_in_8bit": True})


def test_precision_float32_doubles_weights_and_activations_fp16_costs_as_bf16(llama7b):
    base = TrainingConfig(max_length=512, per_device_train_batch_size=2)
    bf16 = estimate_vram(llama7b, base.replace(dtype="bfloat16"), "lora").components_gib
    fp16 = estimate_vram(llama7b, base.replace(dtype="float16"), "lora").components_gib
    fp32 = estimate_vram(llama7b, base.replace(dtype="float32"), "lora").components_gib
    assert fp16 == bf16
    assert fp32["weights"] == pytest.approx(2 * bf16["weights"])
    # fp32 SDPA keeps s x s scores per head (no flash kernel): more than double the 16-bit activations
    assert fp32["activations"] > 2 * bf16["activations"]
    assert fp32["logits / loss"] > bf16["logits / loss"]
    # QLoRA's weights stay NF4 whatever dtype says; its compute dtype is bnb_4bit_compute_dtype
    q = TrainingConfig(load_in_4bit=True, max_length=512)
    assert (
        estimate_vram(llama7b, q.replace(dtype="float32"), "qlora").components_gib
        == estimate_vram(llama7b, q, "qlora").components_gib
    )


def test_8bit_base_keeps_layer_inputs_under_checkpointing(llama7b):
    cfg = TrainingConfig(max_length=1024, per_device_train_batch_size=2, gradient_checkpointing=True)
    lora = estimate_vram(llama7b, cfg, "lora").components_gib["activations"]
    lora8 = estimate_vram(llama7b, cfg, "lora8").components_gib["activations"]
    # measured on the H200: 18.48 GiB reserved for this config, 1.8x a LoRA-style checkpointed estimate
    assert lora8 > 3 * lora
    total = estimate_vram(llama7b, cfg, "lora8").total_gib - 0.6
    assert total == pytest.approx(18.48, rel=0.1)


def test_recommendation_mentions_the_8bit_base_when_it_also_fits(llama7b):
    cfg = TrainingConfig(max_length=512, per_device_train_batch_size=1, gradient_checkpointing=True)
    est = estimate_all(llama7b, cfg)  # LoRA ~15.6, LoRA 8-bit ~11.4, QLoRA ~6.2 GiB
    rec = recommend(est, 16)
    assert (
        rec.method == "qlora"
        and f"8-bit base would also fit ({est['lora8'].total_gib:.1f} GiB)" in rec.reason
    )
    rec = recommend(est, 12)  # 10.8 GiB usable: only the 4-bit base fits
    assert rec.method == "qlora" and "8-bit" not in rec.reason
