"""Training setup of the support assistant (notebook 04, paper §5.3-5.6): optimisers,
schedules, clipping, accumulation, precision and hyperparameter search, each a function that
returns what it measured.

Every run adapts the top layers of the assistant's model over cached lower-layer states
(:class:`ftkit.train.toplayers.TopLayers`), so that the dozens of runs these comparisons need
fit a laptop; :func:`assistant_task` builds that task from the running example's records
(ftkit.train.assistant). Searches are Optuna studies (ftkit.train.search), one per sampler and
seed, named after what they search, so a rerun continues them and a changed setting starts
new ones.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ftkit import models
from ftkit.core.config import ConfigError
from ftkit.train import assistant, optimisers, search
from ftkit.train.toplayers import SEARCHABLE, RunResult, RunSpec, TopLayers, TrialRun


def assistant_task(model_name: str, n_train: int, n_eval: int, top_layers: int,
                   max_length: int, seed: int = 42) -> TopLayers:
    """The support assistant's training task: ``n_train`` training and ``n_eval`` held-out
    records that fit ``max_length`` tokens (notebook 01's split), on ``model_name``."""
    data = assistant.records(seed)
    model, tokenizer = models.load(model_name)
    train = assistant.fitting(data["train"], tokenizer, max_length, n_train, seed)
    test = assistant.fitting(data["test"], tokenizer, max_length, n_eval, seed)
    if len(train) < 2 or not len(test):
        raise ConfigError(f"max_length = {max_length}: only {len(train)} training and "
                          f"{len(test)} held-out records fit; raise max_length")
    return TopLayers(model, tokenizer, (train["instruction"], train["response"]),
                     (test["instruction"], test["response"]), top_layers, max_length)


# ---------------------------------------------------------------- optimisers, schedules …

def optimiser_run(task: TopLayers, base: RunSpec, steps: int) -> optimisers.Run:
    """``(name, lr) -> row`` for :func:`ftkit.train.optimisers.compare_optimisers`."""
    def run(name: str, lr: float) -> dict:
        result = task.run(dataclasses.replace(base, optimiser=name, lr=lr, steps=steps))
        return {**result.row(), "losses": result.losses,
                "arithmetic_bytes_per_weight": optimisers.STATE_ARITHMETIC[name]}
    return run


def compare_optimisers(task: TopLayers, base: RunSpec, names: list[str],
                       lrs: dict[str, list[float]], sweep_steps: int,
                       progress=None) -> optimisers.OptimiserComparison:
    """Each optimiser at the rate its own short sweep picked, for ``base.steps`` steps."""
    return optimisers.compare_optimisers(names, lrs, optimiser_run(task, base, sweep_steps),
                                         optimiser_run(task, base, base.steps), progress)


def compare_schedules(task: TopLayers, base: RunSpec, schedules: list[str],
                      warmups: list[float], progress=None) -> dict[str, RunResult]:
    """One run per schedule and warm-up share, keyed ``"cosine, warm-up 0.25"``."""
    runs = {f"{s}, warm-up {w:g}": dataclasses.replace(base, schedule=s, warmup_ratio=w)
            for s in schedules for w in warmups}
    return {label: task.run(spec) for label, spec in (progress or iter)(list(runs.items()))}


def clipping_runs(task: TopLayers, base: RunSpec, optimiser: str, lr: float,
                  clip_norm: float) -> dict[str, RunResult]:
    """The same high-rate run with the gradient clipped to ``clip_norm`` and without."""
    spec = dataclasses.replace(base, optimiser=optimiser, lr=lr)
    return {"clipped": task.run(dataclasses.replace(spec, max_grad_norm=clip_norm)),
            "unclipped": task.run(dataclasses.replace(spec, max_grad_norm=0.0))}


def accumulation_runs(task: TopLayers, base: RunSpec, accum: int) -> dict[str, RunResult]:
    """One batch of ``base.batch_size`` rows per step, and the same rows as ``accum``
    accumulated micro-batches: the same examples per update."""
    if base.batch_size % accum:
        raise ConfigError(f"accum_steps = {accum} must divide batch_size = {base.batch_size}")
    return {"one batch": task.run(base),
            "accumulated": task.run(dataclasses.replace(base, batch_size=base.batch_size // accum,
                                                        grad_accum=accum))}


def precision_runs(task: TopLayers, base: RunSpec, steps: int) -> dict[str, RunResult]:
    """The same run in fp32 and under bf16 autocast, ``steps`` steps each."""
    spec = dataclasses.replace(base, steps=steps)
    return {"fp32": task.run(spec), "bf16": task.run(dataclasses.replace(spec, bf16=True))}


def largest_gap(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> float:
    """Largest relative difference between two loss curves at the steps both logged."""
    other = dict(b)
    gaps = [abs(v - other[s]) / max(abs(other[s]), 1e-12) for s, v in a if s in other]
    return max(gaps) if gaps else math.nan


# ---------------------------------------------------------------- search

def search_space(bounds: dict[str, list[float]]) -> dict[str, search.Dim]:
    """``{name: [low, high]}`` as search dimensions: ``lr`` and ``lora_alpha`` log-scaled,
    ``lora_r`` whole numbers on a log scale, the rest linear. Unknown names are refused."""
    space = {}
    for name, pair in bounds.items():
        if name not in SEARCHABLE:
            raise ConfigError(f"search_space: {name!r} cannot be searched; choose from "
                              f"{sorted(SEARCHABLE)}")
        if len(pair) != 2:
            raise ConfigError(f"search_space[{name!r}] = {pair}: give [low, high]")
        kind = SEARCHABLE[name]
        space[name] = search.Dim(float(pair[0]), float(pair[1]), log=kind in ("log", "int"),
                                 integer=kind == "int")
    search.check_space(space)
    return space


def study_name(task: TopLayers, base: RunSpec, space: dict[str, search.Dim], sampler: str,
               seed: int, pruner: str) -> str:
    """``tpe-seed0-median-<hash>``: the hash covers the task's rows and model, the trial's
    fixed settings and the space, so a changed setting starts a new study."""
    what = {"task": task.signature, "base": dataclasses.asdict(base),
            "space": {k: dataclasses.asdict(d) for k, d in space.items()}}
    digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()
    return f"{sampler}-seed{seed}-{pruner}-{digest[:10]}"


@dataclass
class SearchComparison:
    """Searches by sampler and seed: each one's :class:`ftkit.train.search.SearchResult`,
    and a table (sampler, seed) → best eval loss, steps trained, pruned trials."""
    results: dict[tuple[str, int], search.SearchResult]
    table: pd.DataFrame

    def curves(self, sampler: str) -> np.ndarray:
        """Best-so-far eval loss after each trial, one row per seed."""
        rows = [r.best_so_far() for (s, _), r in self.results.items() if s == sampler]
        width = max(len(r) for r in rows)
        return np.array([r + [r[-1]] * (width - len(r)) for r in rows])

    def median_best(self, sampler: str) -> float:
        return float(self.table.xs(sampler, level="sampler").best.median())


def compare_searches(task: TopLayers, base: RunSpec, space: dict[str, search.Dim],
                     samplers: list[str], seeds: int, n_trials: int, output_dir: str | Path,
                     storage: str | None = None, n_workers: int = 1, pruner: str = "none",
                     progress=None) -> SearchComparison:
    """Run (or continue) one study per sampler and seed, each ``n_trials`` trials of ``base``
    with the trial's parameters; ``pruner`` stops trials whose evaluations fall behind."""
    results, rows = {}, []
    for sampler, seed in (progress or iter)([(s, k) for s in samplers for k in range(seeds)]):
        result = search.run_search(
            TrialRun(task, base), space, n_trials=n_trials, output_dir=output_dir,
            sampler=sampler, pruner=pruner, seed=seed, storage=storage, n_workers=n_workers,
            study_name=study_name(task, base, space, sampler, seed, pruner),
            max_steps=base.steps)
        results[(sampler, seed)] = result
        rows.append({"sampler": sampler, "seed": seed, "best": result.best_value,
                     "steps": result.steps_trained,
                     "pruned": int((result.trials.state == "PRUNED").sum()),
                     **{f"best_{k}": v for k, v in result.best_params.items()}})
    return SearchComparison(results, pd.DataFrame(rows).set_index(["sampler", "seed"]))


def pruning_effect(full: SearchComparison, pruned: SearchComparison,
                   sampler: str = "random") -> dict[str, Any]:
    """What pruning changed in ``sampler``'s searches, seed by seed (the same sampler and
    seed draw the same settings): steps saved, each seed's best loss gap, and in how many
    seeds the pruner stopped the trial that was best without pruning."""
    a = full.table.xs(sampler, level="sampler")
    b = pruned.table.xs(sampler, level="sampler")
    lost = 0
    for seed in b.index:
        unpruned = full.results[(sampler, seed)].trials
        trials = pruned.results[(sampler, seed)].trials
        winner = unpruned.value.idxmin()
        lost += int(winner in trials.index and trials.state[winner] == "PRUNED")
    gaps = (b.best / a.best.loc[b.index] - 1).round(4)
    return {"steps_saved": round(1 - b.steps.sum() / a.steps.loc[b.index].sum(), 3),
            "best_gap_by_seed": gaps.to_dict(), "largest_gap": float(gaps.abs().max()),
            "winners_pruned": lost, "seeds": len(b), "pruned_trials": int(b.pruned.sum())}


def best_params(comparison: SearchComparison) -> dict[str, Any]:
    """The parameters of the best trial over every search."""
    best = min(comparison.results.values(), key=lambda r: r.best_value)
    return best.best_params


def optuna_figures(study, params: list[str]) -> dict[str, Any]:
    """Optuna's own matplotlib plots of ``study``: optimisation history, parameter importances
    (fANOVA), parallel coordinates and the contour of the first two ``params``."""
    import optuna.visualization.matplotlib as ov
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():  # the matplotlib backend is marked experimental
        warnings.simplefilter("ignore", ExperimentalWarning)
        drawn = {"history": ov.plot_optimization_history(study),
                 "importances": ov.plot_param_importances(study),
                 "parallel_coordinates": ov.plot_parallel_coordinate(study, params=params),
                 "contour": ov.plot_contour(study, params=params[:2])}
    figures = {}
    for name, ax in drawn.items():
        ax = ax.flat[0] if isinstance(ax, np.ndarray) else ax
        figures[name] = ax.figure
    return figures


# ---------------------------------------------------------------- figures

def curve_figure(curves: dict[str, list[tuple[int, float]]], title: str, ylabel: str,
                 log: bool = False, hline: float | None = None):
    """One line per named curve of ``(step, value)`` points."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.4))
    for label, points in curves.items():
        if points:
            ax.plot(*zip(*points), marker=".", label=label)
    if hline is not None:
        ax.axhline(hline, color="#888", ls="--", lw=1, label=f"clip at {hline:g}")
    ax.set(title=title, xlabel="optimiser step", ylabel=ylabel)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def search_figure(comparison: SearchComparison, budget: int):
    """Best-so-far eval loss per trial for each sampler: median over seeds, range shaded."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.4))
    samplers = dict.fromkeys(s for s, _ in comparison.results)
    for sampler in samplers:
        curves = comparison.curves(sampler)
        x = np.arange(1, curves.shape[1] + 1)
        finite = np.where(np.isfinite(curves), curves, np.nan)
        ax.plot(x, np.nanmedian(finite, axis=0), marker=".", label=f"{sampler} (median)")
        ax.fill_between(x, np.nanmin(finite, axis=0), np.nanmax(finite, axis=0), alpha=0.2)
    ax.set(title=f"Best eval loss so far ({budget} trials per search)", xlabel="trial",
           ylabel="best eval loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


__all__ = ["SearchComparison", "accumulation_runs", "assistant_task", "best_params",
           "clipping_runs", "compare_optimisers", "compare_schedules", "compare_searches",
           "curve_figure", "largest_gap", "optimiser_run", "optuna_figures", "precision_runs", "pruning_effect",
           "search_figure", "search_space", "study_name"]
