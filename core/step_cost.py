"""The planner's step-cost model: the time of one optimizer step for a method, checkpointing setting and
micro-batch split, from step times measured on an H200 (bench/plan_speed.py, bench/RESULTS.md session 5).

Pure arithmetic; no torch import. Used by core.plan to order plans.
"""

from __future__ import annotations

# Step-cost model, measured with bench/plan_speed.py on a Llama-2-7B shape loaded as the product loads it (H200,
# bf16, r 16 on all projections; bench/RESULTS.md "session 5 · Planner inputs"). One micro-batch of t tokens takes
# max(FLOOR_MS, RATE_MS_PER_1K * t / 1000): below ~4k tokens the GPU waits on the host launching kernels (the
# floor), above it the GPU's rate sets the time. The rule fits the 53 measured cells with a median error of 4.7%.
# Ratios it encodes: checkpointing's recompute 1.39x (LoRA), 1.38x (QLoRA), 1.68x (8-bit base); QLoRA's
# dequantization 1.03x LoRA's time; LLM.int8's matmul 1.56-1.63x. Keys: (method, gradient checkpointing).
FLOOR_MS: dict[tuple[str, bool], float] = {
    ("lora", False): 283.0,
    ("lora", True): 485.0,
    ("qlora", False): 324.0,
    ("qlora", True): 512.0,
    ("lora8", False): 458.0,
    ("lora8", True): 774.0,
}
RATE_MS_PER_1K: dict[tuple[str, bool], float] = {
    ("lora", False): 74.0,
    ("lora", True): 102.0,
    ("qlora", False): 75.0,
    ("qlora", True): 104.0,
    ("lora8", False): 108.0,
    ("lora8", True): 154.0,
}
# The optimizer step on 40 M LoRA parameters (same bench): torch AdamW 4-10 ms, bitsandbytes' paged 8-bit AdamW
# 26-46 ms.
OPTIM_STEP_MS = {"adamw_torch": 7.0, "adamw_8bit": 36.0, "paged_adamw_8bit": 36.0}

# The shape bench/plan_speed.py measured the step costs on (Llama-2-7B): parameters and decoder layers.
MEASURED_PARAMS = 6.74e9
MEASURED_LAYERS = 32


def step_cost(
    method: str,
    checkpointing: bool,
    micro_batch_tokens: int,
    micro_batches: int,
    optim: str,
    num_params: float = MEASURED_PARAMS,
    num_layers: int = MEASURED_LAYERS,
) -> float:
    """Estimated time of one optimizer step in milliseconds of the H200 it was measured on (bench/RESULTS.md,
    session 5): ``micro_batches`` x max(floor, rate x tokens / 1000) plus the optimizer's step.

    Measured on a 7B shape; for another model the rate (the GPU's work: ~6 x parameters FLOPs per token) is
    scaled by its parameters and the floor (the host launching each layer's kernels) by its decoder layers, an
    inference from where the time goes (session 3's profile), not a measurement on other sizes. On a slower GPU
    every figure grows, the per-token part more than the floor; the planner uses only the ratios between plans.
    """
    key = (method, checkpointing)
    floor = FLOOR_MS[key] * num_layers / MEASURED_LAYERS
    rate = RATE_MS_PER_1K[key] * num_params / MEASURED_PARAMS
    micro = max(floor, rate * micro_batch_tokens / 1000)
    return micro_batches * micro + OPTIM_STEP_MS.get(optim, OPTIM_STEP_MS["adamw_torch"])
