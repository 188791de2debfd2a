"""Class balance of a labelled data set: checks, counts, re-sampling and class weights.

Paper §3.1.3 and §3.5.3: when some classes are rare, a model can score well while ignoring them.
The remedies here change the *data* the model sees: random over-sampling (repeat rare rows),
random under-sampling (drop frequent rows), SMOTE (interpolate new rare points between
neighbours, on feature vectors such as sentence embeddings) and class weights for the loss
(``n / (K · n_k)``, inversely proportional to class frequency). Remedies that change the
*training* (focal loss, balanced batches, ensembles) live in ``ftkit.train``.

Every function takes a ``datasets.Dataset`` with a text and a label column whose names are
parameters, or arrays derived from one, so the same calls work on any CSV.
Re-sampling methods dispatch through :data:`METHODS`.
Used in notebooks/02_data_balancing.ipynb.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

import numpy as np

from ftkit.core.config import ConfigError
from ftkit.data.split import split


class BalanceError(ConfigError):
    """The data cannot be balanced as asked; the message says why and what to change."""


def check_dataset(ds, text_column: str = "text", label_column: str = "label") -> None:
    """Raise :class:`BalanceError` unless ``ds`` has both columns, rows and ≥ 2 classes."""
    missing = [c for c in (text_column, label_column) if c not in ds.column_names]
    if missing:
        raise BalanceError(f"column(s) {missing} not found; the data set has {ds.column_names}. "
                           "Set text_column / label_column to the right names.")
    if len(ds) == 0:
        raise BalanceError("the data set is empty: nothing to balance")
    classes = set(ds[label_column])
    if len(classes) < 2:
        raise BalanceError(f"only one class ({sorted(map(str, classes))}) in {label_column!r}: "
                           "classification needs at least two")


def label_ids(ds, label_column: str = "label",
              classes: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Integer labels ``(N,)`` and the class names they index (sorted names by default).

    Args:
        classes: a fixed class list (e.g. the training split's); a label outside it raises.
    """
    values = [str(v) for v in ds[label_column]]
    classes = sorted(set(values)) if classes is None else list(classes)
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(values) - set(index))
    if unknown:
        raise BalanceError(f"label(s) {unknown[:5]} in {label_column!r} are not among the known "
                           f"classes {classes}")
    return np.array([index[v] for v in values], dtype=np.int64), classes


def class_counts(y: np.ndarray, classes: list[str]) -> dict[str, int]:
    """``{class name: rows}`` for integer labels ``y``, every class listed (zeros included)."""
    counts = Counter(np.asarray(y).tolist())
    return {name: int(counts.get(i, 0)) for i, name in enumerate(classes)}


def minority_classes(counts: dict[str, int], share: float = 0.06) -> list[str]:
    """Classes holding less than ``share`` of the rows (at least the rarest one)."""
    total = sum(counts.values())
    rare = [c for c, n in counts.items() if n < share * total]
    return rare or [min(counts, key=counts.get)]


def subsample(ds, max_samples: int, label_column: str = "label", seed: int = 0):
    """At most ``max_samples`` rows (0 = all), drawn per class so the class shares stay the same."""
    if max_samples <= 0 or max_samples >= len(ds):
        return ds
    return stratified_split(ds, label_column, 1 - max_samples / len(ds), seed)[0]


def stratified_split(ds, label_column: str = "label", eval_fraction: float = 0.2,
                     seed: int = 0):
    """``(train_ds, eval_ds)`` with every class in the same proportion in both parts."""
    y, _ = label_ids(ds, label_column)
    if np.bincount(y).min() < 2:
        raise BalanceError("a class has a single row: a stratified split needs ≥ 2 per class")
    train_idx, eval_idx = split(len(ds), "stratified", test_size=eval_fraction, seed=seed,
                                labels=y)
    return ds.select(train_idx), ds.select(eval_idx)


def _check_labels(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    if y.size == 0:
        raise BalanceError("no labels: nothing to balance")
    if len(np.unique(y)) < 2:
        raise BalanceError("only one class present: balancing needs at least two")
    return y


def oversample_indices(y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Row indices where every class is repeated at random up to the largest class's count."""
    y, rng = _check_labels(y), np.random.default_rng(seed)
    target = np.bincount(y).max()
    parts = [np.concatenate([idx, rng.choice(idx, target - len(idx), replace=True)])
             for idx in (np.flatnonzero(y == c) for c in np.unique(y))]
    return rng.permutation(np.concatenate(parts))


def undersample_indices(y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Row indices keeping a random subset of every class, as many as the smallest class has."""
    y, rng = _check_labels(y), np.random.default_rng(seed)
    target = np.bincount(y)[np.unique(y)].min()
    parts = [rng.choice(np.flatnonzero(y == c), target, replace=False) for c in np.unique(y)]
    return rng.permutation(np.concatenate(parts))


def smote(X: np.ndarray, y: np.ndarray, seed: int = 0,
          k_neighbors: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """SMOTE (imbalanced-learn): new minority points on segments between ``k`` neighbours.

    Works on feature vectors ``X (N, D)`` (sentence embeddings here), not on raw text. ``k`` is
    lowered for a class with fewer rows than ``k + 1``; a class with one row cannot be used.
    """
    from imblearn.over_sampling import SMOTE

    y = _check_labels(y)
    smallest = int(np.bincount(y)[np.unique(y)].min())
    if smallest < 2:
        raise BalanceError("SMOTE needs at least 2 rows in every class")
    sampler = SMOTE(k_neighbors=min(k_neighbors, smallest - 1), random_state=seed)
    X_new, y_new = sampler.fit_resample(np.asarray(X), y)
    return np.asarray(X_new, dtype=np.float32), np.asarray(y_new, dtype=np.int64)


def _by_index(pick: Callable) -> Callable:
    def resample(X, y, seed=0):
        idx = pick(y, seed)
        return np.asarray(X)[idx], np.asarray(y)[idx]
    resample.__doc__ = f"Arrays re-sampled by ``{pick.__name__}``."
    return resample


def _unchanged(X, y, seed=0):
    return np.asarray(X), _check_labels(y)


METHODS: dict[str, Callable] = {"none": _unchanged, "oversample": _by_index(oversample_indices),
                                "undersample": _by_index(undersample_indices), "smote": smote}
INDEX_METHODS = {"oversample": oversample_indices, "undersample": undersample_indices}


def resample(method: str, X: np.ndarray, y: np.ndarray,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features ``X (N, D)`` and labels ``y (N,)`` re-sampled by ``method`` (see METHODS)."""
    if method not in METHODS:
        raise BalanceError(f"unknown re-sampling method {method!r}; choose one of {list(METHODS)}")
    return METHODS[method](X, y, seed)


def resample_dataset(ds, method: str, label_column: str = "label", seed: int = 0):
    """A re-sampled copy of ``ds`` (rows repeated or dropped; text stays real text).

    SMOTE invents feature vectors, not sentences, so it is only offered on arrays
    (:func:`resample`).
    """
    if method not in INDEX_METHODS:
        raise BalanceError(f"resample_dataset supports {list(INDEX_METHODS)}; {method!r} works "
                           "on feature vectors: embed the texts and call resample()")
    if len(ds) == 0:
        raise BalanceError("the data set is empty: nothing to balance")
    y, _ = label_ids(ds, label_column)
    return ds.select(INDEX_METHODS[method](y, seed))


def class_weights(y: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Loss weights ``w_k = N / (K · n_k)``: 1 for every class when balanced, large when rare.

    Raises when a class of the ``n_classes`` has no rows (its weight would be infinite).
    """
    y = _check_labels(y)
    counts = np.bincount(y, minlength=n_classes or 0)
    if (counts == 0).any():
        raise BalanceError(f"class(es) {np.flatnonzero(counts == 0).tolist()} have no rows; "
                           "their weight is undefined")
    return (len(y) / (len(counts) * counts)).astype(np.float32)


def distribution_figure(counts_by_method: dict[str, dict[str, int]], minority: list[str] = ()):
    """One bar panel per method: rows per class after that re-sampling (minority in red)."""
    import matplotlib.pyplot as plt

    n = len(counts_by_method)
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n, 3.4), sharey=True, squeeze=False)
    for ax, (method, counts) in zip(axes[0], counts_by_method.items()):
        colors = ["tab:red" if c in minority else "tab:blue" for c in counts]
        ax.bar(range(len(counts)), list(counts.values()), color=colors)
        ax.set_xticks(range(len(counts)), list(counts), rotation=90, fontsize=7)
        ax.set_title(f"{method} (n={sum(counts.values())})", fontsize=9)
    axes[0][0].set_ylabel("training rows")
    fig.tight_layout()
    return fig
