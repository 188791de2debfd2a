"""The optimiser step of ftkit's hand-written training loops (embedding heads, CLIP stage)."""
from __future__ import annotations

import torch


def optimiser_step(loss: torch.Tensor, optimizer, scheduler, losses: list[float], step: int,
                   plot=None, clip_params=None, max_norm: float = 1.0) -> None:
    """Backpropagate ``loss``, optionally clip ``clip_params`` to ``max_norm``, step the
    optimiser and scheduler, append the loss to ``losses`` and to ``plot`` (``add_train``)."""
    optimizer.zero_grad()
    loss.backward()
    if clip_params is not None:
        torch.nn.utils.clip_grad_norm_(clip_params, max_norm)
    optimizer.step()
    scheduler.step()
    losses.append(loss.item())
    if plot is not None:
        plot.add_train(step + 1, losses[-1])
