"""Small classifier heads on fixed features (sentence embeddings), and bagged ensembles of them.

Embedding every text once with a frozen encoder and training only a linear (or one-hidden-layer)
head takes seconds on a CPU, so many balancing methods and seeds can be compared on the same
split. :func:`train_head` takes the loss and the sampler by name (``ftkit.train.losses``,
``ftkit.train.sampling``); :func:`bagging` trains several heads on balanced bootstrap samples and
averages their probabilities (paper §3.1.3, ensemble methods).
Used in notebooks/02_data_balancing.ipynb.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ftkit.core.config import ConfigError
from ftkit.train.losses import make_loss
from ftkit.train.sampling import make_sampler


def check_labels(y, n_classes: int, n_rows: int | None = None) -> None:
    """Raise ConfigError unless ``y`` holds ``n_rows`` whole-number labels in ``[0, n_classes)``.

    Checked before training: an out-of-range label would otherwise stop the first step inside
    the loss with a bare IndexError.
    """
    y = np.asarray(y)
    if n_rows is not None and len(y) != n_rows:
        raise ConfigError(f"labels y has {len(y)} values for {n_rows} rows; give one label per row")
    if y.size == 0:
        raise ConfigError("labels y is empty: the training set has no rows")
    if y.dtype.kind not in "biu" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
        raise ConfigError(f"labels y have dtype {y.dtype}: must be integer class ids in "
                          f"[0, {n_classes - 1}] (map names with ftkit.data.balance.label_ids)")
    rows = np.flatnonzero((y < 0) | (y >= n_classes))
    if rows.size:
        raise ConfigError(f"labels y = {y[rows[:5]].tolist()} at rows {rows[:5].tolist()} are out "
                          f"of range: must be in [0, {n_classes - 1}] for n_classes (num_labels) "
                          f"= {n_classes}")


def make_head(dim: int, n_classes: int, hidden: int = 0) -> nn.Module:
    """A linear head ``(B, dim) -> (B, K)``, or one hidden ReLU layer when ``hidden > 0``."""
    if hidden <= 0:
        return nn.Linear(dim, n_classes)
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))


def train_head(X: np.ndarray, y: np.ndarray, n_classes: int, *, loss: str = "ce",
               sampler: str = "shuffle", class_weight=None, gamma: float = 2.0,
               epochs: int = 30, lr: float = 3e-3, batch_size: int = 128, hidden: int = 0,
               seed: int = 0) -> nn.Module:
    """Train a head on features ``X (N, D)`` and labels ``y (N,)``; returns it in eval mode.

    One epoch draws ``N`` rows from the sampler, so every method gets the same number of steps
    for the same data size.
    """
    check_labels(y, n_classes, len(X))
    torch.manual_seed(seed)
    X_t, y_t = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
    head = make_head(X_t.shape[1], n_classes, hidden)
    loss_fn = make_loss(loss, class_weight, gamma)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    for epoch in range(epochs):
        order = torch.as_tensor(list(make_sampler(sampler, y, len(y), seed + epoch)))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            opt.zero_grad()
            loss_fn(head(X_t[idx]), y_t[idx]).backward()
            opt.step()
    return head.eval()


class MeanProbabilities(nn.Module):
    """Ensemble of heads: outputs ``log(mean softmax)``, so ``softmax`` of it is the mean."""
    def __init__(self, heads: list[nn.Module]):
        super().__init__()
        self.heads = nn.ModuleList(heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([h(x).softmax(-1) for h in self.heads]).mean(0)  # (B, K)
        return probs.clamp_min(1e-12).log()


def balanced_bootstrap(y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Indices drawn with replacement, the same number per class (the median class size).

    Each ensemble member sees every class equally often; frequent classes are sub-sampled
    differently in every member, so together the members still cover most of the data.
    """
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per_class = int(np.median(np.bincount(y)[classes]))
    return np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=True)
                           for c in classes])


def bagging(X: np.ndarray, y: np.ndarray, n_classes: int, n_members: int = 5, seed: int = 0,
            **head_kwargs) -> MeanProbabilities:
    """Balanced bagging: ``n_members`` heads, each on its own balanced bootstrap sample."""
    if n_members < 1:
        raise ValueError("an ensemble needs at least one member")
    X, y = np.asarray(X), np.asarray(y)
    heads = []
    for m in range(n_members):
        idx = balanced_bootstrap(y, seed + 1000 * m)
        heads.append(train_head(X[idx], y[idx], n_classes, seed=seed + m, **head_kwargs))
    return MeanProbabilities(heads).eval()


@torch.no_grad()
def predict_proba(head: nn.Module, X: np.ndarray) -> np.ndarray:
    """Class probabilities ``(N, K)`` of a head (or ensemble) on features ``X (N, D)``."""
    return head(torch.as_tensor(X, dtype=torch.float32)).softmax(-1).numpy()
