"""Splitting (paper §3.1.4): random, stratified, k-fold and group-aware splits, and leakage.

A split returns ``(train_idx, test_idx)`` row indices (sorted lists), so the same call works on
a Dataset, a DataFrame or a list. ``SPLITTERS`` maps a method name to its function.
``group`` keeps every member of a group (e.g. a near-duplicate cluster from
:mod:`ftkit.data.dedup`) on one side; :func:`leakage_share` measures how many test rows have a
relative in train, the number a naive random split makes large.

Used in notebooks/01_data_preparation.ipynb.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from sklearn.model_selection import (
    GroupShuffleSplit,
    KFold,
    StratifiedShuffleSplit,
    train_test_split,
)


def _sorted(a, b) -> tuple[list[int], list[int]]:
    return sorted(int(i) for i in a), sorted(int(i) for i in b)


def random_split(n: int, test_size: float = 0.2, seed: int = 0, **_) -> tuple[list, list]:
    """Shuffle and cut: each row lands in test with probability ``test_size``."""
    return _sorted(*train_test_split(np.arange(n), test_size=test_size, random_state=seed))


def stratified_split(n: int, test_size: float = 0.2, seed: int = 0,
                     labels: Sequence | None = None, **_) -> tuple[list, list]:
    """Keep each label's share the same in train and test."""
    if labels is None or len(labels) != n:
        raise ValueError("stratified split needs one label per row (labels=...)")
    sss = StratifiedShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    return _sorted(*next(sss.split(np.zeros(n), list(labels))))


def group_split(n: int, test_size: float = 0.2, seed: int = 0,
                groups: Sequence | None = None, **_) -> tuple[list, list]:
    """All rows of a group on the same side; ``test_size`` is the share of groups in test."""
    if groups is None or len(groups) != n:
        raise ValueError("group split needs one group id per row (groups=...)")
    gss = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    return _sorted(*next(gss.split(np.zeros(n), groups=list(groups))))


SPLITTERS: dict[str, Callable[..., tuple[list, list]]] = {
    "random": random_split, "stratified": stratified_split, "group": group_split}


def split(n: int, method: str = "random", **kwargs) -> tuple[list[int], list[int]]:
    """Dispatch to ``SPLITTERS[method]`` (kwargs: test_size, seed, labels, groups)."""
    if method not in SPLITTERS:
        raise ValueError(f"unknown split method {method!r}; choose one of {list(SPLITTERS)}")
    return SPLITTERS[method](n, **kwargs)


def kfold(n: int, k: int = 5, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """K (train, validation) index pairs; every row is in validation exactly once."""
    if not 2 <= k <= n:
        raise ValueError(f"k-fold needs 2 <= k <= number of rows ({n}); got k={k}")
    return [_sorted(a, b) for a, b in KFold(k, shuffle=True, random_state=seed).split(np.arange(n))]


def leakage_share(groups: Sequence, train_idx: Sequence[int], test_idx: Sequence[int]) -> float:
    """Share of test rows whose group also has a row in train (0 = no leakage)."""
    train_groups = {groups[i] for i in train_idx}
    return sum(groups[i] in train_groups for i in test_idx) / max(len(test_idx), 1)


def label_shift(labels: Sequence, train_idx: Sequence[int], test_idx: Sequence[int]) -> float:
    """Largest absolute difference of any label's share between train and test."""
    values = sorted(set(labels))
    share = lambda idx: np.array([sum(labels[i] == v for i in idx) / max(len(idx), 1)
                                  for v in values])
    return float(np.abs(share(train_idx) - share(test_idx)).max())
