"""A fused LoRA branch for peft's Linear and bitsandbytes Linear4bit LoRA layers: the same function, fewer passes.

peft computes ``result = base(x).clone(); result = result + lora_B(lora_A(dropout(x))) * scaling`` (the clone only
for 4-bit bases), i.e. besides the two small matrix products, five to seven full passes over the layer's output
(clone, the B product's output, the scaling, the sum) and a dropped copy of the input kept for backward. Here the
second product, the scaling and the sum are one ``addmm`` (out = result + scaling * h @ B^T, one read and one write
of the output), and backward keeps the input and the dropout mask instead of a dropped copy of the input (the input
is often saved anyway: q/k/v and gate/up share theirs), recomputing the dropped input in backward.

Same function: the dropout mask comes from ``torch.native_dropout``, which is what ``nn.Dropout`` calls on a GPU, so
the random stream and the masks are the ones peft draws; under gradient checkpointing the recomputation replays the
same RNG state. Products run in the compute dtype as autocast would run them (bf16 on the GPU), the sum is
accumulated once in the product's fp32 accumulator instead of rounded twice. tests/test_lora_fused.py checks loss
and every LoRA gradient against peft's own forward (CPU, fp32, dropout on); bench/RESULTS.md has the GPU figures.

The last LoRA layer of each checkpointed block (a decoder layer's ``down_proj``) runs its branch before the base
layer: its base product's output only feeds the residual sum, which nothing in backward needs, so once every tensor
backward needs has been recomputed, PyTorch's non-reentrant checkpoint stops the recomputation early
(``torch.utils.checkpoint``, early stopping on by default) and that base product (about a fifth of a Llama layer's
matrix products) is not run a second time. tests/test_lora_fused.py counts the base layer's calls.

Falls back to peft's forward per call for anything else (several active adapters, DoRA or other variants, merged or
disabled adapters, mixed-adapter batches, lora_bias, dtype combinations without autocast that peft would upcast).
"""

from __future__ import annotations

import types
from typing import Any

import torch

_ORIGINAL = "_studio_unfused_forward"
_DELTA_FIRST = "_studio_delta_first"  # set on the last LoRA layer of each checkpointed block


def _rank_r_forward(
    ctx: Any,
    x: torch.Tensor,
    weight_a: torch.Tensor,
    weight_b: torch.Tensor,
    p: float,
    scaling: float,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The shared first half of both branches: h = dropout(x) @ A^T (M, r) in ``dtype``, with x, the dropout mask,
    h and the weights saved on ``ctx`` for _branch_grads. Returns (h, B in ``dtype``)."""
    a, b = weight_a.to(dtype), weight_b.to(dtype)
    x2 = x.reshape(-1, x.shape[-1]).to(dtype)
    dropped, mask = torch.native_dropout(x2, p, True) if p > 0.0 else (x2, None)
    h = dropped @ a.t()  # (M, r)
    del dropped
    ctx.p, ctx.scaling, ctx.x_shape, ctx.x_dtype = p, scaling, x.shape, x.dtype
    ctx.wa_dtype, ctx.wb_dtype = weight_a.dtype, weight_b.dtype
    ctx.save_for_backward(x, mask, h, weight_a, weight_b)
    return h, b


class _LoraBranch(torch.autograd.Function):
    """out = result + scaling * dropout(x) @ A^T @ B^T, saving x, the mask and the rank-r activation."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        result: torch.Tensor,
        weight_a: torch.Tensor,
        weight_b: torch.Tensor,
        p: float,
        scaling: float,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        h, b = _rank_r_forward(ctx, x, weight_a, weight_b, p, scaling, dtype)
        out = torch.addmm(result.reshape(-1, result.shape[-1]).to(dtype), h, b.t(), alpha=scaling)
        return out.reshape(*result.shape[:-1], out.shape[-1]).to(result.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        need = ctx.needs_input_grad  # (x, result, weight_a, weight_b, ...)
        grad_x, grad_a, grad_b = _branch_grads(ctx, grad_out, need[0], need[2], need[3])
        grad_result = grad_out if need[1] else None
        return grad_x, grad_result, grad_a, grad_b, None, None, None


def _branch_grads(
    ctx: Any, grad_out: torch.Tensor, need_x: bool, need_a: bool, need_b: bool
) -> tuple[Any, Any, Any]:
    """Gradients of scaling * dropout(x) @ A^T @ B^T for x, A and B from the saved (x, mask, h, A, B)."""
    x, mask, h, weight_a, weight_b = ctx.saved_tensors
    dtype = h.dtype
    a, b = weight_a.to(dtype), weight_b.to(dtype)
    g = grad_out.reshape(-1, grad_out.shape[-1]).to(dtype)
    grad_b = grad_a = grad_x = None
    grad_h = (g @ b) * ctx.scaling  # (M, r)
    keep = 1.0 / (1.0 - ctx.p) if ctx.p > 0.0 else 1.0
    if need_b:
        grad_b = (g.t() @ h * ctx.scaling).to(ctx.wb_dtype)
    if need_a:
        x2 = x.reshape(-1, x.shape[-1]).to(dtype)
        dropped = torch.ops.aten.native_dropout_backward(x2, mask, keep) if mask is not None else x2
        grad_a = (grad_h.t() @ dropped).to(ctx.wa_dtype)
        del dropped
    if need_x:
        gx = grad_h @ a
        if mask is not None:
            gx = torch.ops.aten.native_dropout_backward(gx, mask, keep)
        grad_x = gx.reshape(ctx.x_shape).to(ctx.x_dtype)
    return grad_x, grad_a, grad_b


class _LoraDelta(torch.autograd.Function):
    """delta = scaling * dropout(x) @ A^T @ B^T alone (the base output is added outside), saving x, the mask and the
    rank-r activation; same products, masks and gradients as _LoraBranch."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        weight_a: torch.Tensor,
        weight_b: torch.Tensor,
        p: float,
        scaling: float,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        h, b = _rank_r_forward(ctx, x, weight_a, weight_b, p, scaling, dtype)
        out = torch.mm(h, b.t()).mul_(scaling)
        return out.reshape(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        need = ctx.needs_input_grad  # (x, weight_a, weight_b, ...)
        grad_x, grad_a, grad_b = _branch_grads(ctx, grad_out, need[0], need[1], need[2])
        return grad_x, grad_a, grad_b, None, None, None


def _compute_dtype(x: torch.Tensor, weight_a: torch.Tensor, result: torch.Tensor) -> torch.dtype | None:
    """The dtype peft's products would run in, or None where peft would mix dtypes (then its forward runs)."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    if x.dtype == weight_a.dtype == result.dtype:
        return x.dtype
    return None


def _fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """Forward of one patched LoRA layer: the fused branch when it computes what peft would, else peft's own."""
    original = getattr(self, _ORIGINAL)
    active = self.active_adapters
    if (
        args
        or kwargs
        or self.disable_adapters
        or self.merged
        or len(active) != 1
        or active[0] not in self.lora_A
        or active[0] in getattr(self, "lora_variant", {})
        or getattr(self, "lora_bias", {}).get(active[0], False)
        or not torch.is_grad_enabled()
    ):
        return original(x, *args, **kwargs)
    name = active[0]
    dropout = self.lora_dropout[name]
    if isinstance(dropout, torch.nn.Dropout):
        p = float(dropout.p) if dropout.training else 0.0
    elif isinstance(dropout, torch.nn.Identity):
        p = 0.0
    else:
        return original(x, *args, **kwargs)
    weight_a, weight_b = self.lora_A[name].weight, self.lora_B[name].weight
    scaling = float(self.scaling[name])
    if getattr(self, _DELTA_FIRST, False) and p < 1.0:
        # the branch first, the base product last: see the module docstring (checkpoint early stopping)
        dtype = _compute_dtype(x, weight_a, x)
        if dtype is not None:
            delta: torch.Tensor = _LoraDelta.apply(x, weight_a, weight_b, p, scaling, dtype)
            result = self.base_layer(x)
            return result + delta.to(result.dtype)  # the sum saves nothing for backward
    result = self.base_layer(x)
    dtype = _compute_dtype(x, weight_a, result)
    if dtype is None or p >= 1.0:
        return original(x, *args, **kwargs)
    out: torch.Tensor = _LoraBranch.apply(x, result, weight_a, weight_b, p, scaling, dtype)
    return out


def fusable_layer_types() -> tuple[type, ...]:
    """peft LoRA layer classes whose forward the fused branch reproduces (bnb's only where bitsandbytes imports)."""
    from peft.tuners.lora.layer import Linear

    types_: list[type] = [Linear]
    try:
        from peft.tuners.lora.bnb import Linear4bit

        types_.append(Linear4bit)
    except ImportError:  # bitsandbytes missing: no 4-bit layers exist either
        pass
    return tuple(types_)


def enable_fused_lora(model: Any) -> int:
    """Patch every plain LoRA Linear / Linear4bit layer of ``model`` (a PeftModel) to the fused branch.

    Returns:
        The number of layers patched (0 when none qualify; their forward is then peft's, unchanged).
    """
    kinds = fusable_layer_types()
    count = 0
    for module in model.modules():
        if type(module) in kinds and not hasattr(module, _ORIGINAL):
            setattr(module, _ORIGINAL, module.forward)
            module.forward = types.MethodType(_fused_forward, module)
            count += 1
    for block in checkpointed_blocks(model):
        last = [m for m in block.modules() if hasattr(m, _ORIGINAL)][-1:]
        for module in last:
            setattr(module, _DELTA_FIRST, True)
    return count


def checkpointed_blocks(model: Any) -> list[Any]:
    """The modules transformers checkpoints one at a time (``GradientCheckpointingLayer``: decoder layers)."""
    try:
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:  # older transformers: no early-stop ordering, the plain fused branch everywhere
        return []
    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


def disable_fused_lora(model: Any) -> int:
    """Undo enable_fused_lora (peft's forward again); returns the number of layers restored."""
    count = 0
    for module in model.modules():
        if hasattr(module, _ORIGINAL):
            module.forward = getattr(module, _ORIGINAL)
            delattr(module, _ORIGINAL)
            if hasattr(module, _DELTA_FIRST):
                delattr(module, _DELTA_FIRST)
            count += 1
    return count
