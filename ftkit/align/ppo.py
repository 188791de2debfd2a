"""A compact PPO for language models: sample, score, clip, repeat (paper §6.8, §6.9.4).

TRL 1.16 no longer ships a PPOTrainer, and its GRPO/RLOO trainers generate through a
machinery sized for GPUs. This module is PPO written small enough to read, for a LoRA policy
on a CPU. One iteration:

1. **Rollout** — sample ``samples`` replies to each of a few prompts from the current policy.
2. **Reward** — the reward model scores each reply; a KL penalty to the reference (the same
   network with its adapter off) is subtracted:
   ``R = r_RM - kl_coef · Σ_t (log π - log π_ref)``.
3. **Advantages** — each reply's reward minus the mean reward of its prompt's replies,
   normalised by the batch standard deviation. (The study §6.9.4 reports names advantage
   normalisation, large batches and a moving-average reference as what makes PPO work; this
   PPO has the first, small batches and a fixed reference.) There is no value network: the
   per-prompt mean is the baseline, as in RLOO/GRPO, which halves the compute of a critic-based
   PPO.
4. **Clipped surrogate** — a few gradient steps on the same rollouts with PPO's clipped
   objective, ``-min(ρ·A, clip(ρ, 1-ε, 1+ε)·A)`` per reply token, ``ρ = π_θ / π_old``.

Used in notebooks/09_rlhf_reward_and_ppo.ipynb.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from ftkit.align.dpo import judge_policy, policy_row, token_kl
from ftkit.align.params import PPOSettings
from ftkit.core.config import ConfigError
from ftkit.core.env import bf16_autocast
from ftkit.models.generation import continue_groups, left_padded
from ftkit.train.adapters import require_peft
from ftkit.train.loop import CallbackLoop
from ftkit.train.speed.layer import Levers
from ftkit.train.trainers import loss_arguments, run_folder


def clipped_surrogate(logp_new: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor,
                      mask: torch.Tensor, clip_range: float) -> tuple[torch.Tensor, float]:
    """PPO's clipped objective as a loss, averaged over reply tokens; and the clipped share.

    Args:
        logp_new, logp_old: log-probabilities of the sampled tokens ``(B, L)`` under the policy
            being trained and under the policy that sampled them.
        advantages: one advantage per reply ``(B,)``, shared by its tokens.
        mask: 1 on real reply tokens, 0 on padding ``(B, L)``.
    """
    ratio = torch.exp(logp_new - logp_old)  # (B, L)
    adv = advantages.unsqueeze(-1)  # (B, 1)
    per_token = -torch.min(ratio * adv, ratio.clamp(1 - clip_range, 1 + clip_range) * adv)
    mask = mask.to(per_token.dtype)
    loss = (per_token * mask).sum() / mask.sum().clamp(min=1)
    clipped = ((ratio - 1).abs() > clip_range).to(mask.dtype)
    return loss, float((clipped * mask).sum() / mask.sum().clamp(min=1))


def normalise_advantages(rewards: torch.Tensor, groups: int) -> torch.Tensor:
    """Reward minus its prompt's mean reward, divided by the batch standard deviation.

    ``rewards`` is ``(P · groups,)`` with each prompt's ``groups`` replies adjacent.
    """
    centred = rewards.view(-1, groups)
    centred = (centred - centred.mean(1, keepdim=True)).flatten()
    return centred / (centred.std() + 1e-6)


def penalised_rewards(scores: torch.Tensor, logp_old: torch.Tensor, logp_ref: torch.Tensor,
                      mask: torch.Tensor, kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(reward, kl)`` per reply: ``reward = score - kl_coef · kl``,
    ``kl = Σ_t (log π - log π_ref)`` over the reply tokens ``(B, L)``."""
    kl = ((logp_old - logp_ref) * mask).sum(-1)
    return scores - kl_coef * kl, kl


@torch.no_grad()
def rollout(model, tokenizer, prompts: list[str], samples: int, max_new_tokens: int,
            temperature: float = 1.0, shared_prompts: bool = True) -> dict:
    """Sample ``samples`` replies per prompt; returns token ids, masks and the reply texts.

    Prompts are left-padded, so every reply starts at the same column ``n_prompt``;
    ``reply_mask`` covers the reply up to and including its end-of-turn token. A reply has at
    least one token before that: an empty reply never occurs in the preference data, so the
    reward model's score for it means nothing and a policy would be rewarded for exploiting it.
    With ``shared_prompts`` each prompt is computed once for its ``samples`` replies
    (``models.generation.continue_groups``) instead of once per reply.
    """
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in prompts]
    enc = left_padded(tokenizer, texts, model.device)
    model.eval()
    sampling = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                    max_new_tokens=max_new_tokens, min_new_tokens=min(2, max_new_tokens),
                    pad_token_id=tokenizer.pad_token_id)
    if shared_prompts:
        reply = continue_groups(model, enc["input_ids"], enc["attention_mask"], samples,
                                **sampling)
        out = torch.cat([enc["input_ids"].repeat_interleave(samples, 0), reply], 1)
    else:
        out = model.generate(**enc, num_return_sequences=samples, **sampling)
    n_prompt = enc["input_ids"].shape[1]
    reply = out[:, n_prompt:]  # (B, L)
    ended = (reply == tokenizer.eos_token_id).int().cumsum(-1)
    reply_mask = ((ended == 0) | ((ended == 1) & (reply == tokenizer.eos_token_id))).int()
    prompt_mask = enc["attention_mask"].repeat_interleave(samples, 0)
    return {"input_ids": out, "attention_mask": torch.cat([prompt_mask, reply_mask], 1),
            "reply_mask": reply_mask, "n_prompt": n_prompt,
            "prompts": [p for p in prompts for _ in range(samples)],
            "replies": tokenizer.batch_decode(reply * reply_mask + (1 - reply_mask) *
                                              tokenizer.pad_token_id, skip_special_tokens=True)}


def token_logprobs(model, batch: dict) -> torch.Tensor:
    """Log-probability of each reply token under ``model``, ``(B, L)``.

    Positions come from the attention mask (as in generation with left padding), and the
    vocabulary projection runs only on the positions that predict reply tokens.
    """
    ids, attn, n_prompt = batch["input_ids"], batch["attention_mask"], batch["n_prompt"]
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    n_reply = ids.shape[1] - n_prompt
    logits = model(input_ids=ids, attention_mask=attn, position_ids=positions,
                   logits_to_keep=n_reply + 1).logits[:, :-1]  # (B, L, V)
    logp = F.log_softmax(logits.float(), -1)
    return torch.gather(logp, 2, ids[:, n_prompt:, None]).squeeze(-1)


def ppo_iteration(model, optimizer, tokenizer, prompts: list[str],
                  reward_fn: Callable[[list[str], list[str]], torch.Tensor], cfg: PPOSettings,
                  max_new_tokens: int, bf16: bool = True, shared_prompts: bool = True) -> dict:
    """One rollout → reward → advantage → clipped-update round; returns its statistics.

    The policy that sampled the rollouts is the one the first update starts from, so that
    update's forward pass also gives ``log π_old`` (detached): one forward pass fewer per
    iteration than computing it apart, with the same numbers (the model stays in eval mode, no
    dropout, from the rollout on).
    """
    batch = rollout(model, tokenizer, prompts, cfg.ppo_samples, max_new_tokens, cfg.temperature,
                    shared_prompts)
    mask = batch["reply_mask"].float()
    with bf16_autocast(bf16, model.device.type):
        logp_first = token_logprobs(model, batch)
        with torch.no_grad(), model.disable_adapter():
            logp_ref = token_logprobs(model, batch)
    logp_old = logp_first.detach()
    scores = reward_fn(batch["prompts"], batch["replies"]).float().to(logp_old.device)
    rewards, kl = penalised_rewards(scores, logp_old, logp_ref, mask, cfg.kl_coef)
    advantages = normalise_advantages(rewards, cfg.ppo_samples)
    losses, clipped = [], []
    for epoch in range(cfg.ppo_epochs):
        if epoch:
            with bf16_autocast(bf16, model.device.type):
                logp_new = token_logprobs(model, batch)
        else:
            logp_new = logp_first
        loss, frac = clipped_surrogate(logp_new, logp_old, advantages, mask, cfg.clip_range)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        losses.append(loss.item())
        clipped.append(frac)
    return {"reward": scores.mean().item(), "kl": kl.mean().item(),
            "loss": statistics.mean(losses), "clip_fraction": statistics.mean(clipped),
            "reply_tokens": mask.sum(-1).mean().item()}


PPO_CURVES = {"reward": "reward-model score of rollouts", "kl": "KL to reference (nats/reply)",
              "clip_fraction": "share of tokens clipped"}


def train_ppo(model, tokenizer, prompts: list[str], reward_fn, cfg: PPOSettings,
              max_new_tokens: int = 16, seed: int = 0, bf16: bool = True, curves=None,
              output_dir: str | None = None, save_steps: int = 0,
              resume: bool = True, shared_prompts: bool = True) -> list[dict]:
    """Run ``cfg.ppo_iterations`` PPO iterations over ``prompts`` (cycled in a seeded order).

    ``model`` must be a peft (LoRA) model: its reference is the adapter switched off. The loop
    runs under ``ftkit.train.loop.CallbackLoop``: ``curves`` (a LiveCurves over
    :data:`PPO_CURVES`) plots each iteration, ``output_dir`` keeps the TensorBoard event files
    and a checkpoint every ``save_steps`` iterations, from which a rerun resumes (``resume``).
    Without ``output_dir`` nothing is kept. ``shared_prompts`` (a speed lever, logged with the
    others) computes each prompt once for its replies in the rollouts. Returns one statistics
    row per iteration.
    """
    require_peft(model, "train_ppo")
    if len(prompts) < cfg.ppo_prompts:
        raise ConfigError(f"PPOSettings.ppo_prompts = {cfg.ppo_prompts} is more than the "
                          f"{len(prompts)} training prompts")
    if torch.cuda.is_available():
        model.cuda()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=cfg.ppo_lr)
    order = torch.randperm(len(prompts), generator=gen).tolist()
    with run_folder(output_dir) as folder:
        args = loss_arguments(folder, lr=cfg.ppo_lr, batch_size=cfg.ppo_prompts,
                              max_steps=cfg.ppo_iterations, seed=seed, save_steps=save_steps,
                              bf16=bf16, report_to="tensorboard" if output_dir else "none")
        loop = CallbackLoop(model, optimizer, args, path="ppo", plot=curves, title="PPO",
                            levers=Levers(shared_prompts=shared_prompts))
        t0 = time.perf_counter()
        for it in range(loop.begin(cfg.ppo_iterations, resume and bool(output_dir)),
                        cfg.ppo_iterations):
            start = (it * cfg.ppo_prompts) % len(order)
            picked = [prompts[order[(start + j) % len(order)]] for j in range(cfg.ppo_prompts)]
            stats = ppo_iteration(model, optimizer, tokenizer, picked, reward_fn, cfg,
                                  max_new_tokens, bf16, shared_prompts)
            loop.step({**stats, "seconds": time.perf_counter() - t0})
        loop.end()
    model.eval()
    return [{"iteration": h["step"], **{k: v for k, v in h.items()
                                         if k not in ("step", "learning_rate")}}
            for h in loop.state.log_history]


def evaluate_policy(model, tokenizer, rows: list[dict], reward_fn, ref_judged=None,
                    max_new_tokens: int = 16, batch_size: int = 16, progress=None):
    """Greedy replies to held-out rows, judged; win rate vs ``ref_judged``, KL, mean reward.

    Returns ``(replies, judged, row)``. Without ``ref_judged`` the policy is the reference
    itself (win rate NaN: nothing to compare with); a model without an adapter has KL 0.
    """

    replies, judged = judge_policy(model, tokenizer, rows, max_new_tokens, batch_size, progress)
    prompts = [r["prompt"] for r in rows]
    kl = token_kl(model, tokenizer, prompts, replies, batch_size) \
        if hasattr(model, "disable_adapter") else []
    row = policy_row(judged, ref_judged, kl)
    row["rm_reward"] = float(reward_fn(prompts, replies).mean())
    return replies, judged, row
