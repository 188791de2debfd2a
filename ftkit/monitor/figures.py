"""Figures of notebook 15: the month's traffic, the service per day, and the dashboard of
every signal with its threshold and alerts (paper §9.2.5)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

KIND_COLOURS = {"normal": "#9bb", "shifted": "#e9a23b", "new_intent": "#2a7", "abuse": "#c33",
                "pii": "#849"}


def traffic_figure(month: pd.DataFrame, title: str = "The simulated month"):
    """Prompts per day, stacked by kind (normal, terse, new topic, abuse, personal data)."""
    counts = month.groupby(["day", "kind"]).size().unstack(fill_value=0)
    counts = counts[[k for k in KIND_COLOURS if k in counts]]
    fig, ax = plt.subplots(figsize=(10, 2.8))
    counts.plot.bar(stacked=True, ax=ax, width=0.85,
                    color=[KIND_COLOURS[k] for k in counts.columns])
    ax.set(title=title, xlabel="day", ylabel="prompts")
    ax.legend(fontsize=8, ncol=5, loc="lower left")
    fig.tight_layout()
    return fig


def service_figure(daily: pd.DataFrame, title: str = "The service, day by day (§9.2.1)"):
    """Latency (p50, p95), output tokens per second and error rate per day, from
    :func:`ftkit.monitor.responses.response_signals`."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 2.8))
    axes[0].plot(daily.index, daily.latency_p50_s, marker=".", label="p50")
    axes[0].plot(daily.index, daily.latency_p95_s, marker=".", ls="--", label="p95")
    axes[0].set(title="Latency", xlabel="day", ylabel="seconds")
    axes[0].legend(fontsize=8)
    axes[1].plot(daily.index, daily.tokens_per_s, marker=".", color="#2a7")
    axes[1].set(title="Throughput", xlabel="day", ylabel="output tokens / s")
    axes[2].bar(daily.index, daily.error_rate, color="#c33")
    axes[2].set(title="Error rate", xlabel="day", ylim=(0, max(0.05, daily.error_rate.max() * 1.2)))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def dashboard_figure(signals: pd.DataFrame, thresholds: pd.Series, fired: pd.DataFrame,
                     changes: dict[str, int], title: str = "Monitoring dashboard"):
    """One panel per signal (a column of ``signals``): the daily value, its threshold (dashed),
    the days it fired (red dots) and the planted changes (vertical lines, ``{label: day}``)."""
    names = list(signals.columns)
    cols = 3
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.3 * rows), sharex=True, squeeze=False)
    for ax, name in zip(axes.flat, names):
        ax.plot(signals.index, signals[name], marker=".", color="#345", lw=1)
        ax.axhline(thresholds[name], color="#888", ls="--", lw=1)
        hot = fired[name].astype(bool)
        ax.scatter(signals.index[hot], signals[name][hot], color="#c22", zorder=3, s=22)
        for (label, day), colour in zip(changes.items(), ("#e9a23b", "#2a7", "#c33", "#849")):
            ax.axvline(day, color=colour, lw=1, alpha=0.7, label=label)
        ax.set_title(name, fontsize=9)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


__all__ = ["KIND_COLOURS", "dashboard_figure", "service_figure", "traffic_figure"]
