"""Curve runs through the SFT trainer: curves read back, early stopping keeps the best."""
import pytest

from ftkit.core.config import ConfigError
from ftkit.train import curves

PAIRS = ([f"Where is order {i}?" for i in range(12)],
         [f"Order {i} ships in {i % 4 + 1} days." for i in range(12)])
EVAL = (["Where is order 99?", "Where is order 42?"], ["Order 99 ships in 2 days.",
                                                     "Order 42 ships in 3 days."])


def test_a_run_returns_its_train_and_eval_curves():
    plan = curves.CurvePlan("t", train_rows=8, steps=4, lr=5e-3, batch_size=2, eval_every=2)
    run = curves.curve_run("tiny-llama", plan, PAIRS, EVAL, seed=0, lora_r=2, max_length=64)
    assert list(run.eval.index) == [0, 2, 4] and list(run.train.index) == [1, 2, 3, 4]
    assert run.stopped_step == 4 and run.kept_eval_loss == pytest.approx(run.eval.iloc[-1], rel=1e-4)


def test_early_stopping_keeps_the_best_checkpoint():
    # the tiny model's eval loss levels off after a few steps: gains below min_delta stop it
    plan = curves.CurvePlan("flat", train_rows=2, steps=8, lr=0.3, batch_size=2, eval_every=1)
    full = curves.curve_run("tiny-llama", plan, PAIRS, EVAL, seed=0, lora_r=2, max_length=64)
    stopped = curves.curve_run("tiny-llama", plan, PAIRS, EVAL, seed=0, lora_r=2, max_length=64,
                               patience=1, min_delta=0.05)
    assert stopped.stopped_step < plan.steps
    seen = stopped.eval[stopped.eval.index > 0]
    assert stopped.kept_eval_loss == pytest.approx(seen.min(), rel=1e-4)
    assert list(stopped.eval.values) == pytest.approx(list(full.eval.loc[stopped.eval.index]),
                                                      rel=1e-4)


def test_planted_plans_are_checked():
    plans = curves.planted_plans(24, 4, 8, 500, 1e-3)
    assert [p.name for p in plans] == ["too few steps", "too little data", "good"]
    assert plans[1].lr == 2e-3 and plans[0].eval_every == 1
    with pytest.raises(ConfigError, match="few_steps < steps"):
        curves.planted_plans(4, 4, 8, 500, 1e-3)
    with pytest.raises(ConfigError, match="wants 50 training pairs"):
        curves.curve_run("tiny-llama", curves.CurvePlan("x", 50, 2, 1e-3), PAIRS, EVAL)
