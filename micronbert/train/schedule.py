"""Learning-rate schedule as a pure function of the step (so resume needs no scheduler state)."""
from __future__ import annotations

import math


def warmup_cosine(step: int, total: int, base_lr: float, warmup: int, min_lr: float = 0.0) -> float:
    if warmup > 0 and step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def param_groups(model, weight_decay: float):
    """AdamW groups: no decay for biases, norms and tokens (1-d parameters)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or p.shape[0] == 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
