"""Calibration numbers on hand-made confidences."""
import numpy as np
import pandas as pd
import pytest

from ftkit.core.config import ConfigError
from ftkit.evaluate import uncertainty


def test_a_calibrated_predictor_has_small_ece_and_an_overconfident_one_large():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.3, 1.0, 4000)
    right = rng.uniform(size=conf.size) < conf
    assert uncertainty.ece(conf, right) < 0.03
    assert uncertainty.ece(np.full(conf.size, 0.99), right) > 0.3
    value, low, high = uncertainty.ece_interval(conf[:300], right[:300], n_boot=200)
    assert low <= value <= high


def test_reliability_bins_count_every_question():
    table = uncertainty.reliability([0.05, 0.15, 0.95, 0.96], [0, 0, 1, 1], bins=10)
    assert table["count"].sum() == 4 and len(table) == 3
    assert table.iloc[-1].accuracy == 1.0


def test_selective_answering_answers_the_surest_first():
    curve = uncertainty.selective([0.9, 0.8, 0.6, 0.4], [1, 1, 0, 0])
    assert list(curve.coverage) == [0.25, 0.5, 0.75, 1.0]
    assert uncertainty.accuracy_at_coverage(curve, 0.5) == 1.0
    assert uncertainty.accuracy_at_coverage(curve, 1.0) == 0.5


def test_choice_confidence_is_a_softmax_over_the_choices():
    table = pd.DataFrame({"loglik": [[0.0, np.log(3.0)]], "target": [1], "pred": [1],
                          "correct": [True]})
    out = uncertainty.choice_confidence(table)
    assert out.confidence.iloc[0] == pytest.approx(0.75)
    assert out.p_target.iloc[0] == pytest.approx(0.75)


def test_bad_confidences_are_refused():
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        uncertainty.ece([1.5], [1])
    with pytest.raises(ConfigError, match="as many"):
        uncertainty.reliability([0.5, 0.6], [1])


def test_token_confidence_lists_each_generated_token(policy):
    model, tok = policy
    table = uncertainty.token_confidence(model, tok, "hello there", max_new_tokens=5)
    assert 1 <= len(table) <= 5
    assert ((table.p > 0) & (table.p <= 1)).all() and (table.p >= table.p_runner_up - 1e-6).all()
