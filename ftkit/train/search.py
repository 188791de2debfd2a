"""Hyperparameter search on Optuna (paper §5.3.1): samplers, pruning, storage, workers.

A search is an Optuna study. :func:`run_search` draws ``n_trials`` parameter sets from a
:class:`Dim` space with a sampler by name (``grid``, ``random``, ``tpe``), calls
``train_fn(params, report)`` for each, and stops a trial early when the pruner (``median``,
``hyperband``) finds its reported eval losses behind the others'. The study lives in real
Optuna storage, so it survives the process:

- by default a journal file under the output folder (``<output_dir>/optuna.journal``);
- a path ending ``.journal`` or ``.log``: a journal file there;
- an RDB URL (``sqlite:///…``, ``postgresql://…``, ``mysql://…``): Optuna's RDBStorage,
  with heartbeats, so the trial of a worker that dies is marked failed and tried again.

``n_workers > 1`` starts that many processes against the same study, each running its share
of the trials (on a cluster, run the same function on every node against a shared RDB URL).
Rerunning a search with the same storage and study name continues it: finished trials are
kept and only the missing ones run; a trial left running by a stopped run is marked failed
and its parameters queued again (journal storage; RDB storage does this by heartbeat).
"""
from __future__ import annotations

import math
import multiprocessing
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftkit.core.config import ConfigError

SAMPLERS = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "hyperband")
HEARTBEAT_S, GRACE_S = 5, 15


@dataclass(frozen=True)
class Dim:
    """One searched parameter: a range ``[low, high]`` (``log``-scaled, ``integer``) or
    ``choices``."""
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    integer: bool = False
    choices: tuple = ()

    def check(self, name: str) -> None:
        if self.choices:
            return
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise ConfigError(f"search_space[{name!r}]: range [{self.low}, {self.high}] is "
                              "empty or inverted; give low < high")
        if self.log and self.low <= 0:
            raise ConfigError(f"search_space[{name!r}]: a log range needs low > 0, not "
                              f"{self.low}")

    def grid(self, points: int) -> list:
        """``points`` values spread over the range (log-spaced when ``log``), or the choices."""
        if self.choices:
            return list(self.choices)
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            values = [math.exp(lo + (hi - lo) * i / (points - 1)) for i in range(points)]
        else:
            values = [self.low + (self.high - self.low) * i / (points - 1) for i in range(points)]
        values[0], values[-1] = self.low, self.high  # exactly the ends, no rounding past them
        return sorted({round(v) for v in values}) if self.integer else values

    def suggest(self, trial, name: str):
        if self.choices:
            return trial.suggest_categorical(name, list(self.choices))
        if self.integer:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, self.low, self.high, log=self.log)


def check_space(space: dict[str, Dim]) -> None:
    if not space:
        raise ConfigError("search space is empty: name at least one parameter to search")
    for name, dim in space.items():
        dim.check(name)


def storage_url(storage: str | None, output_dir: str | Path) -> str:
    """What ``storage`` means: an RDB URL as given, else a journal file path (default:
    ``<output_dir>/optuna.journal``)."""
    if not storage:
        return str(Path(output_dir) / "optuna.journal")
    return storage


def open_storage(storage: str):
    """The Optuna storage for :func:`storage_url`'s answer; an unreachable one is refused."""
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend

    if "://" in storage:
        try:
            with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna 5
                warnings.simplefilter("ignore", ExperimentalWarning)
                retry = RetryHeartbeatStaleTrialCallback(max_retry=1)
                return RDBStorage(storage, heartbeat_interval=HEARTBEAT_S,
                                  grace_period=GRACE_S, heartbeat_stale_trial_callback=retry)
        except Exception as err:  # noqa: BLE001 - driver missing, host down, bad URL: one message
            raise ConfigError(f"storage_url = {storage!r} cannot be opened: "
                              f"{type(err).__name__}: {str(err).splitlines()[0][:200]}") from err
    path = Path(storage)
    if path.suffix not in (".journal", ".log"):
        raise ConfigError(f"storage_url = {storage!r}: give an RDB URL (sqlite:///study.db, "
                          "postgresql://…) or a journal file ending .journal or .log")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    except OSError as err:
        raise ConfigError(f"storage_url = {storage!r} cannot be written: {err}") from err


def grid_points_for(space: dict[str, Dim], n_trials: int) -> int:
    """Fewest values per range (at least 2) for a grid of at least ``n_trials`` points, so a
    grid search gets the same trial budget as the others (it visits the grid in a seeded
    order and stops at the budget)."""
    ranges = sum(not d.choices for d in space.values())
    fixed = math.prod(len(d.choices) for d in space.values() if d.choices)
    if not ranges:
        return 2
    return max(2, math.ceil((n_trials / fixed) ** (1 / ranges) - 1e-9))


def make_sampler(name: str, space: dict[str, Dim], seed: int, grid_points: int = 3):
    import optuna

    if name == "grid":
        return optuna.samplers.GridSampler({k: d.grid(grid_points) for k, d in space.items()},
                                           seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)
    raise ConfigError(f"sampler = {name!r}: choose one of {list(SAMPLERS)}")


def make_pruner(name: str, max_steps: int):
    import optuna

    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(2, max_steps))
    raise ConfigError(f"pruner = {name!r}: choose one of {list(PRUNERS)}")


class Objective:
    """Optuna's objective around ``train_fn(params, report) -> value``.

    ``report(step, value)`` hands the trial an intermediate eval loss and returns True when
    the pruner says stop (``train_fn`` should then return at once); the trial is then marked
    pruned. Each trial records how many steps it trained (``steps`` user attribute).
    """

    def __init__(self, train_fn: Callable[[dict, Callable[[int, float], bool]], float],
                 space: dict[str, Dim]):
        self.train_fn, self.space = train_fn, space

    def __call__(self, trial) -> float:
        import optuna

        params = {name: dim.suggest(trial, name) for name, dim in self.space.items()}
        steps = [0]

        def report(step: int, value: float) -> bool:
            steps[0] = step
            trial.report(value, step)
            return trial.should_prune()

        value = self.train_fn(params, report)
        trial.set_user_attr("steps", steps[0])
        if trial.should_prune():
            raise optuna.TrialPruned()
        return value


def _worker(study_name: str, storage: str, objective: Objective, sampler_name: str,
            pruner_name: str, seed: int, n_trials: int, grid_points: int, max_steps: int):
    import optuna

    study = optuna.load_study(study_name=study_name, storage=open_storage(storage),
                              sampler=make_sampler(sampler_name, objective.space, seed,
                                                   grid_points),
                              pruner=make_pruner(pruner_name, max_steps))
    study.optimize(objective, n_trials=n_trials, catch=())


def requeue_interrupted(study) -> int:
    """Mark trials left RUNNING by a stopped run as failed and queue their parameters again;
    returns how many. Only for a study no other process is working on."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if trial.params:  # stopped before drawing its parameters: nothing to repeat
            study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number})
    return len(stale)


@dataclass
class SearchResult:
    """A finished search: the study, one row per trial, and the steps trained."""
    study: Any
    trials: Any  # DataFrame: number, state, value, steps, params …
    steps_trained: int
    best_value: float
    best_params: dict

    def best_so_far(self) -> list[float]:
        """Best value after each finished trial, in trial order."""
        best, out = math.inf, []
        for value in self.trials.value:
            if value == value:  # not NaN: pruned and failed trials carry none
                best = min(best, value)
            out.append(best)
        return out


def run_search(train_fn, space: dict[str, Dim], *, n_trials: int, output_dir: str | Path,
               sampler: str = "tpe", pruner: str = "none", seed: int = 0,
               storage: str | None = None, study_name: str = "search", n_workers: int = 1,
               grid_points: int = 0, max_steps: int = 0) -> SearchResult:
    """Run (or continue) a study of ``n_trials`` trials; see the module docstring.

    Args:
        train_fn: ``(params, report) -> eval loss``; a module-level function when
            ``n_workers > 1`` (each worker process imports it).
        max_steps: the steps a full trial trains (the Hyperband pruner's budget).
        grid_points: values per range for ``grid`` (0: enough for ``n_trials`` points).
    """
    import optuna
    from optuna.trial import TrialState

    _check(space, sampler, pruner, n_trials, n_workers)
    grid_points = grid_points or grid_points_for(space, n_trials)
    url = storage_url(storage, output_dir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=study_name, storage=open_storage(url),
                                direction="minimize", load_if_exists=True,
                                sampler=make_sampler(sampler, space, seed, grid_points),
                                pruner=make_pruner(pruner, max_steps))
    if "://" not in url:
        requeue_interrupted(study)
    done = len(study.get_trials(deepcopy=False,
                                states=(TrialState.COMPLETE, TrialState.PRUNED)))
    todo = max(0, n_trials - done)
    objective = Objective(train_fn, space)
    if n_workers == 1 or todo <= 1:
        if todo:
            study.optimize(objective, n_trials=todo, catch=())
    else:
        _run_workers(study_name, url, objective, sampler, pruner, seed, todo, n_workers,
                     grid_points, max_steps)
    return _result(study)


def _check(space: dict[str, Dim], sampler: str, pruner: str, n_trials: int,
           n_workers: int) -> None:
    check_space(space)
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler = {sampler!r}: choose one of {list(SAMPLERS)}")
    if pruner not in PRUNERS:
        raise ConfigError(f"pruner = {pruner!r}: choose one of {list(PRUNERS)}")
    if n_trials < 1 or n_workers < 1:
        raise ConfigError(f"n_trials = {n_trials}, n_workers = {n_workers}: both must be >= 1")
    if n_workers > n_trials:
        raise ConfigError(f"n_workers = {n_workers} is larger than the trial budget n_trials = "
                          f"{n_trials}; a worker would have nothing to do")


def _run_workers(study_name: str, url: str, objective: Objective, sampler: str, pruner: str,
                 seed: int, todo: int, n_workers: int, grid_points: int, max_steps: int) -> None:
    """``todo`` trials shared out over ``n_workers`` processes, each with its own seed."""
    shares = [todo // n_workers + (k < todo % n_workers) for k in range(n_workers)]
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_worker, args=(study_name, url, objective, sampler, pruner,
                                                   seed + 1 + k, share, grid_points,
                                                   max_steps))
             for k, share in enumerate(shares) if share]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    failed = [p.exitcode for p in procs if p.exitcode]
    if failed:
        raise RuntimeError(f"{len(failed)} search worker(s) exited with {failed}; the "
                           f"finished trials are kept in {url}")


def _result(study) -> SearchResult:
    import pandas as pd
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    rows = [{"number": t.number, "state": t.state.name, "value": t.value,
             "steps": t.user_attrs.get("steps", 0), **t.params} for t in trials]
    frame = pd.DataFrame(rows).set_index("number") if rows else pd.DataFrame()
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    best = min(finished, key=lambda t: t.value) if finished else None
    return SearchResult(study, frame, int(frame.steps.sum()) if rows else 0,
                        best.value if best else math.nan, dict(best.params) if best else {})


def toy_training(params: dict, report, steps: int = 8) -> float:
    """A stand-in for a training run, in microseconds: the eval loss after each of ``steps``
    steps for a learning rate ``lr`` (best near 3e-3) and optional ``lora_r``/``warmup``.

    Its minimum is known, so samplers and pruners can be tried and tested on it.
    """
    lr = params["lr"]
    floor = 0.5 + (math.log10(lr) + 2.5) ** 2 + 0.02 * abs(params.get("lora_r", 8) - 8)
    floor += 0.3 * params.get("warmup", 0.0)
    loss = floor + 3.0
    for step in range(1, steps + 1):
        loss = floor + 3.0 * math.exp(-step * min(1.0, lr * 300))
        if report(step, loss):
            break
    return loss


__all__ = ["Dim", "Objective", "PRUNERS", "SAMPLERS", "SearchResult", "check_space",
           "make_pruner", "make_sampler", "open_storage", "requeue_interrupted", "run_search",
           "storage_url", "toy_training"]
