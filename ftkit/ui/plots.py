"""Matplotlib figures shared by notebooks and the run report.

``show(fig, name)`` displays a figure and saves it with the run's metrics so the report embeds
it. Used in every notebook.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt

from ftkit.core.results import record_reading, save_figure


def show(fig, name: str | None = None) -> None:
    """Display ``fig`` in the notebook and, when ``name`` is given, save it to the run.

    Returns None, so a cell ending in ``ft.show(...)`` does not display the figure twice.
    """
    from IPython.display import display

    if name:
        save_figure(fig, name)
    display(fig)
    plt.close(fig)


def reading(name: str, text: str) -> None:
    """Show a "Reading the results" passage and keep it with the run's metrics.

    ``text`` is Markdown written from this run's numbers (an f-string over the results just
    computed), so what it says changes with the run. Returns None, so the passage shows once.
    """
    from IPython.display import Markdown, display

    record_reading(name, text)
    display(Markdown(text.strip()))


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


def bar_panels(table, columns: dict[str, str], title: str = "", log: Sequence[str] = ()):
    """One small bar chart per column of ``table`` (rows = the compared variants), side by side;
    ``columns`` maps a column to its panel title, ``log`` names columns drawn on a log scale."""
    fig, axes = plt.subplots(1, len(columns), figsize=(2.9 * len(columns), 3.2), squeeze=False)
    colors = plt.cm.tab10.colors[: len(table)]
    for ax, (col, label) in zip(axes[0], columns.items()):
        values = table[col].astype(float)
        drawn = ax.bar([str(i) for i in table.index], values, color=colors)
        ax.bar_label(drawn, labels=[f"{v:.3g}" for v in values], padding=2, fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="x", labelsize=8, rotation=45)
        ax.margins(y=0.2)
        if col in log:
            ax.set_yscale("log")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
