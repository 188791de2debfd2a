"""Parameter sections of the alignment stage (paper §6.8-6.9): DPO and its family, the reward
model, PPO, GRPO.

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
    nll_weight: float = param(0.0, "Weight of an NLL (SFT) term on the chosen reply added to the "
                              "DPO loss (0 = plain DPO, as §6.9 writes it). Plain DPO can make "
                              "the chosen reply less likely too, as long as the rejected one "
                              "falls faster; the term holds the chosen reply up.",
                              min=0.0, max=100.0, step=0.1)
    cpu_threads: int = param(0, "torch CPU threads; 0 = one when other processes already "
                             "keep every core busy, else torch's default.", min=0, max=512)

    def check(self) -> None:
        if len(set(self.betas)) != len(self.betas):
            self.fail("betas", "name each β once")


# The preference methods of ftkit.align.family.METHODS (a test keeps the two equal).
METHOD_NAMES = ("dpo", "ipo", "simpo", "orpo", "kto")


@dataclass(frozen=True)
class FamilySettings(Section):
    """The preference methods trained beside DPO, and their coefficients (notebook 08)."""
    methods: list[str] = param(["ipo", "simpo", "orpo", "kto"], "Methods trained beside DPO "
                               "on the same pairs and budget (ftkit.align.family.METHODS).")
    simpo_beta: float = param(2.0, "SimPO's β: the scale of the length-averaged "
                              "log-probabilities.", min=0.0, min_exclusive=True, max=100.0,
                              log=True)
    simpo_gamma: float = param(0.5, "SimPO's target margin γ.", min=0.0, max=100.0, step=0.1)
    orpo_lambda: float = param(0.1, "ORPO's weight λ of the odds-ratio term.", min=0.0,
                               min_exclusive=True, max=100.0, log=True)

    def check(self) -> None:
        unknown = [m for m in self.methods if m not in METHOD_NAMES]
        if unknown:
            self.fail("methods", f"{unknown} unknown; choose from {list(METHOD_NAMES)}")
        if len(set(self.methods)) != len(self.methods):
            self.fail("methods", "name each method once")
        if "dpo" in self.methods:
            self.fail("methods", "DPO is always trained (its row comes from the β sweep); "
                      "list the others")


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
    rm_bf16: bool = param(True, "bf16 autocast where the machine has bf16 matmul "
                          "instructions (else fp32); the pooled states and the scores stay fp32.")
    rm_chunks: int = param(2, "Sub-batches of similar length each step's texts are split into, "
                           "so that short ones are not padded to the longest (1 = one batch).",
                           min=1, max=64)


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


# The built-in rewards of ftkit.align.grpo.REWARDS (a test keeps the two equal).
REWARD_NAMES = ("valid_json", "exact_fields", "stops_after_record", "loose_fields")


@dataclass(frozen=True)
class GRPOSettings(Section):
    """GRPO with checkable rewards (beyond the paper; notebook 18)."""
    tasks_dir: str = param("../data/extraction_tasks", "Folder with train.jsonl and test.jsonl "
                           "(data/make_extraction_tasks.py).")
    n_train: int = param(0, "Training prompts to draw from (0 = all).", min=0)
    n_eval: int = param(32, "Held-out prompts scored before and after.", min=1, max=10_000)
    cold_start: int = param(8, "Labelled examples of the supervised cold start before GRPO "
                            "(0 = start from the base model).", min=0, max=100_000)
    cold_lr: float = param(2e-3, "Learning rate of the cold start and of the SFT baseline.",
                           min=0.0, min_exclusive=True, max=1.0, log=True)
    cold_epochs: float = param(2.0, "Passes over the cold start's (and the SFT baseline's) "
                               "examples.", min=0.1, max=100.0, step=0.5)
    grpo_steps: int = param(16, "Optimiser steps; each samples a fresh group per prompt.",
                            min=1, max=100_000)
    prompts_per_step: int = param(2, "Prompts per step.", min=1, max=1024)
    group_size: int = param(4, "Completions sampled per prompt (the group its advantage is "
                            "measured against; at least 2).", min=1, max=64)
    grpo_lr: float = param(5e-4, "Policy (LoRA) learning rate.", min=0.0, min_exclusive=True,
                           max=1.0, log=True)
    kl_beta: float = param(0.04, "Weight of the KL penalty to the base model (0 = none, TRL's "
                           "default).", min=0.0, max=10.0, step=0.01)
    clip_eps: float = param(0.2, "Clipping ε of the probability ratio.", min=0.0,
                            min_exclusive=True, max=1.0, step=0.05)
    temperature: float = param(1.0, "Sampling temperature of rollouts and of pass@k samples.",
                               min=0.0, min_exclusive=True, max=5.0, step=0.1)
    max_completion: int = param(32, "Longest completion, in tokens.", min=4, max=4096)
    rewards: list[str] = param(["valid_json", "exact_fields", "stops_after_record"],
                               "Built-in rewards summed into the reward "
                               "(ftkit.align.grpo.REWARDS).")
    samples: int = param(4, "Answers per held-out prompt: one greedy, the rest sampled.",
                         min=1, max=256)
    pass_k: list[int] = param([4], "k values of pass@k (each at most samples).", min=1)
    compare_sft: bool = param(True, "Train SFT on as many labelled examples as the cold start "
                              "and GRPO saw together, for comparison.")
    kl_off_run: bool = param(True, "Train once more with the KL term off (β = 0).")
    hack_steps: int = param(10, "Steps of the run on the loophole reward (0 = skip it).",
                            min=0, max=100_000)

    def check(self) -> None:
        if self.group_size < 2:
            self.fail("group_size", "must be at least 2: a completion's advantage is its "
                      "reward minus its group's mean, always 0 in a group of 1")
        if any(k > self.samples for k in self.pass_k):
            self.fail("pass_k", f"each k must be at most samples = {self.samples}")
        if len(set(self.rewards)) != len(self.rewards) or not self.rewards:
            self.fail("rewards", "name each reward once, at least one")
        unknown = [r for r in self.rewards if r not in REWARD_NAMES]
        if unknown:
            self.fail("rewards", f"{unknown} unknown; choose from {list(REWARD_NAMES)}")
