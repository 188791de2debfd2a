"""DPO: the loss against a hand-computed value, β parsing, TRL arguments for a CPU, the KL
measurement and reply masks on a tiny model."""
import math

import pytest
import torch

from ftkit.align import dpo
from ftkit.align import params as align_params
from ftkit.core.config import ConfigError, TrainConfig
from ftkit.models.tiny import tiny_llama


def test_dpo_loss_hand_computed():
    loss, chosen, rejected = dpo.dpo_loss(torch.tensor([-5.0]), torch.tensor([-9.0]),
                                          torch.tensor([-6.0]), torch.tensor([-8.0]), beta=0.1)
    # implicit rewards 0.1·(+1) and 0.1·(-1): margin 0.2, loss = log(1 + e^-0.2)
    assert chosen.item() == pytest.approx(0.1) and rejected.item() == pytest.approx(-0.1)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-0.2)))
    assert loss.item() == pytest.approx(0.5981389, abs=1e-6)


def test_dpo_loss_starts_at_log_two():
    same = torch.tensor([-3.0, -4.0])
    loss, _, _ = dpo.dpo_loss(same, same + 1, same, same + 1, beta=0.5)
    assert loss.item() == pytest.approx(math.log(2))


def test_betas_are_a_list_of_distinct_positive_numbers():
    assert align_params.DPOSettings(betas=[1.0, 0.05]).betas == [1.0, 0.05]
    for bad in ([], [0, 1], [0.1, 0.1], ["a"], "0.1,1.0"):
        with pytest.raises(ConfigError, match="betas"):
            align_params.DPOSettings(betas=bad)


def test_dpo_arguments_suit_a_cpu(tmp_path):
    args = dpo.dpo_arguments(TrainConfig(lr=1e-3, max_steps=3, batch_size=2), 0.25,
                             str(tmp_path))
    assert args.beta == 0.25 and args.learning_rate == 1e-3 and args.max_steps == 3
    assert not args.gradient_checkpointing and args.save_strategy == "no"
    assert args.use_cpu == (not torch.cuda.is_available())


def test_reply_batch_masks_only_reply_tokens(policy):
    _, tok = policy
    batch, mask = dpo.reply_batch(tok, ["hi", "longer prompt"], ["ok", "fine then"])
    for row in range(2):
        reply = batch["input_ids"][row][mask[row].bool()].tolist()
        assert reply[-1] == tok.eos_token_id
        assert tok.decode(reply[:-1]) == ["ok", "fine then"][row]


def test_token_kl_zero_at_start_positive_after_a_change(policy):
    model, tok = policy
    prompts, replies = ["hi", "what now"], ["ok", "go home"]
    assert dpo.token_kl(model, tok, prompts, replies) == pytest.approx([0.0, 0.0], abs=1e-6)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)
    kl = dpo.token_kl(model, tok, prompts, replies)
    assert all(k > 0 for k in kl)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.zero_()


def test_trainer_needs_a_peft_model(tmp_path):
    model, tok = tiny_llama()
    with pytest.raises(ConfigError, match="peft"):
        dpo.make_dpo_trainer(model, tok, [], TrainConfig(), 0.1, str(tmp_path))


def test_choose_threads_sets_torch():
    before = torch.get_num_threads()
    try:
        assert dpo.choose_threads(1) == 1 and torch.get_num_threads() == 1
        assert dpo.choose_threads(0) >= 1
    finally:
        torch.set_num_threads(before)


def test_policy_row_of_the_reference_has_no_win_rate():
    judged = [{"score": 2, "correct": True, "compliant": True, "n_words": 1}]
    row = dpo.policy_row(judged, None, [])
    assert math.isnan(row["win_rate"]) and row["kl_to_ref"] == 0.0
    assert dpo.policy_row(judged, [{"score": 1}], [0.5])["win_rate"] == 1.0
