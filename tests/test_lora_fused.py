"""core.lora_fused computes what peft's LoRA forward computes: same loss, same gradients, same dropout masks."""

from __future__ import annotations

import pytest
import torch

from core.config import TrainingConfig
from core.lora_fused import disable_fused_lora, enable_fused_lora


def _loss_and_grads(model, batch, seed: int) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    loss = model(**batch).loss
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.item(), grads


@pytest.mark.parametrize("checkpointing", [False, True])
def test_fused_branch_equals_peft_forward(tiny_llama, checkpointing):
    """fp32 on the CPU, dropout 0.1, LoRA B non-zero: loss and every LoRA gradient agree to float32 rounding,
    with and without gradient checkpointing (whose recomputation must replay the same dropout masks)."""
    from transformers import AutoModelForCausalLM

    from core.model import prepare_for_training

    cfg = TrainingConfig(
        model_name_or_path=str(tiny_llama),
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.1,
        gradient_checkpointing=checkpointing,
    )
    base = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32, attn_implementation="sdpa")
    torch.manual_seed(0)
    model = prepare_for_training(
        base,
        cfg,
        ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        quantized=False,
    )
    with (
        torch.no_grad()
    ):  # B starts at zero: move it so the branch contributes to the output and to A's gradient
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    model.train()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 1000, (2, 48), generator=g)
    batch = {"input_ids": ids, "labels": ids.clone()}
    loss_ref, grads_ref = _loss_and_grads(model, batch, seed=7)
    assert enable_fused_lora(model) == 14
    loss_fused, grads_fused = _loss_and_grads(model, batch, seed=7)
    loss_other, _ = _loss_and_grads(model, batch, seed=8)
    assert abs(loss_fused - loss_ref) <= 1e-5 * abs(loss_ref)
    assert loss_other != loss_fused  # dropout is really on: another seed draws other masks
    for name, ref in grads_ref.items():
        err = (grads_fused[name] - ref).norm() / ref.norm().clamp_min(1e-12)
        assert err < 1e-4, (name, float(err))
    assert disable_fused_lora(model) == 14
    loss_back, _ = _loss_and_grads(model, batch, seed=7)
    assert loss_back == loss_ref


def test_fused_branch_falls_back_where_it_would_differ(tiny_llama):
    """Eval (no grad), disabled adapters: peft's own forward runs (same outputs as unpatched)."""
    from transformers import AutoModelForCausalLM

    from core.model import prepare_for_training

    cfg = TrainingConfig(model_name_or_path=str(tiny_llama), lora_r=4, lora_alpha=8)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    model = prepare_for_training(base, cfg, ("q_proj", "v_proj"), quantized=False)
    ids = torch.randint(3, 1000, (1, 16), generator=torch.Generator().manual_seed(2))
    model.eval()
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        enable_fused_lora(model)
        assert torch.equal(model(input_ids=ids).logits, ref)
        with model.disable_adapter():
            plain = model(input_ids=ids).logits
    assert plain.shape == ref.shape


def test_last_layer_of_each_block_is_not_recomputed_under_checkpointing(tiny_llama):
    """Each decoder layer's last LoRA layer (down_proj) runs its branch before its base product, so the
    non-reentrant checkpoint's recomputation stops before that product: its base layer runs once per step
    (forward only) instead of twice, while every other base layer runs twice (forward and recompute)."""
    from transformers import AutoModelForCausalLM

    from core.model import prepare_for_training

    cfg = TrainingConfig(
        model_name_or_path=str(tiny_llama),
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.1,
        gradient_checkpointing=True,
    )
    base = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    model = prepare_for_training(base, cfg, ("q_proj", "up_proj", "down_proj"), quantized=False)
    enable_fused_lora(model)
    model.train()
    calls: dict[str, int] = {}
    for name, module in model.named_modules():
        if name.endswith(("down_proj.base_layer", "up_proj.base_layer", "q_proj.base_layer")):
            key = name.split(".")[-2]
            module.register_forward_hook(lambda *_, k=key: calls.__setitem__(k, calls.get(k, 0) + 1))
    ids = torch.randint(3, 1000, (1, 24), generator=torch.Generator().manual_seed(3))
    model(input_ids=ids, labels=ids).loss.backward()
    layers = base.config.num_hidden_layers
    assert calls == {"q_proj": 2 * layers, "up_proj": 2 * layers, "down_proj": layers}
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]  # A's are 0 while B is 0
    assert len(grads) == 3 * layers and all(g is not None and g.abs().sum() > 0 for g in grads)
