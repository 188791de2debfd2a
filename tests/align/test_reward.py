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


def _no_dropout(model):
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def test_length_chunks_keep_each_reward(rm):
    model, tok = rm
    prompts = ["q", "a longer question here", "q two", "the longest question of them all"]
    replies = ["yes", "no", "a reply of several more words", "ok"]
    batch = reward.encode(tok, prompts, replies, 96)
    parts, order = reward.length_chunks(batch, 2)
    assert sorted(order.tolist()) == [0, 1, 2, 3]
    assert sum(p["input_ids"].numel() for p in parts) < batch["input_ids"].numel()
    model.eval()
    with torch.no_grad():
        whole = reward.batch_rewards(model, batch)
        chunked = reward.batch_rewards(model, batch, chunks=2)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)


def _first_losses(monkeypatch, bf16: bool, chunks: int) -> list[float]:
    monkeypatch.setenv("FTKIT_BF16", "1")  # bf16 where asked, whatever this CPU has
    encoder, tok = tiny_bert()
    torch.manual_seed(0)
    model = _no_dropout(reward.RewardModel(encoder))
    rows = [{"prompt": f"question {i}" + " more" * (i % 5), "chosen": "yes",
             "rejected": "no no" + " no" * (i % 3)} for i in range(16)]
    cfg = reward.RewardConfig(reward_model="tiny-bert", rm_epochs=1, rm_lr=3e-3,
                              rm_batch_size=4, rm_bf16=bf16, rm_chunks=chunks)
    return reward.train_reward_model(model, tok, rows, cfg, seed=0)


def test_levers_keep_the_first_losses(monkeypatch):
    """Length-sorted sub-batches change no number (fp32, to 1e-5); bf16 autocast moves the
    first four losses (0.64 → 0.40) by bf16 rounding only: less than 1e-3."""
    plain = _first_losses(monkeypatch, bf16=False, chunks=1)
    chunked = _first_losses(monkeypatch, bf16=False, chunks=2)
    fast = _first_losses(monkeypatch, bf16=True, chunks=2)
    assert len(plain) == 4
    assert chunked == pytest.approx(plain, abs=1e-5)
    assert fast == pytest.approx(plain, abs=1e-3)
    assert fast != pytest.approx(plain, abs=1e-7)  # bf16 was on
