"""GPU memory estimate for full fine-tuning, LoRA and QLoRA, by component, from a ModelSpec and a TrainingConfig.

Pure arithmetic; no torch import. All sizes are bytes internally and GiB (2**30 bytes) in the results.
Sources: the seed chapter 26.1.1 (full fine-tuning = weights + gradients + Adam states), the QLoRA paper
(Dettmers et al. 2023, section 2: NF4 blocks of 64 with fp32 absmax; double quantization stores 8-bit absmax with
one fp32 constant per 256 blocks, 0.127 bit/param), Korthikanti et al. 2022 ("Reducing Activation Recomputation",
eq. 1: saved activations per layer per token), and torch/transformers/peft behaviour cited per constant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.config import TrainingConfig
from core.modelspec import ModelSpec

GIB = 2**30
METHODS = ("full", "lora", "lora8", "qlora")

BF16_BYTES = 2  # bfloat16 / float16 weight and activation element
FP32_BYTES = (
    4  # LoRA A/B, their gradients, and each AdamW moment (peft autocasts adapters to fp32 by default)
)
# NF4 data: 4 bits per weight. Block scales: fp32 absmax per 64 weights = 4/64 B/param; with double quantization
# an 8-bit absmax per 64 weights plus one fp32 per 256 blocks = 1/64 + 4/(64*256) B/param (QLoRA paper, sec. 2).
NF4_BYTES = 0.5
NF4_SCALE_BYTES = 4 / 64
NF4_DQ_SCALE_BYTES = 1 / 64 + 4 / (64 * 256)
ADAM_STATES = 2  # torch.optim.AdamW keeps exp_avg and exp_avg_sq, each in the parameter's dtype
# bitsandbytes' 8-bit AdamW keeps both states as uint8 with one fp32 scale per 2048-value block (Dettmers et al.
# 2022, "8-bit Optimizers via Block-wise Quantization"): 2 x (1 + 4/2048) bytes per parameter.
ADAM_8BIT_BYTES = 2 * (1 + 4 / 2048)
# Logits path per token and vocabulary entry: bf16 logits (2) + fp32 upcast in transformers' ForCausalLMLoss (4)
# + fp32 log-softmax kept by cross_entropy for backward (4) + fp32 gradient of the logits during backward (4).
# Fitted to 13 on the same measurements (bench/RESULTS.md): not all four buffers are alive at the peak.
LOGITS_BYTES = 13
# CUDA context + cuBLAS workspace that torch allocates on first use; ~0.5 GiB measured with torch 2.x on
# Ampere/Hopper (nvidia-smi minus torch.cuda.max_memory_reserved), rounded up.
CUDA_CONTEXT_GIB = 0.6
# The three constants below were fitted on 24 measured configurations (two grids of 12, 135M-8B parameters,
# max_length 256-4096, batch 1-16, r 8-64, LoRA and QLoRA, checkpointing on/off; bench/vram_accuracy.py on an H200,
# bench/RESULTS.md), choosing the set with the smallest median + worst error that never under-estimates by > 7%.
# torch.cuda.max_memory_reserved() over the components' sum: reserved was 1-8% above allocated without gradient
# checkpointing and 10-24% above with it (recomputation frees and re-allocates blocks of varying size).
ALLOCATOR_OVERHEAD = {False: 0.10, True: 0.12}  # keyed by gradient_checkpointing
ALLOCATOR_FIXED_GIB = 0.1
# Measured / counted activation memory: peft's LoRA layers on a bf16 base keep a little less than the tensor count
# in _activation_bytes_per_token_layer (some saved inputs are shared views); prepare_model_for_kbit_training upcasts
# norms to fp32 and bitsandbytes keeps dequantization inputs, so a 4-bit base keeps ~30% more. Full fine-tuning was
# not measured: 1.0.
ACTIVATION_FACTOR = {"full": 1.0, "lora": 0.95, "lora8": 1.5, "qlora": 1.3}
# LoRA 8-bit with gradient checkpointing: bitsandbytes' MatMul8bitLt keeps its inputs as ctx attributes, which
# torch.utils.checkpoint cannot drop, so a fraction of each layer's activations stays alive for every layer.
# Fitted on bench/vram_accuracy.py --grid 8bit (H200, 6 configurations with checkpointing, bench/RESULTS.md).
LORA8_CHECKPOINT_KEPT = 0.3
# float32 compute on a GPU (no autocast, no flash-attention kernel): activations measured 1.35 times the tensors
# counted at 4 bytes (SmolLM2-135M, max_length 1024, batch 4, H200; bench/RESULTS.md). One measurement: float32
# training on a GPU is rare (bf16 or fp16 is the default wherever CUDA exists).
FP32_ACTIVATION_FACTOR = 1.35
# Liger-Kernel's LigerFusedLinearCrossEntropyLoss processes the tokens in chunks of about
# 2^ceil(log2(ceil(tokens / ceil(vocab / hidden)))) rows; 4096 is a conservative bound for 7B-class shapes.
LIGER_CHUNK_TOKENS = 4096
HEADROOM = 0.90  # recommend a method only if it uses at most 90% of the GPU


@dataclass(frozen=True)
class VramEstimate:
    """Estimated peak GPU memory of one training method, by component (GiB).

    Attributes:
        method: "full", "lora" or "qlora".
        components_gib: ordered {component: GiB}: weights, LoRA weights, gradients, optimizer states,
            activations, logits/loss, CUDA context, allocator overhead.
        trainable_params: parameters updated by the optimizer.
        notes: one line per assumption worth showing the user.
    """

    method: str
    components_gib: dict[str, float]
    trainable_params: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total_gib(self) -> float:
        """Sum of all components, GiB."""
        return sum(self.components_gib.values())


def compute_bytes(cfg: TrainingConfig, method: str) -> int:
    """Bytes per activation element: 4 when the compute dtype is float32, else 2 (bf16/fp16; "auto" on a GPU).

    QLoRA and LoRA 8-bit compute in ``bnb_4bit_compute_dtype``; LoRA and full fine-tuning in ``dtype``.
    """
    name = cfg.bnb_4bit_compute_dtype if method in ("qlora", "lora8") else cfg.dtype
    return FP32_BYTES if name == "float32" else BF16_BYTES


def _activation_bytes_per_token_layer(
    spec: ModelSpec, cfg: TrainingConfig, lora: bool, elem: int = 2
) -> float:
    """Bytes saved for backward per token per decoder layer (``elem``-byte activations, SDPA attention).

    Korthikanti et al. 2022 give 34*h bytes per token for a GPT layer with a 4h MLP; for a gated (SwiGLU) MLP of
    width i we count the tensors autograd keeps: two norm inputs and outputs (4h), q/k/v outputs (h + 2*kv),
    attention output and o_proj input (2h), two residual adds (2h), and gate, up, act(gate), act*up (4i), each
    2 bytes. SDPA / flash attention keeps no s x s matrix. With lora_dropout > 0 peft keeps one dropped-out copy of
    each adapted module's input.
    """
    h, i = spec.hidden_size, spec.intermediate_size
    kv = spec.num_key_value_heads * (h // max(spec.num_attention_heads, 1))
    saved = 4 * h + (h + 2 * kv) + 2 * h + 2 * h + 4 * i
    if lora and cfg.lora_dropout > 0:
        targets = set(_targets(spec, cfg))
        saved += sum(
            g.in_features * (g.count // max(spec.num_hidden_layers, 1))
            for g in spec.linear_groups
            if g.name in targets
        )
    return saved * elem


def _targets(spec: ModelSpec, cfg: TrainingConfig) -> tuple[str, ...]:
    from core.presets import default_target_modules

    return cfg.lora_target_modules or default_target_modules(spec.model_type, spec.linear_names)


def estimate_vram(
    spec: ModelSpec,
    cfg: TrainingConfig,
    method: str,
    fused_loss: bool = False,
    upcast_non_quantized: bool = False,
) -> VramEstimate:
    """Estimate peak GPU memory of training ``spec`` with ``cfg`` using ``method``.

    Args:
        spec: model shape facts (from config.json).
        cfg: uses max_length, per_device_train_batch_size, gradient_checkpointing, lora_r, lora_target_modules,
            lora_dropout, bnb_4bit_use_double_quant, optim, dtype (float32 doubles the 16-bit weights and
            activations; bfloat16, float16 and GPU "auto" cost the same) and packing (padding-free rows are full, so
            the worst case is the usual case). gradient_accumulation_steps does not change the peak.
        method: "full" (all weights, bf16 + AdamW in bf16), "lora" (bf16 base) or "qlora" (NF4 base).
        fused_loss: Liger-Kernel's fused linear + cross-entropy (never materialises the logits; the engine uses
            it on CUDA when installed). The default (False) is the calibrated, plain-PyTorch path.
        upcast_non_quantized: True = k-bit bases keep non-quantized weights in fp32 (peft's
            prepare_model_for_kbit_training, the seed recipe); False (default) = the engine's 16-bit norms and
            embeddings (core.model.prepare_for_training), what LoRA Studio trains with.

    Returns:
        VramEstimate with components in GiB.

    Raises:
        ValueError: unknown method.
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {METHODS}")
    n = spec.num_params
    tokens = cfg.per_device_train_batch_size * cfg.max_length  # worst case: every row padded to max_length
    elem = compute_bytes(cfg, method)
    weight_bytes = FP32_BYTES if method in ("full", "lora") and cfg.dtype == "float32" else BF16_BYTES
    notes: list[str] = []
    if cfg.packing:
        notes.append(
            f"Packing: each micro-batch holds {tokens:,} tokens of whole rows, so this is the usual peak, "
            "not only the worst case."
        )
    else:
        notes.append(
            f"Worst case: every micro-batch padded to {tokens:,} tokens; batches of shorter rows use less."
        )
    if elem == FP32_BYTES:
        notes.append("float32 compute: weights and activations at 4 bytes, twice bf16.")
    c: dict[str, float] = {}
    if method == "full":
        trainable = n
        c["weights"] = n * weight_bytes
        c["LoRA weights"] = 0.0  # the weights themselves
        c["gradients"] = n * weight_bytes
        c["optimizer states"] = n * (ADAM_8BIT_BYTES if "8bit" in cfg.optim else ADAM_STATES * weight_bytes)
        state_bytes = ADAM_8BIT_BYTES if "8bit" in cfg.optim else ADAM_STATES * weight_bytes
        notes.append(
            f"Full fine-tuning: weights {weight_bytes} B + gradients {weight_bytes} B + optimizer states "
            f"{state_bytes:.3g} B per parameter (in pure bf16 that is the textbook's 7B example, 26.1.1: "
            "14 + 14 + 28 GB)."
        )
    else:
        trainable = spec.lora_params(cfg.lora_r, _targets(spec, cfg))
        if method == "lora":
            c["weights"] = n * weight_bytes
        elif method == "lora8":
            # LLM.int8 (Dettmers et al. 2022): int8 weights plus one fp32 scale per output row; k-bit preparation
            # upcasts the rest to fp32 as for QLoRA.
            packed = spec.linear_params
            rows = sum(g.out_features * g.count for g in spec.linear_groups)
            c["weights"] = packed * 1 + rows * FP32_BYTES + (n - packed) * FP32_BYTES
            notes.append(
                f"int8 base: {packed / 1e6:,.1f} M linear weights at 1 byte; the rest upcast to fp32. bitsandbytes "
                "keeps each 8-bit layer's inputs even with gradient checkpointing (calibrated on 11 H200 runs)."
            )
        else:
            packed = spec.linear_params
            scale = NF4_DQ_SCALE_BYTES if cfg.bnb_4bit_use_double_quant else NF4_SCALE_BYTES
            # peft.prepare_model_for_kbit_training upcasts every non-quantized parameter (embeddings, norms,
            # lm_head) to fp32, which dominates small models with large vocabularies.
            rest = FP32_BYTES if upcast_non_quantized else BF16_BYTES
            c["weights"] = packed * (NF4_BYTES + scale) + (n - packed) * rest
            notes.append(
                f"NF4 base: {packed / 1e6:,.1f} M packed linear weights at "
                f"{(NF4_BYTES + scale) * 8:.3f} bit; {(n - packed) / 1e6:,.1f} M others (norms, embeddings) "
                + ("upcast to fp32 (the seed recipe)." if upcast_non_quantized else "in 16 bit.")
            )
        c["LoRA weights"] = trainable * FP32_BYTES
        c["gradients"] = trainable * FP32_BYTES
        c["optimizer states"] = trainable * (
            ADAM_8BIT_BYTES if "8bit" in cfg.optim else ADAM_STATES * FP32_BYTES
        )
    per_layer = (
        _activation_bytes_per_token_layer(spec, cfg, lora=method != "full", elem=elem)
        * ACTIVATION_FACTOR["lora" if method == "qlora" and not upcast_non_quantized else method]
    )
    if elem == FP32_BYTES:
        per_layer *= FP32_ACTIVATION_FACTOR
    if cfg.checkpointing_on:
        # Only each layer's input (h, 16-bit) is kept; one layer is recomputed at a time during backward.
        c["activations"] = tokens * (spec.num_hidden_layers * spec.hidden_size * elem + per_layer)
        if method == "lora8":
            c["activations"] += tokens * spec.num_hidden_layers * per_layer * LORA8_CHECKPOINT_KEPT
        notes.append("Gradient checkpointing: keeps one hidden state per layer and recomputes the rest.")
    else:
        c["activations"] = tokens * spec.num_hidden_layers * per_layer
    # float32 logits replace the 2-byte bf16 ones (the fp32 upcast then aliases them): +2 bytes.
    c["logits / loss"] = tokens * spec.vocab_size * (LOGITS_BYTES + (elem - BF16_BYTES))
    if fused_loss:
        # Liger's fused linear cross-entropy computes the loss in chunks; what stays is about an fp32 gradient of
        # the final hidden states plus one chunk (LIGER_CHUNK_TOKENS tokens) of fp32 logits.
        c["logits / loss"] = (
            tokens * spec.hidden_size * FP32_BYTES
            + min(tokens, LIGER_CHUNK_TOKENS) * spec.vocab_size * FP32_BYTES * 2
        )
    subtotal = sum(c.values())
    c["allocator overhead"] = subtotal * ALLOCATOR_OVERHEAD[cfg.checkpointing_on] + ALLOCATOR_FIXED_GIB * GIB
    gib = {k: v / GIB for k, v in c.items()}
    gib["CUDA context"] = CUDA_CONTEXT_GIB
    return VramEstimate(method=method, components_gib=gib, trainable_params=trainable, notes=tuple(notes))


def estimate_all(spec: ModelSpec, cfg: TrainingConfig) -> dict[str, VramEstimate]:
    """Estimates for every method, keyed "full", "lora", "qlora"."""
    return {m: estimate_vram(spec, cfg, m) for m in METHODS}


TIGHT_FACTOR = 1.05  # over the GPU by up to 5%: the estimate's spread (bench/RESULTS.md) makes it a maybe


def fit_status(total_gib: float, gpu_gib: float) -> str:
    """ "fits" (<= 90% of the GPU), "tight" (up to 105%: within the estimate's error) or "does not fit"."""
    if total_gib <= gpu_gib * HEADROOM:
        return "fits"
    return "tight" if total_gib <= gpu_gib * TIGHT_FACTOR else "does not fit"


def estimate_cpu_ram_gib(spec: ModelSpec, cfg: TrainingConfig) -> float:
    """RAM for LoRA on the CPU (float32 weights and activations, no CUDA context), GiB.

    Same arithmetic as estimate_vram's "lora" with 4-byte weights and activations, plus 1 GiB for the Python,
    torch and tokenizer runtime (measured: ~0.9 GiB resident after importing transformers, peft and gradio).
    """
    est = estimate_vram(spec, cfg.replace(dtype="bfloat16"), "lora").components_gib
    weights = est["weights"] * 2  # fp32 instead of bf16
    activations = est["activations"] * 2
    rest = est["LoRA weights"] + est["gradients"] + est["optimizer states"] + est["logits / loss"]
    return weights + activations + rest + 1.0
