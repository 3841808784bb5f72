"""Health guards: a run never "succeeds" at learning nothing.

Before the first step: trainable parameters per target module and supervised (label) tokens, refusing zero.
During training: core.callbacks.StudioCallback stops on a non-finite loss or gradient norm and on a loss stuck at
exactly zero (ZERO_LOSS_LOGS logs in a row). After training: every LoRA B matrix must have moved from its zero
initialisation (seed chapter 26.4.1: B = 0 at the start, so an unmoved B means the update B·A is still zero) and
every adapter weight must be finite; otherwise the run fails and nothing is saved or exported.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from core.errors import DataError, StudioError, TrainingFailed

# Logged losses in a row at exactly 0.0 that fail a run: a real LM loss is never exactly zero, so this means
# nothing is supervised (all labels masked in the batches) or the loss is broken.
ZERO_LOSS_LOGS = 3
# A finite loss that blows up also fails the run: RISE_LOGS logs in a row above max(RISE_FACTOR x the first logged
# loss, the first + RISE_NATS). Fine-tuning lowers the loss; doubling it (or +4 nats, e^4 = 55x less likely
# tokens) means the learning rate destroyed what the base model knew.
RISE_FACTOR = 2.0
RISE_NATS = 4.0
RISE_LOGS = 2


def supervised_tokens(features: list[dict[str, Any]]) -> int:
    """Label tokens that count toward the loss (labels != -100) over tokenized rows, minus each row's first
    (a causal LM predicts token t from tokens < t, so the first label is never a target)."""
    total = 0
    for row in features:
        labels = row["labels"]
        total += sum(1 for t in labels[1:] if t != -100)
    return total


def trainable_by_module(model: Any) -> dict[str, int]:
    """{target module name (q_proj, ...): trainable LoRA parameters summed over layers} for a peft model."""
    counts: dict[str, int] = defaultdict(int)
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        parts = name.split(".")
        owner = next((parts[i - 1] for i, p in enumerate(parts) if p.startswith("lora_") and i > 0), "other")
        counts[owner] += param.numel()
    return dict(counts)


def preflight(
    features: list[dict[str, Any]], model: Any, targets: tuple[str, ...]
) -> tuple[int, dict[str, int]]:
    """Check there is something to learn and something to learn it with.

    Returns:
        (supervised tokens, trainable parameters per target module).

    Raises:
        DataError: no supervised token (every answer truncated away or masked).
        StudioError: a target module received no trainable parameters, or nothing is trainable.
    """
    tokens = supervised_tokens(features)
    if tokens == 0:
        raise DataError(
            "No supervised tokens: every row's labels are masked (-100), e.g. all answers were cut off by "
            "max_length. Raise max_length, or switch off 'train on answers only' (completion_only_loss)."
        )
    per_module = trainable_by_module(model)
    missing = [t for t in targets if per_module.get(t, 0) == 0]
    if not per_module or missing:
        raise StudioError(
            f"No trainable LoRA parameters for target modules {missing or list(targets)}; check "
            "lora_target_modules against the model's Linear layers."
        )
    return tokens, per_module


def check_adapter(model: Any, tensors: dict[str, Any] | None = None) -> list[str]:
    """Problems with a trained adapter: no LoRA weights at all, LoRA B matrices still all zero, or non-finite
    LoRA weights.

    Args:
        model: the peft model whose ``named_parameters`` are checked (ignored when ``tensors`` is given).
        tensors: {parameter name: tensor} to check instead, e.g. the adapter gathered from FSDP shards.

    Returns an empty list when there are LoRA weights, every ``lora_B`` moved and every LoRA weight is finite.
    """
    import torch

    named = tensors.items() if tensors is not None else model.named_parameters()
    unmoved: list[str] = []
    nonfinite: list[str] = []
    seen = 0
    for name, param in named:
        if "lora_" not in name:
            continue
        seen += 1
        data = param.detach()
        if not bool(torch.isfinite(data).all()):
            nonfinite.append(name)
        elif "lora_B" in name and not bool(data.any()):
            unmoved.append(name)
    problems = []
    if seen == 0:
        problems.append("it holds no LoRA weights")
    if nonfinite:
        problems.append(f"{len(nonfinite)} LoRA weights contain NaN/inf, e.g. {nonfinite[0]}")
    if unmoved:
        problems.append(
            f"{len(unmoved)} LoRA B matrices never moved from zero, e.g. {unmoved[0]} (the update B·A is zero)"
        )
    return problems


def require_healthy_adapter(model: Any, learning_rate: float, tensors: dict[str, Any] | None = None) -> None:
    """Raise TrainingFailed naming the problem and a fix when check_adapter(model, tensors) finds any."""
    problems = check_adapter(model, tensors)
    if problems:
        raise TrainingFailed(
            "The adapter is not usable: "
            + "; ".join(problems)
            + ". No adapter was saved, and this run cannot be resumed. "
            f"If the loss was finite, train more steps or raise learning_rate (now {learning_rate:g}); if it "
            "diverged, lower it or use bfloat16 instead of float16."
        )
