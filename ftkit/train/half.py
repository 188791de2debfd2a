"""Half fine-tuning (paper §6.4): in each round, train half of every block and freeze the rest.

Each repeated transformer block is split into three parts — attention, MLP and norms — and in
each part half of the weight tensors train while the other half stays frozen (with an odd
count, blocks alternate between rounding up and down, so the model as a whole trains half).
A new round draws another half. Parameters outside the blocks (embeddings, the final norm, the
output head) stay frozen: the frozen half keeps its pretrained values, which is what limits
forgetting.

``prepare(model)`` makes every block parameter trainable, so the optimiser the Trainer builds
holds them all; ``HalfFineTuning`` (a Trainer callback) then freezes the other half at the start
and re-draws every ``round_steps`` optimiser steps. A frozen tensor gets no gradient, and
torch's AdamW skips a parameter whose gradient is None, so it neither moves nor decays.
Used in notebooks/05_full_vs_peft.ipynb through ftkit.train.adapters (method ``half``).
"""
from __future__ import annotations

import random

from torch import nn
from transformers import TrainerCallback

from ftkit.core.config import ConfigError

# checked in this order: "post_attention_layernorm" is a norm, not attention
PARTS = {"norm": ("norm", "ln_"), "attention": ("attn", "attention"),
         "mlp": ("mlp", "feed_forward", "ffn")}


def _blocks(model: nn.Module) -> nn.ModuleList:
    """The ModuleList of repeated transformer blocks (the longest one in the model)."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 1]
    if not lists:
        raise ConfigError(f"{type(model).__name__} has no list of repeated blocks; half "
                          "fine-tuning needs a transformer with layers")
    return max(lists, key=len)


def _part_of(name: str) -> str:
    lowered = name.lower()
    for part, keys in PARTS.items():
        if any(k in lowered for k in keys):
            return part
    raise ConfigError(f"block parameter {name!r} is in none of {list(PARTS)}; half "
                      "fine-tuning does not know how to split this architecture")


def block_groups(model: nn.Module) -> list[dict[str, list[nn.Parameter]]]:
    """Per block, its weight tensors grouped as attention / mlp / norm."""
    groups = []
    for block in _blocks(model):
        parts: dict[str, list[nn.Parameter]] = {p: [] for p in PARTS}
        for name, param in block.named_parameters():
            parts[_part_of(name)].append(param)
        groups.append(parts)
    return groups


def choose_half(groups: list[dict[str, list[nn.Parameter]]],
                rng: random.Random) -> list[nn.Parameter]:
    """Half of each part of each block, drawn at random (odd counts alternate up/down)."""
    chosen: list[nn.Parameter] = []
    odd_seen = {part: 0 for part in PARTS}  # per part, so each part alternates across blocks
    for parts in groups:
        for part, params in parts.items():
            k = len(params) // 2
            if len(params) % 2:
                k += odd_seen[part] % 2 == 0
                odd_seen[part] += 1
            chosen += rng.sample(params, k)
    return chosen


def prepare(model: nn.Module) -> nn.Module:
    """Every block parameter trainable (so the optimiser holds them), everything else frozen."""
    for p in model.parameters():
        p.requires_grad_(False)
    for parts in block_groups(model):
        for params in parts.values():
            for p in params:
                p.requires_grad_(True)
    return model


class HalfFineTuning(TrainerCallback):
    """Freeze half of every block at the start of each round of ``round_steps`` steps.

    ``round_steps=0`` means one round for the whole run (the setting of the HFT paper for a
    single fine-tuning stage). ``history`` keeps the share of parameters trained per round.
    """

    def __init__(self, model: nn.Module, round_steps: int = 0, seed: int = 0) -> None:
        if round_steps < 0:
            raise ConfigError(f"round_steps = {round_steps}: use 0 (one round) or a positive "
                              "number of optimiser steps")
        self.model, self.round_steps = model, round_steps
        self.rng = random.Random(seed)
        self.groups = block_groups(model)
        self.history: list[dict] = []

    def new_round(self, step: int = 0) -> list[nn.Parameter]:
        """Freeze all block parameters, then unfreeze a freshly drawn half."""
        for parts in self.groups:
            for params in parts.values():
                for p in params:
                    p.requires_grad_(False)
                    p.grad = None
        chosen = choose_half(self.groups, self.rng)
        for p in chosen:
            p.requires_grad_(True)
        total = sum(p.numel() for p in self.model.parameters())
        self.history.append({"step": step, "trainable": sum(p.numel() for p in chosen),
                             "share": sum(p.numel() for p in chosen) / total})
        return chosen

    def on_train_begin(self, args, state, control, **kwargs):
        self.new_round(state.global_step)

    def on_step_begin(self, args, state, control, **kwargs):
        if self.round_steps and state.global_step and state.global_step % self.round_steps == 0 \
                and self.history[-1]["step"] != state.global_step:
            self.new_round(state.global_step)
