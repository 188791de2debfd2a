"""Mixture of Agents (ftkit.align.moa), on the tiny Llama."""
from __future__ import annotations

import numpy as np
import pytest

from ftkit import models
from ftkit.align import moa
from ftkit.core.config import ConfigError

ROWS = [{"task": "route", "instruction": "[route] Which team handles: my card was charged twice?",
         "response": "billing"},
        {"task": "route", "instruction": "[route] Which team handles: where is my parcel?",
         "response": "shipping"}]


def test_majority_vote_takes_the_most_frequent_answer_and_breaks_ties_by_order():
    assert moa.majority([["a", "b", " b "], ["x", "y", "z"]]) == ["b", "x"]


def test_the_aggregator_sees_the_task_and_every_candidate():
    text = moa.aggregate_prompt("[route] Which team?", ["billing", "", "shipping"])
    assert text.startswith("[route] Which team?") and "1. billing" in text
    assert "2. (no answer)" in text and "3. shipping" in text


def test_mixture_builds_every_design_and_adds_up_their_costs():
    model, tok = models.load("tiny-llama")
    props = [moa.Proposer("greedy", model.eval()), moa.Proposer("hot", model, 1.0)]
    designs = moa.mixture(props, moa.Proposer("agg", model), tok, ROWS, layers=2, max_new_tokens=3,
                          batch_size=2)
    assert list(designs) == ["greedy", "hot", "majority vote", "MoA, 1 layer", "MoA, 2 layers"]
    assert all(len(d.texts) == len(ROWS) for d in designs.values())
    one, two = designs["MoA, 1 layer"], designs["MoA, 2 layers"]
    vote = designs["majority vote"]  # the proposers' first round, which both MoA designs add to
    assert one.seconds > vote.seconds and two.seconds > vote.seconds
    assert len(one.parts) == len(props) + 1
    assert designs["majority vote"].tokens == designs["greedy"].tokens + designs["hot"].tokens
    assert len(two.parts) == 2 * len(props) + 1
    with pytest.raises(ConfigError, match="at least one proposer"):
        moa.mixture([], props[0], tok, ROWS)


def test_scores_and_a_paired_interval():
    assert moa.correct(ROWS, ["billing", "returns"]).tolist() == [1.0, 0.0]
    mean, lo, hi = moa.paired_interval(np.array([1, 1, 0, 1]), np.array([0, 1, 0, 0]), seed=1)
    assert mean == pytest.approx(0.5) and 0.0 <= lo <= mean <= hi <= 1.0
    assert moa.paired_interval(np.ones(5), np.ones(5))[1:] == (0.0, 0.0)
    with pytest.raises(ConfigError, match="equal, non-empty"):
        moa.paired_interval(np.ones(2), np.ones(3))
