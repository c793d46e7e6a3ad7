"""Optimiser parameter groups and learning-rate schedules."""

from __future__ import annotations

import torch
from torch import nn


def parameter_groups(model: nn.Module, weight_decay: float, lr: float) -> list[dict]:
    """Weight decay on matrices only: biases and LayerNorm weights (1-d tensors) are excluded, as in BERT.

    A model may scale the learning rate of some submodules with an ``lr_scales`` attribute,
    ``{parameter-name prefix: factor}`` (a fine-tuned encoder learns slower than fresh heads).
    """
    scales = getattr(model, "lr_scales", {})
    groups: dict[tuple[float, bool], list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            scale = next((f for prefix, f in scales.items() if name.startswith(prefix)), 1.0)
            groups.setdefault((scale, param.ndim >= 2), []).append(param)
    return [
        {"params": params, "lr": lr * scale, "weight_decay": weight_decay if decay else 0.0}
        for (scale, decay), params in groups.items()
    ]


def linear_warmup_decay(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, final_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 to the base rate over ``warmup_steps``, then linear decay to ``final_ratio`` of it at
    ``total_steps`` (the original M3BERT schedule)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 1.0 - (1.0 - final_ratio) * progress

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def constant(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
