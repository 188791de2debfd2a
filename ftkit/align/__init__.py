"""Alignment (paper §6.8-6.9): preference optimisation, reward models and RL.

- :mod:`~ftkit.align.dpo` — DPO through TRL, judged generations, win rate and KL;
- :mod:`~ftkit.align.reward` — a reward model trained on preference pairs;
- :mod:`~ftkit.align.ppo` — a compact PPO loop against the reward model.

Used in notebooks/08_dpo_alignment.ipynb and notebooks/09_rlhf_reward_and_ppo.ipynb.
"""
