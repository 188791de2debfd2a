"""Parameter sections of the alignment stage (paper §6.8-6.9): DPO, the reward model, PPO.

Light on purpose (no torch): notebook schemas, panels and the ``ftkit`` command read them.
"""
from __future__ import annotations

from dataclasses import dataclass

from ftkit.core.config import Section, param


@dataclass(frozen=True)
class DPOSettings(Section):
    """DPO's β and the β sweep (paper §6.9.2)."""
    beta: float = param(0.1, "DPO β: how strongly the policy is held to the reference.",
                        min=0.0, min_exclusive=True, max=10.0, log=True)
    betas: list[float] = param([0.05, 0.5], "β values to sweep.", min=0.0, min_exclusive=True,
                               max=10.0)
    cpu_threads: int = param(0, "torch CPU threads; 0 = one when other processes already "
                             "keep every core busy, else torch's default.", min=0, max=512)

    def check(self) -> None:
        if len(set(self.betas)) != len(self.betas):
            self.fail("betas", "name each β once")


@dataclass(frozen=True)
class RewardConfig(Section):
    """The reward model and its training (paper §6.8)."""
    reward_model: str = param("minilm-l6", "Encoder the reward model is built on (a registry "
                              "name such as minilm-l6 or tiny-bert).")
    rm_epochs: int = param(3, "Passes over the training pairs.", min=1, max=100)
    rm_lr: float = param(5e-5, "Reward-model learning rate.", min=0.0, min_exclusive=True,
                         max=1.0, log=True)
    rm_batch_size: int = param(16, "Pairs per reward-model step.", min=1, max=1024)
    rm_max_length: int = param(96, "Longest prompt + reply, in encoder tokens.", min=8,
                               max=512)


@dataclass(frozen=True)
class PPOSettings(Section):
    """The PPO loop's sizes and coefficients (paper §6.8)."""
    ppo_iterations: int = param(10, "Rollout-and-update iterations.", min=1, max=10_000)
    ppo_prompts: int = param(4, "Prompts per iteration.", min=1, max=1024)
    ppo_samples: int = param(4, "Replies sampled per prompt (the baseline is their mean).",
                             min=2, max=64)
    ppo_epochs: int = param(2, "Gradient steps on each batch of rollouts.", min=1, max=16)
    ppo_lr: float = param(3e-4, "Policy (LoRA) learning rate.", min=0.0, min_exclusive=True,
                          max=1.0, log=True)
    clip_range: float = param(0.2, "PPO clipping ε of the probability ratio.", min=0.0,
                              min_exclusive=True, max=1.0, step=0.05)
    kl_coef: float = param(0.2, "Weight of the KL penalty to the reference in the reward.",
                           min=0.0, max=10.0, step=0.01)
    temperature: float = param(1.0, "Sampling temperature of rollouts.", min=0.0,
                               min_exclusive=True, max=5.0, step=0.1)
