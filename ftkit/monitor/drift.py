"""Drift statistics between a reference window and a current window (paper §9.2.2).

- :func:`mmd_test`: the maximum mean discrepancy between two samples of vectors (for example
  prompt embeddings) with a Gaussian kernel whose width is the median distance of the pooled
  sample, and a permutation p-value: how often a random split of the pooled sample gives a
  discrepancy at least as large as the observed one.
- :func:`psi`: the population stability index of a scalar feature (prompt length, reply
  length, confidence), over bins cut at the reference window's quantiles.

Both refuse windows too small to mean anything, with a message naming the window.
"""
from __future__ import annotations

import numpy as np

from ftkit.core.config import ConfigError

MIN_ROWS = 5


def _window(values, name: str, min_rows: int, ndim: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != ndim:
        raise ConfigError(f"the {name} window must be a {ndim}-D array; got shape {arr.shape}")
    if len(arr) < min_rows:
        raise ConfigError(f"the {name} window has {len(arr)} rows; the test needs at least "
                          f"{min_rows}")
    if not np.isfinite(arr).all():
        raise ConfigError(f"the {name} window holds NaN or infinite values")
    return arr


def _mmd2(kernel: np.ndarray, first: np.ndarray) -> float:
    """Unbiased MMD² from a pooled kernel matrix; ``first`` marks the first sample's rows."""
    a, b = kernel[np.ix_(first, first)], kernel[np.ix_(~first, ~first)]
    n, m = len(a), len(b)
    within_a = (a.sum() - np.trace(a)) / (n * (n - 1))
    within_b = (b.sum() - np.trace(b)) / (m * (m - 1))
    return float(within_a + within_b - 2 * kernel[np.ix_(first, ~first)].mean())


def mmd_test(reference, current, n_permutations: int = 200, seed: int = 0,
             min_rows: int = MIN_ROWS) -> dict:
    """``{"mmd2", "p_value", "bandwidth"}`` for two samples of vectors, rows as samples."""
    ref = _window(reference, "reference", min_rows, 2)
    cur = _window(current, "current", min_rows, 2)
    if ref.shape[1] != cur.shape[1]:
        raise ConfigError(f"reference vectors have {ref.shape[1]} dimensions, current ones "
                          f"{cur.shape[1]}")
    pooled = np.vstack([ref, cur])
    sq = ((pooled[:, None, :] - pooled[None, :, :]) ** 2).sum(-1)
    bandwidth = float(np.sqrt(np.median(sq[np.triu_indices(len(pooled), 1)]))) or 1.0
    kernel = np.exp(-sq / (2 * bandwidth ** 2))
    first = np.zeros(len(pooled), dtype=bool)
    first[:len(ref)] = True
    observed = _mmd2(kernel, first)
    rng = np.random.default_rng(seed)
    at_least = sum(_mmd2(kernel, rng.permutation(first)) >= observed
                   for _ in range(n_permutations))
    return {"mmd2": observed, "p_value": (1 + at_least) / (1 + n_permutations),
            "bandwidth": bandwidth}


def psi(reference, current, bins: int = 10, min_rows: int = MIN_ROWS) -> float:
    """Population stability index of a scalar feature: sum over reference-quantile bins of
    (current share - reference share) x ln(current share / reference share); 0 means the
    same distribution, above 0.2 is commonly read as a large shift."""
    ref = _window(reference, "reference", min_rows, 1)
    cur = _window(current, "current", min_rows, 1)
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_share = np.bincount(np.searchsorted(edges, ref, side="right"),
                            minlength=len(edges) + 1) / len(ref)
    cur_share = np.bincount(np.searchsorted(edges, cur, side="right"),
                            minlength=len(edges) + 1) / len(cur)
    ref_share, cur_share = np.clip(ref_share, 1e-4, None), np.clip(cur_share, 1e-4, None)
    return float(((cur_share - ref_share) * np.log(cur_share / ref_share)).sum())


__all__ = ["MIN_ROWS", "mmd_test", "psi"]
