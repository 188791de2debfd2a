"""Hyperparameter search on Optuna: samplers, pruning, storage kinds, workers, resume."""
import math
import multiprocessing
import time

import optuna
import pytest

from ftkit.core.config import ConfigError
from ftkit.train import search

SPACE = {"lr": search.Dim(1e-4, 1e-1, log=True), "lora_r": search.Dim(choices=(4, 8, 16))}


@pytest.mark.parametrize("sampler", search.SAMPLERS)
def test_each_sampler_runs_its_budget_and_finds_a_good_lr(sampler, tmp_path):
    result = search.run_search(search.toy_training, SPACE, n_trials=12, output_dir=tmp_path,
                               sampler=sampler, seed=1)
    assert len(result.trials) == 12 and (tmp_path / "optuna.journal").is_file()
    assert result.best_value < 1.5 and 3e-4 < result.best_params["lr"] < 3e-2
    curve = result.best_so_far()
    assert curve == sorted(curve, reverse=True) and curve[-1] == result.best_value


def test_pruning_saves_steps_and_keeps_the_best(tmp_path):
    full = search.run_search(search.toy_training, SPACE, n_trials=16, output_dir=tmp_path / "a",
                             sampler="random", seed=3, max_steps=8)
    pruned = search.run_search(search.toy_training, SPACE, n_trials=16,
                               output_dir=tmp_path / "b", sampler="random", seed=3,
                               pruner="median", max_steps=8)
    assert (pruned.trials.state == "PRUNED").any()
    assert pruned.steps_trained < full.steps_trained
    assert pruned.best_value == pytest.approx(full.best_value, rel=0.02)


def test_a_rerun_continues_the_study(tmp_path):
    search.run_search(search.toy_training, SPACE, n_trials=3, output_dir=tmp_path, seed=0)
    again = search.run_search(search.toy_training, SPACE, n_trials=5, output_dir=tmp_path,
                              seed=0)
    assert list(again.trials.index) == [0, 1, 2, 3, 4]


def test_two_workers_share_one_journal(tmp_path):
    result = search.run_search(search.toy_training, SPACE, n_trials=6, output_dir=tmp_path,
                               sampler="random", n_workers=2, seed=0)
    assert sorted(result.trials.index) == list(range(6))
    assert (result.trials.state == "COMPLETE").all()
    drawn = {(row.lr, row.lora_r) for row in result.trials.itertuples()}
    assert len(drawn) == 6, "each worker draws its own parameters"


def test_sqlite_url_and_journal_path_are_storages(tmp_path):
    db = search.run_search(search.toy_training, SPACE, n_trials=2, output_dir=tmp_path,
                           storage=f"sqlite:///{tmp_path / 'study.db'}")
    journal = search.run_search(search.toy_training, SPACE, n_trials=2, output_dir=tmp_path,
                                storage=str(tmp_path / "here.journal"))
    assert (tmp_path / "study.db").is_file() and (tmp_path / "here.journal").is_file()
    assert len(db.trials) == len(journal.trials) == 2


def _slow_training(params, report):
    report(1, 1.0)
    time.sleep(60)
    return 1.0


def test_a_killed_worker_keeps_finished_trials_and_requeues_its_own(tmp_path):
    url = str(tmp_path / "optuna.journal")
    search.run_search(search.toy_training, SPACE, n_trials=2, output_dir=tmp_path, seed=0)
    worker = multiprocessing.get_context("spawn").Process(
        target=search._worker, args=("search", url, search.Objective(_slow_training, SPACE),
                                     "random", "none", 5, 1, 3, 8))
    worker.start()
    deadline = time.time() + 60
    storage = search.open_storage(url)
    def started():
        trials = optuna.load_study(study_name="search", storage=storage).trials
        return len(trials) == 3 and bool(trials[2].intermediate_values)  # all drawn

    while time.time() < deadline and not started():
        time.sleep(0.2)
    worker.kill()
    worker.join()
    killed = optuna.load_study(study_name="search", storage=search.open_storage(url)).trials[2]
    assert killed.state.name == "RUNNING"
    result = search.run_search(search.toy_training, SPACE, n_trials=3, output_dir=tmp_path)
    states = result.trials.state.to_dict()
    assert states[0] == states[1] == "COMPLETE" and states[2] == "FAIL"
    assert states[3] == "COMPLETE" and result.trials.loc[3, "lr"] == killed.params["lr"]


@pytest.mark.parametrize("kwargs, message", [
    ({"space": {"lr": search.Dim(1e-2, 1e-3, log=True)}}, "empty or inverted"),
    ({"space": {}}, "search space is empty"),
    ({"sampler": "bayes"}, "sampler = 'bayes'"),
    ({"pruner": "asha"}, "pruner = 'asha'"),
    ({"n_workers": 5}, "n_workers = 5 is larger than the trial budget"),
    ({"storage": "postgresql://nobody@127.0.0.1:1/none"}, "cannot be opened"),
    ({"storage": "study.txt"}, "journal file ending .journal"),
])
def test_bad_input_names_the_parameter(kwargs, message, tmp_path):
    call = {"space": SPACE, "n_trials": 2, "output_dir": tmp_path, **kwargs}
    space = call.pop("space")
    with pytest.raises(ConfigError, match=message):
        search.run_search(search.toy_training, space, **call)


def test_grid_values_are_spread_over_the_range():
    assert search.Dim(1e-4, 1e-2, log=True).grid(3) == pytest.approx([1e-4, 1e-3, 1e-2])
    assert search.Dim(2, 16, integer=True).grid(3) == [2, 9, 16]
    assert math.isclose(search.Dim(0.0, 0.1).grid(2)[1], 0.1)
