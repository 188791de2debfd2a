"""Classification losses for imbalanced data: cross-entropy, class-weighted, focal.

Paper §3.1.3: re-weighting the loss towards rare classes (weights inversely proportional to
class frequency) and focal loss, which multiplies each example's cross-entropy by
``(1 - p_t)^γ`` so that examples the model already gets right (``p_t`` near 1) count little:

    FL(p_t) = -(1 - p_t)^γ · w_t · log p_t          (γ = 0, w = 1: plain cross-entropy)

Losses dispatch through :data:`LOSSES`; :func:`make_loss` builds one from flat settings.
Used in notebooks/02_data_balancing.ipynb.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean focal loss of ``logits (B, K)`` against integer ``target (B,)``.

    Args:
        gamma: focusing strength; 0 gives (weighted) cross-entropy exactly.
        weight: optional per-class weights ``(K,)``; the mean is weighted like
            ``F.cross_entropy(weight=...)`` so that γ = 0 matches it.
    """
    log_p = F.log_softmax(logits.float(), dim=-1).gather(1, target[:, None]).squeeze(1)  # (B,)
    per_example = -((1 - log_p.exp()) ** gamma) * log_p
    if weight is None:
        return per_example.mean()
    w = weight.to(per_example.device)[target]
    return (w * per_example).sum() / w.sum()


def _cross_entropy(weight=None, gamma=2.0):
    return lambda logits, target: F.cross_entropy(logits.float(), target)


def _weighted(weight=None, gamma=2.0):
    if weight is None:
        raise ValueError("the 'weighted' loss needs class weights (ftkit.data.balance.class_weights)")
    w = torch.as_tensor(weight, dtype=torch.float32)
    return lambda logits, target: F.cross_entropy(logits.float(), target,
                                                  weight=w.to(logits.device))


def _focal(weight=None, gamma=2.0):
    return lambda logits, target: focal_loss(logits, target, gamma)


LOSSES: dict[str, Callable] = {"ce": _cross_entropy, "weighted": _weighted, "focal": _focal}


def make_loss(name: str, weight=None, gamma: float = 2.0) -> Callable:
    """A ``loss(logits, target)`` function: ``ce``, ``weighted`` (needs ``weight``) or ``focal``."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {list(LOSSES)}")
    return LOSSES[name](weight=weight, gamma=gamma)
