"""Figures of notebook 13: perplexity with intervals, the planted curves, gradient noise, the
harness's scores, calibration and selective answering, and refusal rates (paper ch. 7)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

COLOURS = ["#999", "#2a7", "#36c", "#e9a23b"]


def perplexity_figure(table: pd.DataFrame):
    """One panel per text set: perplexity per model with its bootstrap interval
    (:func:`ftkit.evaluate.perplexity.perplexity_table`)."""
    sets = list(dict.fromkeys(table.index.get_level_values("set")))
    fig, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 3.4), squeeze=False)
    for ax, name in zip(axes[0], sets):
        part = table.loc[name]
        ax.bar(part.index, part.perplexity, color=COLOURS[:len(part)],
               yerr=[part.perplexity - part.ppl_low, part.ppl_high - part.perplexity], capsize=4)
        ax.set(title=name, ylabel="perplexity (lower is better)")
    fig.tight_layout()
    return fig


def curves_figure(runs: dict, labels: dict[str, str]):
    """Train and eval loss of each run (``{name: run}`` with ``.train``/``.eval`` Series),
    titled with its diagnosis."""
    fig, axes = plt.subplots(1, len(runs), figsize=(4.4 * len(runs), 3.4), sharey=True,
                             squeeze=False)
    for ax, (name, run) in zip(axes[0], runs.items()):
        ax.plot(run.train.index, run.train.values, color="#bbb", label="train")
        ax.plot(run.eval.index, run.eval.values, "o-", color="#2a7", label="eval")
        ax.set(title=f"{name}: {labels.get(name, '?')}", xlabel="step")
    axes[0][0].set_ylabel("loss")
    axes[0][0].legend()
    fig.tight_layout()
    return fig


def noise_figure(noise: pd.DataFrame):
    """Measured relative gradient noise by batch size against the 1/b − 1/N law
    (:func:`ftkit.evaluate.curves.gradient_noise`), log-log."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.loglog(noise.batch_size, noise.noise.clip(lower=1e-6), "o-", color="#2a7", label="measured")
    ax.loglog(noise.batch_size, noise.expected.clip(lower=1e-6), "--", color="#999",
              label="1/b − 1/N")
    ax.set(xlabel="batch size", ylabel="relative gradient noise", title="mini-batch gradient noise")
    ax.legend()
    return fig


def benchmark_figure(headline: pd.DataFrame, generation: tuple[str, ...] = ("shop_answer",)):
    """The harness's headline score per task and model with ±1.96 stderr: multiple-choice
    tasks on the left, generation tasks (another scale) on the right."""
    wide = headline.pivot(index="task", columns="model", values="value")
    err = headline.pivot(index="task", columns="model", values="stderr").fillna(0) * 1.96
    models = list(dict.fromkeys(headline.model))
    groups = [[t for t in wide.index if t not in generation], [t for t in wide.index if t in generation]]
    groups = [g for g in groups if g]
    fig, axes = plt.subplots(1, len(groups), figsize=(11, 3.4), squeeze=False,
                             gridspec_kw={"width_ratios": [max(1, len(g)) for g in groups]})
    for ax, tasks in zip(axes[0], groups):
        wide.loc[tasks, models].plot.bar(ax=ax, rot=0, color=COLOURS[:len(models)],
                                         yerr=err.loc[tasks, models], capsize=3)
        gen = tasks[0] in generation
        ax.set(ylabel="chrF" if gen else "acc_norm", xlabel="",
               title="generation" if gen else "multiple choice (95 % intervals)",
               **({} if gen else {"ylim": (0, 1)}))
    fig.tight_layout()
    return fig


def calibration_figure(reliability: dict[str, pd.DataFrame], selective: dict[str, pd.DataFrame]):
    """Reliability diagrams and accuracy-coverage curves, one line per model."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for (name, rel), colour in zip(reliability.items(), COLOURS):
        axes[0].plot(rel.confidence, rel.accuracy, "o-", color=colour, label=name)
        curve = selective[name]
        axes[1].plot(curve.coverage, curve.accuracy, color=colour, label=name)
    axes[0].plot([0, 1], [0, 1], "--", color="#ccc", label="calibrated")
    axes[0].set(xlabel="confidence", ylabel="accuracy", title="reliability (multiple choice)")
    axes[1].set(xlabel="coverage (share answered)", ylabel="accuracy of the answered",
                title="answer only when sure")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    return fig


def refusal_figure(refusals: pd.DataFrame):
    """Refusal rate per prompt group and model, with Wilson intervals
    (:func:`ftkit.evaluate.safety.refusal_table`)."""
    rate = refusals.rate.unstack("group")
    low = (refusals.rate - refusals.low).unstack("group")
    high = (refusals.high - refusals.rate).unstack("group")
    models = list(dict.fromkeys(refusals.index.get_level_values("model")))
    groups = list(dict.fromkeys(refusals.index.get_level_values("group")))
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(8, 3.4))
    x = np.arange(len(groups))
    for i, (name, colour) in enumerate(zip(models, COLOURS)):
        ax.bar(x + (i - (len(models) - 1) / 2) * width, rate.loc[name, groups], width,
               color=colour, label=name, capsize=3,
               yerr=[low.loc[name, groups], high.loc[name, groups]])
    ax.set_xticks(x, groups)
    ax.set(ylabel="refusal rate", ylim=(0, 1.05),
           title="refusals: right on harmful prompts, over-refusal on benign ones")
    ax.legend()
    return fig
