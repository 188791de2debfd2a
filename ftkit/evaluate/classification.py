"""Metrics for imbalanced classification, and the figures that compare methods.

Paper §3.1.3: accuracy is dominated by the frequent classes, so it can stay high while rare
classes are missed. Alongside it we report macro-F1 (every class counts the same), the mean F1
of the minority classes, PR-AUC (average precision per class, macro-averaged: how well the
scores rank each class's rows first, independent of a threshold) and Cohen's κ (agreement
beyond what the class frequencies give by chance). Built on scikit-learn's metrics.
Used in notebooks/02_data_balancing.ipynb. :class:`EmbeddingClassifier` (logistic regression
on sentence embeddings) is the intent router of notebook 15 and the guard of notebook 13.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from ftkit.core.config import ConfigError

METRICS = ("accuracy", "macro_f1", "minority_f1", "minority_recall", "pr_auc", "kappa")
# Factors by which the minority classes' probabilities are scaled when the decision threshold
# moves towards them: 1 (argmax as trained) to 100, evenly spaced on a log scale.
WEIGHTS = tuple(float(w) for w in np.geomspace(1.0, 100.0, 25))


def _check(y_true: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true, proba = np.asarray(y_true), np.asarray(proba, dtype=float)
    if proba.ndim != 2 or len(proba) != len(y_true) or len(y_true) == 0:
        raise ValueError(f"need probabilities (N, K) for N = {len(y_true)} labels, got shape "
                         f"{proba.shape}")
    if y_true.min() < 0 or y_true.max() >= proba.shape[1]:
        raise ValueError(f"labels must lie in 0..{proba.shape[1] - 1}")
    return y_true, proba


def pr_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Macro average precision over the classes present in ``y_true`` (one-vs-rest)."""
    from sklearn.metrics import average_precision_score

    y_true, proba = _check(y_true, proba)
    present = np.unique(y_true)
    return float(np.mean([average_precision_score(y_true == k, proba[:, k]) for k in present]))


def classification_metrics(y_true: np.ndarray, proba: np.ndarray,
                           minority: list[int]) -> dict[str, float]:
    """Accuracy, macro-F1, minority F1 and recall, PR-AUC and κ from probabilities ``(N, K)``.

    Args:
        minority: indices of the minority classes (their F1 and recall are averaged).
    """
    from sklearn.metrics import (
        accuracy_score,
        cohen_kappa_score,
        f1_score,
        recall_score,
    )

    y_true, proba = _check(y_true, proba)
    y_pred = proba.argmax(1)
    labels = np.arange(proba.shape[1])
    f1 = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    recall = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    present = np.unique(y_true)
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1[present].mean()),
            "minority_f1": float(f1[list(minority)].mean()),
            "minority_recall": float(recall[list(minority)].mean()),
            "pr_auc": pr_auc(y_true, proba),
            "kappa": float(cohen_kappa_score(y_true, y_pred))}


def reweight(proba: np.ndarray, minority: list[int], weight: float) -> np.ndarray:
    """Probabilities ``(N, K)`` with the minority columns scaled by ``weight`` and renormalised:
    the argmax decision threshold moves towards the minority classes (paper §3.1.3)."""
    out = np.asarray(proba, dtype=float).copy()
    out[:, list(minority)] *= weight
    return out / out.sum(1, keepdims=True)


def threshold_curve(y_true: np.ndarray, proba: np.ndarray, minority: list[int],
                    weights=WEIGHTS) -> pd.DataFrame:
    """Per weight: rare-vs-rest precision and recall (a precision-recall curve traced by moving
    the threshold) and the minority F1 of the re-weighted decisions."""
    y_true, proba = _check(y_true, proba)
    rare, rows = np.isin(y_true, minority), []
    for w in weights:
        moved = reweight(proba, minority, w)
        called = np.isin(moved.argmax(1), minority)
        hits = int((called & rare).sum())
        rows.append({"weight": w, "precision": hits / max(int(called.sum()), 1),
                     "recall": hits / max(int(rare.sum()), 1),
                     "minority_f1": classification_metrics(y_true, moved, minority)["minority_f1"]})
    return pd.DataFrame(rows)


def choose_weight(y_val: np.ndarray, proba_val: np.ndarray, minority: list[int],
                  weights=WEIGHTS) -> tuple[float, pd.DataFrame]:
    """The weight with the best minority F1 on a validation split (never the test split), and
    the validation curve it was read from; the smallest weight wins ties."""
    curve = threshold_curve(y_val, proba_val, minority, weights)
    return float(curve.loc[curve["minority_f1"].idxmax(), "weight"]), curve


def threshold_figure(curve: pd.DataFrame, chosen: float, test_point: tuple[float, float]):
    """The validation precision-recall curve of moving the threshold, the chosen point, and
    where that choice lands on the test split."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.8))
    ax.plot(curve["recall"], curve["precision"], "o-", ms=3, label="validation, weight 1 → 100")
    at = curve.loc[(curve["weight"] - chosen).abs().idxmin()]
    ax.plot(at["recall"], at["precision"], "r*", ms=14, label=f"chosen: weight {chosen:.2g}")
    ax.plot(*test_point[::-1], "kx", ms=10, mew=2, label="the same weight on the test split")
    ax.set_xlabel("recall of the rare intents")
    ax.set_ylabel("precision of the rare intents")
    ax.set_title("Moving the decision threshold")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def confusion(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Confusion matrix ``(K, K)``: rows are true classes, columns predicted ones."""
    from sklearn.metrics import confusion_matrix

    y_true, proba = _check(y_true, proba)
    return confusion_matrix(y_true, proba.argmax(1), labels=np.arange(proba.shape[1]))


def comparison_figure(table, metrics=("macro_f1", "minority_f1", "pr_auc"), title: str = ""):
    """Grouped bars: one group per method (rows of ``table``), one bar per metric column."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(table)), 3.6))
    width = 0.8 / len(metrics)
    for j, metric in enumerate(metrics):
        ax.bar(np.arange(len(table)) + (j - (len(metrics) - 1) / 2) * width, table[metric],
               width, label=metric)
    ax.set_xticks(np.arange(len(table)), list(table.index), rotation=30, ha="right", fontsize=8)
    ax.set_ylim(max(0.0, float(table[list(metrics)].min().min()) - 0.1), 1.0)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def confusion_figure(matrices: dict[str, np.ndarray], class_names: list[str]):
    """Confusion matrices, two per row, coloured by row share, counts printed in the cells."""
    import matplotlib.pyplot as plt

    cols = min(2, len(matrices))
    rows = -(-len(matrices) // cols)  # ceiling division
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4.8 * rows), squeeze=False)
    for ax, (name, cm) in zip(axes.flat, matrices.items()):
        ax.imshow(cm / cm.sum(1, keepdims=True).clip(min=1), cmap="Blues", vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(class_names)), class_names, fontsize=7)
        ax.set_title(name)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    for ax in list(axes.flat)[len(matrices):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


class EmbeddingClassifier:
    """Logistic regression on the embeddings of texts; ``embed`` maps texts to vectors."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray], c: float = 4.0, seed: int = 0):
        self.embed, self.c, self.seed = embed, c, seed
        self.model = None

    def fit(self, texts: list[str], labels: list[str]) -> "EmbeddingClassifier":
        if len(texts) != len(labels) or len(set(labels)) < 2:
            raise ConfigError(f"a classifier needs one label per text and at least two "
                              f"classes; got {len(texts)} texts, {len(set(labels))} classes")
        from sklearn.linear_model import LogisticRegression

        self.model = LogisticRegression(C=self.c, max_iter=2000, random_state=self.seed)
        self.model.fit(np.asarray(self.embed(list(texts))), list(labels))
        return self

    @property
    def classes(self) -> list[str]:
        return list(self.model.classes_)

    def proba(self, texts: list[str]) -> np.ndarray:
        """``(N, classes)`` probabilities, columns in the order of :attr:`classes`."""
        if self.model is None:
            raise ConfigError("fit the classifier before asking it")
        if not len(texts):
            return np.empty((0, len(self.classes)))
        return self.model.predict_proba(np.asarray(self.embed(list(texts))))

    def predict(self, texts: list[str]) -> list[str]:
        proba = self.proba(texts)
        return [self.classes[i] for i in proba.argmax(1)]
