"""The training engine's speed paths, each on by default only where verified, each falling back with a reason.

- Padding-free packing: transformers' ``DataCollatorWithFlattening`` concatenates a micro-batch's rows into one
  sequence with per-row ``position_ids`` (and ``cu_seq_lens`` for varlen kernels); no compute is spent on padding.
  With PyTorch SDPA, transformers' masking utilities turn packed ``position_ids`` into a block-diagonal mask, so
  rows never attend to each other (tests/test_engine.py checks the loss equals the unpacked loss).
- Attention: on a CUDA GPU, packed rows go through ``torch.nn.attention.varlen.varlen_attn`` (FlashAttention's
  variable-length kernel, PyTorch >= 2.10), registered with transformers' ``AttentionInterface``; elsewhere SDPA.
- Liger-Kernel (fused RMSNorm, SwiGLU, RoPE and linear + cross-entropy that never materialises the logits) through
  the Trainer's ``use_liger_kernel`` when installed and on CUDA.
- Fused LoRA branch (core.lora_fused): peft's LoRA forward with the B product, scaling and sum in one addmm and
  the dropout mask kept instead of a dropped copy; same function and random masks (tests/test_lora_fused.py).
  Measured on an H200 (bench/RESULTS.md, session 3): +4.8% tokens/s and -0.28 GiB per 8,192-token micro-batch of
  a Llama-2-7B QLoRA step. On by default; ``LORA_STUDIO_FUSED_LORA=0`` in the environment turns it off (peft's own
  forward; not a config field, since every config field is a UI field).
- Fewer host synchronisations (``studio_trainer``): the Trainer's NaN/inf loss filter reads every micro-batch's loss
  on the host and its token counter copies a count to the GPU and back, each stopping the CPU until the GPU has
  drained, so the GPU then idles while the next step is prepared and launched. The filter is off
  (``logging_nan_inf_filter=False``: a non-finite loss reaches the log, where core.callbacks fails the run instead
  of averaging it away) and a packed single-process run counts tokens from the batch's shape.
- Micro-batch sizing: with packing, the most rows per micro-batch whose packed length (from the data's real row
  lengths) fits the memory the configured padded micro-batch would need, keeping rows per optimizer step
  unchanged. The biggest lever measured for speed is tokens per forward pass.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import math
import os
from dataclasses import dataclass, replace
from typing import Any

from core.config import TrainingConfig
from core.modelspec import ModelSpec

VARLEN = "studio_varlen"  # name registered with transformers' AttentionInterface
_registered = False


def varlen_unavailable_reason(has_cuda: bool) -> str | None:
    """Why the varlen flash kernel cannot run here, or None when it can."""
    if not has_cuda:
        return "no CUDA GPU (the varlen kernel is FlashAttention's)"
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        import torch

        return f"torch {torch.__version__} has no torch.nn.attention.varlen (needs >= 2.10)"
    return None


def liger_unavailable_reason(has_cuda: bool) -> str | None:
    """Why Liger-Kernel cannot be used here, or None when it can."""
    if not has_cuda:
        return "no CUDA GPU (Liger's kernels are Triton)"
    if importlib.util.find_spec("liger_kernel") is None:
        return "liger-kernel is not installed (pip install 'lora-studio[gpu]')"
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    return None


def fused_lora_enabled() -> bool:
    """Whether the fused LoRA branch is on: yes unless the environment sets LORA_STUDIO_FUSED_LORA to 0/false/off."""
    return os.environ.get("LORA_STUDIO_FUSED_LORA", "1").strip().lower() not in ("0", "false", "no", "off")


@functools.cache
def _varlen_params() -> frozenset[str]:
    """Keyword names varlen_attn accepts (its signature changed between torch 2.10 and 2.12); read once, not in
    every attention call."""
    from torch.nn.attention.varlen import varlen_attn

    return frozenset(inspect.signature(varlen_attn).parameters)


def _varlen_attention_forward(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers attention function: query (1, Hq, T, D), key/value (1, Hkv, T, D) of packed rows whose
    boundaries are ``kwargs["cu_seq_lens_q"]`` (int32, N + 1); returns (1, T, Hq, D). Causal within each row.
    Falls back to SDPA when the batch is not packed (no cu_seq_lens, or more than one row)."""
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None or query.shape[0] != 1:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    from torch.nn.attention.varlen import varlen_attn

    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (T, H, D) views, last dim contiguous
    params = _varlen_params()
    extra: dict[str, Any] = {"scale": scaling}
    if "window_size" in params:  # torch >= 2.12: (-1, 0) = causal
        extra["window_size"] = (-1, 0)
    else:  # torch 2.10-2.11
        extra["is_causal"] = True
    if k.shape[1] != q.shape[1]:  # grouped-query attention
        if "enable_gqa" in params:
            extra["enable_gqa"] = True
        else:
            k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
            v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    longest = int(kwargs.get("max_length_q") or int((cu[1:] - cu[:-1]).max()))
    try:
        out: Any = varlen_attn(q, k, v, cu, cu, longest, longest, **extra)  # (T, Hq, D)
    except RuntimeError:  # a kernel build that insists on dense (T, H, D) inputs
        out = varlen_attn(q.contiguous(), k.contiguous(), v.contiguous(), cu, cu, longest, longest, **extra)
    return out.unsqueeze(0), None


def register_varlen_attention() -> str:
    """Register the varlen kernel with transformers (attention and mask interfaces) once; returns its name."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, flash_attention_mask

        AttentionInterface.register(VARLEN, _varlen_attention_forward)
        ALL_MASK_ATTENTION_FUNCTIONS.register(VARLEN, flash_attention_mask)
        _registered = True
    return VARLEN


@dataclass(frozen=True)
class EnginePlan:
    """What the engine will do for one run, and why (each fallback named in ``notes``).

    Attributes:
        attn_implementation: transformers attn_implementation to load the model with ("sdpa", "eager" or VARLEN).
        packing: padding-free packing of each micro-batch.
        use_liger_kernel: apply Liger-Kernel through the Trainer.
        fused_lora: patch the LoRA layers to core.lora_fused's branch.
        per_device_train_batch_size, gradient_accumulation_steps, gradient_checkpointing: the micro-batch plan
            (rows per optimizer step = batch x accumulation, as configured).
        notes: one line per decision, for the run log.
    """

    attn_implementation: str
    packing: bool
    use_liger_kernel: bool
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    gradient_checkpointing: bool
    notes: tuple[str, ...]
    fused_lora: bool = False

    def apply(self, cfg: TrainingConfig) -> TrainingConfig:
        """cfg with this plan's micro-batch and checkpointing ("auto" resolved): what the run trains with; the
        run folder's result.json records these decisions under ``engine``."""
        return replace(
            cfg,
            per_device_train_batch_size=self.per_device_train_batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            gradient_checkpointing=self.gradient_checkpointing,
        )


def packed_tokens_bound(lengths: list[int], rows: int) -> int:
    """Tokens in a packed micro-batch of ``rows`` randomly drawn rows, at the mean + 3 standard deviations of
    such a sum (about 99.9% for a near-normal sum), never above ``rows`` x the longest row."""
    import statistics

    if not lengths:
        return 0
    mean = statistics.fmean(lengths)
    std = statistics.pstdev(lengths) if len(lengths) > 1 else 0.0
    return int(min(rows * max(lengths), math.ceil(rows * mean + 3 * math.sqrt(rows) * std)))


def size_micro_batch(
    spec: ModelSpec,
    cfg: TrainingConfig,
    gpu_gib: float,
    lengths: list[int] | None = None,
    fused_loss: bool = False,
) -> tuple[int, int, float] | None:
    """Most rows per micro-batch (a divisor of rows per optimizer step) within the memory the configured
    micro-batch would need, so packing turns saved padding into tokens per forward pass, never into extra memory.

    The target is the estimate of the configured micro-batch padded to max_length with the plain PyTorch path
    (what the recipe without packing or fused kernels could need), capped at 90% of the GPU; a packed candidate of
    k rows is estimated as one row of packed_tokens_bound(lengths, k) tokens with the engine's kernels. Gradient
    checkpointing stays as configured.

    Returns:
        (per_device_train_batch_size, gradient_accumulation_steps, estimate GiB), or None when nothing fits.
    """
    from core.vram import HEADROOM, estimate_vram

    rows = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    target = min(estimate_vram(spec, cfg, cfg.method).total_gib, gpu_gib * HEADROOM)
    for k in (d for d in range(rows, 0, -1) if rows % d == 0 and rows // d <= 1024):
        if cfg.packing and lengths:
            trial = replace(
                cfg, per_device_train_batch_size=1, max_length=max(16, packed_tokens_bound(lengths, k))
            )
        else:
            trial = replace(cfg, per_device_train_batch_size=k)
        total = estimate_vram(spec, trial, cfg.method, fused_loss, upcast_non_quantized=False).total_gib
        if total <= target:
            return k, rows // k, total
    return None


def plan_engine(
    cfg: TrainingConfig,
    spec: ModelSpec | None,
    has_cuda: bool,
    gpu_gib: float | None,
    lengths: list[int] | None = None,
) -> EnginePlan:
    """Decide attention kernel, packing, Liger and micro-batch for ``cfg`` on this machine.

    Args:
        cfg: the run's config (packing, attn_implementation, use_liger_kernel, auto_micro_batch, batch fields).
        spec: model shape (for micro-batch sizing); None skips sizing.
        has_cuda: a CUDA GPU will train.
        gpu_gib: that GPU's memory (GiB), or None.
        lengths: token length of each training row (sizes packed micro-batches from the real data).

    Raises:
        ValueError: attn_implementation "varlen" was requested where it cannot run (the reason is named).
    """
    notes: list[str] = []
    reason = varlen_unavailable_reason(has_cuda)
    attn = cfg.attn_implementation
    if attn == "varlen":
        if reason:
            raise ValueError(f"attn_implementation varlen: unavailable here ({reason}); use auto or sdpa.")
        if not cfg.packing:
            raise ValueError("attn_implementation varlen needs packing on (it attends within packed rows).")
        attn = register_varlen_attention()
        notes.append("Attention: FlashAttention varlen kernel (as set).")
    elif attn != "auto":
        notes.append(f"Attention: {attn} (as set).")
    elif attn == "auto":
        if cfg.packing and reason is None:
            attn = register_varlen_attention()
            notes.append("Attention: FlashAttention varlen kernel for packed rows.")
        else:
            attn = "sdpa"
            why = "packing is off" if not cfg.packing else reason
            notes.append(f"Attention: PyTorch SDPA ({why}).")
    if cfg.packing:
        notes.append(
            "Packing: each micro-batch's rows are concatenated without padding (block-diagonal attention)."
        )
    liger = False
    if cfg.use_liger_kernel:
        why_not = liger_unavailable_reason(has_cuda)
        liger = why_not is None
        notes.append("Liger-Kernel: on." if liger else f"Liger-Kernel: off ({why_not}).")
    fused_lora = fused_lora_enabled()
    if fused_lora:
        notes.append("LoRA branch: fused (one addmm for B x scaling + sum; dropout mask kept, not a copy).")
    from core.plan_report import resolve_gradient_checkpointing

    checkpointing, why = resolve_gradient_checkpointing(cfg, spec, has_cuda, gpu_gib, fused_loss=liger)
    notes.append(why)
    cfg = replace(cfg, gradient_checkpointing=checkpointing)
    batch, accumulation = cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps
    if cfg.auto_micro_batch and has_cuda and spec is not None and gpu_gib:
        sized = size_micro_batch(spec, cfg, gpu_gib, lengths, fused_loss=liger)
        if sized is not None:
            batch, accumulation, total = sized
            notes.append(
                f"Micro-batch: {batch} rows x {accumulation} accumulation steps (rows per step "
                f"{batch * accumulation} as configured; estimate {total:.1f} GiB, within what the configured "
                f"micro-batch would need)."
            )
        else:
            notes.append("Micro-batch: as configured (no larger one fits the estimate).")
    return EnginePlan(
        attn_implementation=attn,
        packing=cfg.packing,
        use_liger_kernel=liger,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        gradient_checkpointing=checkpointing,
        notes=tuple(notes),
        fused_lora=fused_lora,
    )


def make_collator(tokenizer: Any, packing: bool, has_cuda: bool) -> Any:
    """DataCollatorWithFlattening (packing: position_ids and cu_seq_lens, labels -100 at each row start) or
    DataCollatorForSeq2Seq (pads to the longest row, labels padded with -100)."""
    if packing:
        from transformers import DataCollatorWithFlattening

        return DataCollatorWithFlattening(return_position_ids=True, return_flash_attn_kwargs=True)
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(
        tokenizer, padding=True, label_pad_token_id=-100, pad_to_multiple_of=8 if has_cuda else None
    )


def studio_trainer(**kwargs: Any) -> Any:
    """A transformers ``Trainer`` (same arguments) whose token counter needs no GPU round trip where the count is
    known on the host: one process, ``include_num_input_tokens_seen="all"`` (packed rows: every input id is a real
    token, so the count is the batch's ``numel``). Elsewhere the Trainer's own counter runs."""
    from transformers import Trainer

    class StudioTrainer(Trainer):  # type: ignore[misc]
        def _track_num_input_tokens(self, inputs: Any) -> None:
            ids = inputs.get("input_ids") if hasattr(inputs, "get") else None
            if (
                self.args.include_num_input_tokens_seen == "all"
                and self.args.world_size == 1
                and ids is not None
            ):
                self.state.num_input_tokens_seen += int(ids.numel())
                return
            super()._track_num_input_tokens(inputs)

    return StudioTrainer(**kwargs)
