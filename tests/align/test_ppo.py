"""The compact PPO: clipped objective, advantages and KL penalty against hand-computed values;
log-probabilities and rollouts on a tiny model."""
import math

import pytest
import torch

from ftkit.align import ppo
from ftkit.core.config import ConfigError
from ftkit.models.tiny import tiny_llama


def test_clipped_surrogate_hand_computed():
    logp_old = torch.zeros(2, 2)
    logp_new = torch.log(torch.tensor([[1.5, 0.5], [1.1, 0.9]]))
    adv, mask = torch.tensor([1.0, -1.0]), torch.tensor([[1, 1], [1, 0]])
    loss, frac = ppo.clipped_surrogate(logp_new, logp_old, adv, mask, clip_range=0.2)
    # A=+1: ratio 1.5 clipped to 1.2; ratio 0.5 kept (min picks it); A=-1: ratio 1.1 kept.
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 1.1) / 3)
    assert frac == pytest.approx(2 / 3)


def test_clipped_surrogate_gradient_is_zero_where_clipped():
    logp_new = torch.log(torch.tensor([[1.5]])).requires_grad_()
    loss, _ = ppo.clipped_surrogate(logp_new, torch.zeros(1, 1), torch.tensor([1.0]),
                                    torch.ones(1, 1), 0.2)
    loss.backward()
    assert logp_new.grad.abs().item() == 0.0


def test_advantages_centred_per_prompt_and_normalised():
    adv = ppo.normalise_advantages(torch.tensor([1.0, 3.0, 2.0, 2.0]), groups=2)
    s = math.sqrt(2 / 3)  # std (n-1) of [-1, 1, 0, 0]
    assert adv.tolist() == pytest.approx([-1 / s, 1 / s, 0.0, 0.0], rel=1e-5)


def test_penalised_rewards():
    logp_old = torch.tensor([[0.5, 0.5], [0.0, 9.0]])
    logp_ref = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    mask = torch.tensor([[1, 1], [1, 0]])  # the 9.0 is padding: ignored
    rewards, kl = ppo.penalised_rewards(torch.tensor([1.0, 2.0]), logp_old, logp_ref, mask, 0.5)
    assert kl.tolist() == [1.0, -1.0] and rewards.tolist() == [0.5, 2.5]


def test_rollout_masks_and_logprobs_match_unpadded_forward(policy):
    model, tok = policy
    torch.manual_seed(0)
    batch = ppo.rollout(model, tok, ["hi", "a much longer prompt here"], 2, 6)
    assert batch["input_ids"].shape[0] == 4 and len(batch["replies"]) == 4
    assert batch["reply_mask"].shape == (4, batch["input_ids"].shape[1] - batch["n_prompt"])
    with torch.no_grad():
        logp = ppo.token_logprobs(model, batch)
        # row 0 has a left-padded prompt: recompute it without padding and compare
        keep = batch["attention_mask"][0].bool()
        ids = batch["input_ids"][0][keep][None]
        full = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        n_reply = int(batch["reply_mask"][0].sum())
        start = ids.shape[1] - n_reply
        expect = full[start - 1:start - 1 + n_reply].gather(1, ids[0, start:, None]).squeeze(-1)
    assert torch.allclose(logp[0, :n_reply], expect, atol=1e-4)


def test_one_iteration_updates_the_adapter_and_reports(policy):
    model, tok = policy
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    cfg = ppo.PPOSettings(ppo_iterations=1, ppo_prompts=2, ppo_samples=2, ppo_epochs=2)
    reward = lambda prompts, replies: torch.tensor([float(len(r)) for r in replies])  # noqa: E731
    history = ppo.train_ppo(model, tok, ["hi", "yo", "hey"], reward, cfg, max_new_tokens=4)
    assert len(history) == 1 and {"reward", "kl", "loss", "clip_fraction"} <= set(history[0])
    # at the first epoch the policy is the reference: KL exactly zero
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-5)
    after = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert before and any(not torch.equal(before[n], p) for n, p in after.items())


def test_refuses_a_model_without_adapter_and_too_few_prompts(policy):
    model, tok = tiny_llama()
    with pytest.raises(ConfigError, match="peft"):
        ppo.train_ppo(model, tok, ["a"], None, ppo.PPOSettings())
    with pytest.raises(ConfigError, match="ppo_prompts"):
        ppo.train_ppo(policy[0], tok, ["a"], None, ppo.PPOSettings(ppo_prompts=4))


def test_settings_validate():
    with pytest.raises(ConfigError, match="clip_range"):
        ppo.PPOSettings(clip_range=0.0)


def fresh_policy():
    from ftkit.core.config import AdapterConfig
    from ftkit.train.adapters import apply_method

    torch.manual_seed(0)
    model, tok = tiny_llama()
    return apply_method(model, AdapterConfig(lora_r=2, lora_dropout=0.0)), tok


def test_a_killed_run_resumes_from_its_checkpoint_with_the_same_numbers(tmp_path):
    """Two iterations straight through, against one iteration, a stop, and a resume."""
    reward = lambda prompts, replies: torch.tensor([float(len(r)) for r in replies])  # noqa: E731
    cfg = ppo.PPOSettings(ppo_iterations=2, ppo_prompts=2, ppo_samples=2, ppo_epochs=1)
    prompts = ["hi", "yo", "hey"]
    straight = ppo.train_ppo(*fresh_policy(), prompts, reward, cfg, max_new_tokens=4,
                             output_dir=str(tmp_path / "straight"))
    first = ppo.train_ppo(*fresh_policy(), prompts, reward,
                          ppo.PPOSettings(**{**cfg.__dict__, "ppo_iterations": 1}),
                          max_new_tokens=4, output_dir=str(tmp_path / "cut"), save_steps=1)
    assert (tmp_path / "cut" / "checkpoint-1" / "ftkit-complete.json").is_file()
    resumed = ppo.train_ppo(*fresh_policy(), prompts, reward, cfg, max_new_tokens=4,
                            output_dir=str(tmp_path / "cut"), save_steps=1)
    keys = ("reward", "kl", "loss")
    assert [[h[k] for k in keys] for h in first] == [[straight[0][k] for k in keys]]
    assert [h["iteration"] for h in resumed] == [1, 2]
    assert resumed[0]["seconds"] == first[0]["seconds"], "iteration 1 came from the checkpoint"
    assert [h[k] for h in resumed for k in keys] == pytest.approx(
        [h[k] for h in straight for k in keys], abs=1e-6)
    assert straight[1]["kl"] != 0.0, "the second iteration samples from an updated policy"
    assert list((tmp_path / "straight").rglob("events.out.tfevents.*")), "TensorBoard logs"


def test_shared_prompt_rollouts_match_one_prompt_per_reply():
    """Each prompt computed once for its replies samples what generate's own copies sample
    (near-greedy temperature: the draws cannot depend on rounding)."""
    model, tok = fresh_policy()
    prompts = ["hi", "a much longer prompt here"]
    plain = ppo.rollout(model, tok, prompts, 3, 6, temperature=1e-3, shared_prompts=False)
    shared = ppo.rollout(model, tok, prompts, 3, 6, temperature=1e-3, shared_prompts=True)
    for key in ("input_ids", "attention_mask", "reply_mask"):
        assert torch.equal(plain[key], shared[key]), key
    assert shared["replies"] == plain["replies"] and shared["prompts"] == plain["prompts"]


def test_old_logprobs_from_the_first_update_give_the_same_update(monkeypatch):
    """An iteration takes log π_old from its first update's forward pass; the adapter it
    trains equals the one of a hand-written step that computes log π_old apart."""
    import copy

    model, tok = fresh_policy()
    batch = ppo.rollout(model, tok, ["hi", "yo"], 2, 4)
    monkeypatch.setattr(ppo, "rollout", lambda *args, **kwargs: batch)
    reward = lambda prompts, replies: torch.arange(len(replies), dtype=torch.float)  # noqa: E731
    cfg = ppo.PPOSettings(ppo_prompts=2, ppo_samples=2, ppo_epochs=1, kl_coef=0.5)
    twin = copy.deepcopy(model)
    trained = lambda m: [p for p in m.parameters() if p.requires_grad]  # noqa: E731
    lr = cfg.ppo_lr
    ppo.ppo_iteration(model, torch.optim.AdamW(trained(model), lr=lr), tok, ["hi", "yo"],
                      reward, cfg, 4, bf16=False)

    with torch.no_grad():
        logp_old = ppo.token_logprobs(twin, batch)
        with twin.disable_adapter():
            logp_ref = ppo.token_logprobs(twin, batch)
    mask = batch["reply_mask"].float()
    rewards, _ = ppo.penalised_rewards(reward(None, batch["replies"]), logp_old, logp_ref, mask,
                                       cfg.kl_coef)
    loss, _ = ppo.clipped_surrogate(ppo.token_logprobs(twin, batch), logp_old,
                                    ppo.normalise_advantages(rewards, 2), mask, cfg.clip_range)
    optimizer = torch.optim.AdamW(trained(twin), lr=lr)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trained(twin), 1.0)
    optimizer.step()
    for mine, theirs in zip(trained(model), trained(twin)):
        assert torch.allclose(mine, theirs, atol=1e-7)
    assert any(not torch.equal(p, q) for p, q in zip(trained(model), trained(fresh_policy()[0])))
