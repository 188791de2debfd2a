"""The curve diagnosis names planted shapes, and gradient noise falls with the batch size."""
import numpy as np
import pandas as pd
import pytest

from ftkit.core.config import ConfigError
from ftkit.evaluate import curves

STEPS = list(range(0, 25, 3))


def _curve(values):
    return pd.Series(dict(zip(STEPS, values)))


def _train(values, jitter=0.0, seed=0):
    steps = list(range(1, 25))
    base = np.interp(steps, STEPS, values)
    noise = np.random.default_rng(seed).normal(0, jitter, len(steps)) * base
    return pd.Series(base + noise, index=steps)


def test_a_curve_still_falling_at_the_end_is_under_fitting():
    ev = [4.0, 3.8, 3.6, 3.4, 3.2, 3.0, 2.8, 2.6, 2.4]
    d = curves.diagnose(_train(ev), _curve(ev))
    assert d.label == "under-fitting" and d.numbers["late_share"] > 0.25


def test_a_flat_curve_is_under_fitting():
    ev = [4.0, 3.99, 3.98, 3.98, 3.97, 3.97, 3.97, 3.96, 3.96]
    assert curves.diagnose(_train(ev), _curve(ev)).label == "under-fitting"


def test_eval_turning_up_while_train_falls_is_over_fitting():
    ev = [4.0, 3.0, 2.6, 2.5, 2.55, 2.7, 2.9, 3.1, 3.3]
    tr = [4.0, 2.8, 2.2, 1.8, 1.4, 1.0, 0.7, 0.4, 0.2]
    d = curves.diagnose(_train(tr), _curve(ev))
    assert d.label == "over-fitting" and d.numbers["best_step"] == 9
    assert "above its best" in d.reason


def test_a_levelled_curve_is_healthy_and_jitter_makes_it_noisy():
    ev = [4.0, 2.8, 2.4, 2.25, 2.2, 2.18, 2.17, 2.16, 2.16]
    assert curves.diagnose(_train(ev), _curve(ev)).label == "healthy"
    assert curves.diagnose(_train(ev, jitter=0.3), _curve(ev)).label == "noisy"


def test_short_curves_are_refused():
    with pytest.raises(ConfigError, match="at least 3 points"):
        curves.diagnose({1: 2.0, 2: 1.0}, {1: 2.0, 2: 1.0})


def test_stopping_summary_compares_with_the_full_run():
    s = curves.stopping_summary({0: 3.0, 3: 2.0, 6: 2.2}, 9, 24, 2.01)
    assert s["steps_saved"] == 15 and s["best_step"] == 3
    assert s["gap_to_best"] == pytest.approx(0.005)


def test_gradient_noise_falls_with_batch_size(policy):
    model, tok = policy
    prompts = [f"Question {i}: where is order {i * 7}?" for i in range(12)]
    answers = [f"Order {i * 7} ships in {i % 5 + 1} days." for i in range(12)]
    table = curves.gradient_noise(model, tok, prompts, answers, [1, 4, 12], draws=50)
    assert table.noise.iloc[0] > table.noise.iloc[1] > table.noise.iloc[2]
    assert table.noise.iloc[2] == pytest.approx(0.0, abs=1e-9)  # all examples: the full gradient
    assert table.cosine.iloc[0] < table.cosine.iloc[2] == pytest.approx(1.0)
    assert all(p.grad is None for p in model.parameters())


def test_gradient_noise_selects_frozen_parameters_and_restores_them(policy):
    model, tok = policy
    for n, p in model.named_parameters():
        if "lora_" in n:
            p.requires_grad_(False)
    try:
        table = curves.gradient_noise(model, tok, ["a b c", "d e f", "g h"], ["x y", "z", "w v"],
                                      [1, 2], draws=10, select="lora_")
        assert len(table) == 2
        assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)
    finally:
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.requires_grad_(True)
    with pytest.raises(ConfigError, match="batch sizes"):
        curves.gradient_noise(model, tok, ["a", "b"], ["c", "d"], [3])
