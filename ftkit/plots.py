"""Matplotlib figures shared by notebooks and the run report.

``show(fig, name)`` displays a figure and saves it with the run's metrics so the report embeds
it. Used in every notebook.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt


def show(fig, name: str | None = None) -> None:
    """Display ``fig`` in the notebook and, when ``name`` is given, save it to the run.

    Returns None, so a cell ending in ``ft.show(...)`` does not display the figure twice.
    """
    from IPython.display import display

    from .runs import save_figure

    if name:
        save_figure(fig, name)
    display(fig)
    plt.close(fig)


def bars(values: dict[str, float], title: str, ylabel: str, fmt: str = "{:.1f}",
         colors: Sequence[str] | None = None):
    """A labelled bar chart of ``{label: value}``; the values are printed on the bars."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    labels, heights = list(values), list(values.values())
    drawn = ax.bar(labels, heights, color=colors or plt.cm.tab10.colors[: len(labels)])
    ax.bar_label(drawn, labels=[fmt.format(v) for v in heights], padding=2)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.margins(y=0.15)
    fig.tight_layout()
    return fig
