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
# + fp32 log-softmax kept by cross_entropy for backward (4) + fp32 gradient of the logits during backward (4): all
# four are alive at the loss's backward (v5: the first-principles count also fits best; bench/RESULTS.md session 5).
LOGITS_BYTES = 14
# CUDA context + cuBLAS workspace that torch allocates on first use; ~0.5 GiB measured with torch 2.x on
# Ampere/Hopper (nvidia-smi minus torch.cuda.max_memory_reserved), rounded up.
CUDA_CONTEXT_GIB = 0.6
# v5 constants (session 5), fitted on the 9 configurations of bench/vram_accuracy.py --grid arch-fit (H200; six
# architectures outside the v1-v4 grids: large vocabularies, fused projections, tied embeddings, GQA ratios, a
# head_dim that is not hidden / heads) through the product's own path (16-bit norms on k-bit bases, fused LoRA
# branch) and checked on the 9 untouched configurations of --grid arch-holdout, choosing the set with the smallest
# median error and the least under-estimation whose worst fitted error stays under 12% (bench/RESULTS.md).
# Allocator overhead: torch.cuda.max_memory_reserved() over the components' sum, on everything but the frozen
# weights (allocated once in large blocks; what fragments is what is freed and allocated again every step).
ALLOCATOR_OVERHEAD = {False: 0.12, True: 0.10}  # keyed by gradient_checkpointing
ALLOCATOR_FIXED_GIB = 0.1
WEIGHTS_OVERHEAD_EXEMPT = (
    1.0  # share of the weights exempt from the overhead (v1-v4 charged it on them too: 0)
)
# Measured / counted activation memory: LoRA on a 16-bit base and on a 4-bit base with 16-bit norms (the engine)
# keep 0.9 of the tensors counted in _activation_bytes_per_token_layer (some saved inputs are shared views); an
# 8-bit base keeps its layers' inputs for bitsandbytes' MatMul8bitLt. Full fine-tuning was not measured: 1.0.
ACTIVATION_FACTOR = {"full": 1.0, "lora": 0.9, "lora8": 1.3, "qlora": 0.9}
# The seed recipe's k-bit bases (fp32 norms and embeddings; v4's fit on the v1-v4 grids, bench/RESULTS.md).
UPCAST_ACTIVATION_FACTOR = {"lora8": 1.5, "qlora": 1.3}
# LoRA 8-bit with gradient checkpointing: bitsandbytes' MatMul8bitLt keeps its inputs as ctx attributes, which
# torch.utils.checkpoint cannot drop, so a fraction of each layer's activations stays alive for every layer
# (v4 fit on --grid 8bit, kept by v5).
LORA8_CHECKPOINT_KEPT = 0.3
# float32 compute on a GPU (no autocast, no flash-attention kernel): activations measured 1.35 times the tensors
# counted at 4 bytes (SmolLM2-135M, max_length 1024, batch 4, H200; bench/RESULTS.md). One measurement: float32
# training on a GPU is rare (bf16 or fp16 is the default wherever CUDA exists).
FP32_ACTIVATION_FACTOR = 1.35
# Liger-Kernel's LigerFusedLinearCrossEntropyLoss processes the tokens in chunks of about
# 2^ceil(log2(ceil(tokens / ceil(vocab / hidden)))) rows; 4096 is a conservative bound for 7B-class shapes.
LIGER_CHUNK_TOKENS = 4096
# torch.native_dropout's mask is a bool tensor: 1 byte per element of each adapted module's input.
DROPOUT_MASK_BYTES = 1
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


def _layer_widths(spec: ModelSpec) -> tuple[int, int, int]:
    """(q + k + v output width, attention output width, MLP width) of one decoder layer, from the real linear
    shapes: fused qkv_proj / gate_up_proj (Phi-3) and a head_dim that is not hidden / heads (Qwen3, Gemma 3,
    Mistral-Nemo) count as they are built; families without those names fall back to the config's fields."""
    h = spec.hidden_size
    g = {group.name: group for group in spec.linear_groups}
    kv = spec.num_key_value_heads * (h // max(spec.num_attention_heads, 1))
    if "qkv_proj" in g:
        qkv = g["qkv_proj"].out_features
    elif {"q_proj", "k_proj", "v_proj"} <= g.keys():
        qkv = g["q_proj"].out_features + g["k_proj"].out_features + g["v_proj"].out_features
    else:
        qkv = h + 2 * kv
    attn = g["o_proj"].in_features if "o_proj" in g else h
    if "gate_up_proj" in g:
        mlp = g["gate_up_proj"].out_features // 2
    elif "gate_proj" in g:
        mlp = g["gate_proj"].out_features
    else:
        mlp = spec.intermediate_size
    return qkv, attn, mlp


def _activation_bytes_per_token_layer(
    spec: ModelSpec, cfg: TrainingConfig, lora: bool, elem: int = 2, fused_lora: bool = True
) -> float:
    """Bytes saved for backward per token per decoder layer (``elem``-byte activations, SDPA attention).

    Korthikanti et al. 2022 give 34*h bytes per token for a GPT layer with a 4h MLP; for a gated (SwiGLU) MLP of
    width i we count the tensors autograd keeps: two norm inputs and outputs (4h), q/k/v outputs (their real
    widths, _layer_widths), attention output and o_proj input (2 x the attention width), two residual adds (2h),
    and gate, up, act(gate), act*up (4i), each ``elem`` bytes. SDPA / flash attention keeps no s x s matrix. With
    lora_dropout > 0 the engine's fused LoRA branch (core.lora_fused) keeps each adapted module's dropout mask
    (DROPOUT_MASK_BYTES per input element) rather than a dropped-out copy (peft's forward, ``fused_lora=False``).
    """
    h = spec.hidden_size
    qkv, attn, mlp = _layer_widths(spec)
    saved = (4 * h + qkv + 2 * attn + 2 * h + 4 * mlp) * elem
    if lora and cfg.lora_dropout > 0:
        targets = set(lora_targets(spec, cfg))
        saved += (DROPOUT_MASK_BYTES if fused_lora else elem) * sum(
            g.in_features * (g.count // max(spec.num_hidden_layers, 1))
            for g in spec.linear_groups
            if g.name in targets
        )
    return saved


def lora_targets(spec: ModelSpec, cfg: TrainingConfig) -> tuple[str, ...]:
    """``cfg.lora_target_modules``, or the model family's default (core.presets.default_target_modules)."""
    from core.presets import default_target_modules

    return cfg.lora_target_modules or default_target_modules(spec.model_type, spec.linear_names)


def estimate_vram(
    spec: ModelSpec,
    cfg: TrainingConfig,
    method: str,
    fused_loss: bool = False,
    upcast_non_quantized: bool = False,
    fused_lora: bool = True,
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
        fused_lora: the engine's fused LoRA branch (core.lora_fused, on by default) keeps a 1-byte dropout mask
            per adapted input element; peft's own forward (False) keeps a dropped-out copy in the compute dtype.
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
        trainable = spec.lora_params(cfg.lora_r, lora_targets(spec, cfg))
        if method == "lora":
            c["weights"] = n * weight_bytes
        elif method == "lora8":
            # LLM.int8 (Dettmers et al. 2022): int8 weights plus one fp32 scale per output row; k-bit preparation
            # upcasts the rest to fp32 as for QLoRA.
            packed = spec.linear_params
            rows = sum(g.out_features * g.count for g in spec.linear_groups)
            rest = FP32_BYTES if upcast_non_quantized else BF16_BYTES
            c["weights"] = packed * 1 + rows * FP32_BYTES + (n - packed) * rest
            notes.append(
                f"int8 base: {packed / 1e6:,.1f} M linear weights at 1 byte; the rest in "
                f"{'fp32' if upcast_non_quantized else '16 bit'}. bitsandbytes "
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
    per_layer = _activation_bytes_per_token_layer(
        spec, cfg, lora=method != "full", elem=elem, fused_lora=fused_lora
    ) * (
        UPCAST_ACTIVATION_FACTOR[method]
        if upcast_non_quantized and method in UPCAST_ACTIVATION_FACTOR
        else ACTIVATION_FACTOR[method]
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
    # the frozen weights are allocated once in large blocks; fragmentation comes from what is freed and allocated
    # again every step (activations, logits, their gradients)
    c["allocator overhead"] = (subtotal - WEIGHTS_OVERHEAD_EXEMPT * c["weights"]) * ALLOCATOR_OVERHEAD[
        cfg.checkpointing_on
    ] + ALLOCATOR_FIXED_GIB * GIB
    gib = {k: v / GIB for k, v in c.items()}
    gib["CUDA context"] = CUDA_CONTEXT_GIB
    return VramEstimate(method=method, components_gib=gib, trainable_params=trainable, notes=tuple(notes))


def estimate_all(spec: ModelSpec, cfg: TrainingConfig) -> dict[str, VramEstimate]:
    """Estimates for every method, keyed "full", "lora", "qlora"."""
    return {m: estimate_vram(spec, cfg, m) for m in METHODS}


# Over the 90% budget but not over the card: within the estimate's spread (bench/RESULTS.md), a maybe.
TIGHT_FACTOR = 1.0


def fit_status(total_gib: float, gpu_gib: float) -> str:
    """ "fits" (<= 90% of the GPU), "tight" (over 90% but not over the GPU: may or may not fit, given the
    estimate's spread and what else uses the card) or "does not fit" (over the GPU's memory)."""
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
