"""Reward model: the pairwise loss by hand, padding-invariant pooling, learning a preference,
and the calibration table."""
import math

import pytest
import torch

from ftkit.align import reward
from ftkit.models.tiny import tiny_bert


def test_pairwise_loss_hand_computed():
    loss = reward.pairwise_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]))
    expected = (math.log(1 + math.exp(-1.0)) + math.log(2.0)) / 2  # -log σ(1), -log σ(0)
    assert loss.item() == pytest.approx(expected)
    assert expected == pytest.approx(0.5032044, abs=1e-6)


@pytest.fixture()
def rm():
    encoder, tok = tiny_bert()
    torch.manual_seed(0)
    return reward.RewardModel(encoder), tok


def test_score_ignores_padding(rm):
    model, tok = rm
    alone = reward.score(model, tok, ["what is two"], ["four"])
    padded = reward.score(model, tok, ["what is two", "a much longer prompt than the first"],
                          ["four", "a long reply with many more words in it"])
    assert alone.shape == (1,) and padded.shape == (2,)
    assert padded[0].item() == pytest.approx(alone[0].item(), abs=1e-5)


def test_training_learns_a_separable_preference(rm):
    model, tok = rm
    rows = [{"prompt": f"question {i}", "chosen": "yes", "rejected": "no no no no"}
            for i in range(16)]
    cfg = reward.RewardConfig(reward_model="tiny-bert", rm_epochs=15, rm_lr=3e-3, rm_batch_size=8)
    losses = reward.train_reward_model(model, tok, rows, cfg, seed=0)
    assert len(losses) == 15 * 2 and losses[-1] < losses[0] * 0.5
    result = reward.pairwise_eval(model, tok, rows)
    assert result["accuracy"] == 1.0
    # the probability of "first is preferred" follows the shown order
    assert all((p > 0.5) == bool(y) for p, y in zip(result["probs"], result["labels"]))


def test_reliability_table_and_ece():
    table, ece = reward.reliability([0.1, 0.3, 0.9, 0.9], [0, 1, 1, 0], bins=2)
    assert table.pairs.tolist() == [2, 2]
    assert table.predicted.tolist() == pytest.approx([0.2, 0.9])
    assert table.observed.tolist() == pytest.approx([0.5, 0.5])
    assert ece == pytest.approx((2 * 0.3 + 2 * 0.4) / 4)


def test_pairwise_eval_reports_each_pair(rm):
    model, tok = rm
    rows = [{"prompt": "q", "chosen": "a", "rejected": "b c"}] * 3
    result = reward.pairwise_eval(model, tok, rows)
    assert len(result["ranked_right"]) == len(result["probs"]) == len(result["labels"]) == 3
    assert result["accuracy"] == sum(result["ranked_right"]) / 3
