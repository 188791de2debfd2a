"""Batch samplers: plain shuffling, or class-balanced batches for imbalanced data.

Paper §3.1.3: instead of changing the data set, draw each batch so that every class is about
equally likely (each row drawn with probability ∝ 1 / its class's count, with replacement).
Rare rows are revisited often, frequent ones are seen less, and the data set stays as it is.
Samplers dispatch through :data:`SAMPLERS`. Used in notebooks/02_data_balancing.ipynb.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.utils.data import RandomSampler, WeightedRandomSampler


def balanced_sampler(labels: np.ndarray, num_samples: int | None = None,
                     seed: int = 0) -> WeightedRandomSampler:
    """Draws ``num_samples`` indices (default ``len(labels)``) with every class equally likely."""
    labels = np.asarray(labels)
    if labels.size == 0:
        raise ValueError("no labels to sample from")
    counts = np.bincount(labels)
    weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double)  # (N,)
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(weights, num_samples or len(labels), replacement=True,
                                 generator=generator)


def shuffle_sampler(labels: np.ndarray, num_samples: int | None = None,
                    seed: int = 0) -> RandomSampler:
    """Plain shuffling: classes appear as often as they occur in the data."""
    generator = torch.Generator().manual_seed(seed)
    return RandomSampler(range(len(labels)), num_samples=num_samples, generator=generator,
                         replacement=num_samples is not None and num_samples > len(labels))


SAMPLERS: dict[str, Callable] = {"shuffle": shuffle_sampler, "balanced": balanced_sampler}


def make_sampler(name: str, labels: np.ndarray, num_samples: int | None = None, seed: int = 0):
    """The sampler called ``name`` (``shuffle`` or ``balanced``) over ``labels``."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {list(SAMPLERS)}")
    return SAMPLERS[name](labels, num_samples, seed)
