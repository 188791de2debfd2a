"""Alignment (paper §6.8-6.9): preference optimisation, reward models and RL.

- :mod:`~ftkit.align.dpo` — the DPO loss written out, judged generations, win rate and KL;
- :mod:`~ftkit.align.family` — DPO, IPO, SimPO, ORPO and KTO through TRL, one function each;
- :mod:`~ftkit.align.reward` — a reward model trained on preference pairs;
- :mod:`~ftkit.align.ppo` — a compact PPO loop against the reward model;
- :mod:`~ftkit.align.verifiable` — a task whose answers a program checks, and its rewards;
- :mod:`~ftkit.align.grpo` — GRPO on those rewards (TRL's GRPOTrainer), pass@k.

Used in notebooks/08_dpo_alignment.ipynb, notebooks/09_rlhf_reward_and_ppo.ipynb and
notebooks/18_grpo_verifiable_rewards.ipynb.
"""
