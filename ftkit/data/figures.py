"""Figures of the data-preparation stage: the row funnel and token lengths against the limit.

Used in notebooks/01_data_preparation.ipynb (paper §3.1.2); bar charts come from ftkit.ui.plots.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def funnel(rows: dict[str, int], title: str = "Rows after each preparation step"):
    """Horizontal bars, first step on top, with the count and the rows removed by each step."""
    names, counts = list(rows), list(rows.values())
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    ax.barh(names, counts, color=plt.cm.Blues(np.linspace(0.85, 0.45, len(names))))
    for i, n in enumerate(counts):
        drop = f"  (-{counts[i - 1] - n})" if i and counts[i - 1] != n else ""
        ax.text(n, i, f" {n}{drop}", va="center", fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("rows")
    ax.set_title(title)
    ax.margins(x=0.2)
    fig.tight_layout()
    return fig


def token_histogram(lengths: dict[str, np.ndarray], limit: int,
                    title: str = "Tokens per training example"):
    """Overlaid histograms of token counts (one per template) and the model's limit."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    top = max(int(max(v.max() for v in lengths.values())), limit) + 1
    bins = np.linspace(0, top, 40)
    for name, values in lengths.items():
        ax.hist(values, bins=bins, alpha=0.6, label=f"{name} (over limit: {(values > limit).sum()})")
    ax.axvline(limit, color="crimson", linestyle="--", label=f"limit {limit}")
    ax.set_xlabel("tokens")
    ax.set_ylabel("rows")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
