"""LoRA on the top layers over cached states: the same model, the runs notebook 04 needs."""
import dataclasses

import numpy as np
import pytest
import torch

from ftkit.core.config import ConfigError
from ftkit.data import formatting
from ftkit.models.tiny import tiny_llama
from ftkit.train import search, toplayers, tuning
from ftkit.train.toplayers import RunSpec

QUESTIONS = ["Where is my parcel?", "Can I return shoes?", "Do you ship abroad?",
             "How do I reset my password?", "Is the blue kettle in stock?",
             "Why was I charged twice?", "Can I change my address?", "Where is my refund?"]
ANSWERS = ["It left the depot today.", "Yes, within 30 days.", "Yes, to the EU.",
           "Use the link on the sign-in page.", "Yes, ships tomorrow.",
           "We will refund the second charge.", "Yes, before it ships.", "Within five days."]
BASE = RunSpec(steps=4, batch_size=4, lr=1e-2, eval_every=2)


@pytest.fixture(scope="module")
def task():
    model, tok = tiny_llama()
    return toplayers.TopLayers(model, tok, (QUESTIONS, ANSWERS), (QUESTIONS[:3], ANSWERS[:3]),
                               top_layers=1, max_length=64)


def test_the_top_model_on_cached_states_computes_the_full_models_logits():
    model, tok = tiny_llama()
    ds = formatting.pairs_dataset(tok, QUESTIONS[:2], ANSWERS[:2], 64)
    (row, _) = toplayers.hidden_states(model, ds, layer=1)
    top = toplayers.top_model(model, 1)
    ids = torch.tensor([ds[0]["input_ids"]])
    with torch.no_grad():
        full = model(input_ids=ids).logits
        part = top(inputs_embeds=row["inputs_embeds"][None]).logits
    torch.testing.assert_close(part, full, atol=1e-5, rtol=1e-4)


def test_a_run_trains_evaluates_and_measures(task):
    result = task.run(BASE)
    assert [s for s, _ in result.evals] == [2, 4] and result.steps == 4
    assert result.eval_loss < task.run(dataclasses.replace(BASE, lr=1e-6)).eval_loss
    assert len(result.grad_norms) == 4 and all(n > 0 for _, n in result.grad_norms)
    assert result.state_bytes_per_weight == 8.0  # AdamW: two fp32 moments per weight


def test_accumulated_micro_batches_give_the_one_batch_updates(task):
    runs = tuning.accumulation_runs(task, BASE, accum=4)
    assert tuning.largest_gap(runs["accumulated"].losses, runs["one batch"].losses) < 1e-4
    assert runs["accumulated"].eval_loss == pytest.approx(runs["one batch"].eval_loss, rel=1e-5)


def test_schedules_apply_their_rates(task):
    runs = tuning.compare_schedules(task, BASE, ["constant", "linear"], [0.0, 0.5])
    rates = {k: [lr for _, lr in r.lrs] for k, r in runs.items()}
    assert rates["constant, warm-up 0"] == [pytest.approx(1e-2)] * 4
    assert rates["linear, warm-up 0"] == sorted(rates["linear, warm-up 0"], reverse=True)
    assert rates["constant, warm-up 0.5"][0] < 1e-2  # warming up


def test_clipping_caps_the_update_but_not_the_measured_norm(task):
    runs = tuning.clipping_runs(task, BASE, "minibatch_sgd", 1.0, clip_norm=1e-3)
    first = runs["clipped"].grad_norms[0][1]
    assert first == pytest.approx(runs["unclipped"].grad_norms[0][1], rel=1e-5)  # pre-clip
    assert runs["clipped"].eval_loss != runs["unclipped"].eval_loss


def test_a_pruned_run_stops_at_the_evaluation_that_said_so(task):
    seen = []
    result = task.run(BASE, report=lambda step, loss: seen.append(step) or True)
    assert seen == [2] and result.steps == 2 and result.pruned


def test_bad_runs_are_refused(task):
    with pytest.raises(ConfigError, match="optimiser 'lion'"):
        task.run(dataclasses.replace(BASE, optimiser="lion"))
    with pytest.raises(ConfigError, match="schedule 'step'"):
        task.run(dataclasses.replace(BASE, schedule="step"))
    with pytest.raises(ConfigError, match="top_layers = 2"):
        toplayers.top_model(tiny_llama()[0], 2)


def test_search_space_names_and_scales():
    space = tuning.search_space({"lr": [1e-4, 1e-2], "lora_r": [2, 16]})
    assert space["lr"].log and space["lora_r"].integer and space["lora_r"].log
    with pytest.raises(ConfigError, match="'beta' cannot be searched"):
        tuning.search_space({"beta": [0.1, 1.0]})
    with pytest.raises(ConfigError, match=r"search_space\[.lr.\]: range .* empty or inverted"):
        tuning.search_space({"lr": [1e-2, 1e-4]})


def test_searches_resume_and_a_changed_setting_starts_a_new_study(task, tmp_path):
    space = tuning.search_space({"lr": [1e-4, 1e-1], "lora_r": [2, 8]})
    args = dict(space=space, samplers=["random", "tpe"], seeds=1, n_trials=3,
                output_dir=tmp_path)
    first = tuning.compare_searches(task, BASE, **args)
    assert list(first.table.index) == [("random", 0), ("tpe", 0)]
    again = tuning.compare_searches(task, BASE, **args)
    assert again.table.best.tolist() == first.table.best.tolist()  # nothing re-trained
    other = dataclasses.replace(BASE, steps=2, eval_every=1)
    names = {tuning.study_name(task, b, space, "tpe", 0, "none") for b in (BASE, other)}
    assert len(names) == 2
    assert all(np.isfinite(first.curves(s)).all() for s in ("random", "tpe"))
    figures = tuning.optuna_figures(first.results[("tpe", 0)].study, list(space))
    assert set(figures) == {"history", "importances", "parallel_coordinates", "contour"}


def test_pruned_search_trains_fewer_steps(task, tmp_path):
    space = tuning.search_space({"lr": [1e-6, 1e-1]})
    runs = {p: tuning.compare_searches(task, BASE, space, ["random"], 1, 6, tmp_path, pruner=p)
            for p in ("none", "median")}
    assert runs["median"].table.steps.sum() <= runs["none"].table.steps.sum()
    assert runs["none"].table.steps.sum() == 6 * BASE.steps
    assert isinstance(runs["median"].results[("random", 0)], search.SearchResult)


def test_two_worker_processes_share_the_notebooks_search(task, tmp_path):
    """The objective (task and cached states) travels to spawned workers; one study, no
    trial run twice."""
    space = tuning.search_space({"lr": [1e-4, 1e-1]})
    result = tuning.compare_searches(task, BASE, space, ["random"], 1, 4, tmp_path, n_workers=2)
    trials = result.results[("random", 0)].trials
    assert len(trials) == 4 and (trials.state == "COMPLETE").all()
    assert trials.lr.nunique() == 4 and (tmp_path / "optuna.journal").is_file()
