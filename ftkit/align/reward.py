"""A reward model learned from preference pairs: the first half of RLHF (paper §6.8, §6.9.4).

The reward model reads a prompt and a reply and returns one number. It is trained with the
Bradley-Terry pairwise loss, ``-log σ(r(x, y_w) - r(x, y_l))``: the chosen reply should score
higher than the rejected one, and ``σ(r_a - r_b)`` is then the model's probability that reply
``a`` is preferred. Here it is a sentence encoder (all-MiniLM-L6-v2, 22 M parameters; fast on
a CPU) with mean pooling and one linear output, fully fine-tuned by transformers' Trainer
(``ftkit.train.trainers``, through the factory).
:func:`pairwise_eval` measures held-out accuracy and :func:`reliability` whether the
probabilities are calibrated (a reliability diagram and the expected calibration error).

Used in notebooks/09_rlhf_reward_and_ppo.ipynb.
"""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn

from ftkit.align.params import RewardConfig
from ftkit.core.config import ConfigError
from ftkit.models import load
from ftkit.train import factory
from ftkit.train.callbacks import live_plot
from ftkit.train.speed.layer import Levers
from ftkit.train.trainers import LossTrainer, loss_arguments, run_folder


class RewardModel(nn.Module):
    """Encoder → mean of the token states (padding excluded) → one linear score per text."""
    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, 1)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None,
                inputs_embeds=None) -> torch.Tensor:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids,
                              inputs_embeds=inputs_embeds).last_hidden_state  # (B, T, H)
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (states.float() * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, H)
        # the score in fp32 also under bf16 autocast: rewards are compared by their difference,
        # and bf16 keeps 8 bits of mantissa (a reward of 4 would move in steps of 1/32)
        with torch.autocast(pooled.device.type, enabled=False):
            return self.head(pooled).squeeze(-1)  # (B,)


def load_reward_model(name: str, seed: int = 0) -> tuple[RewardModel, object]:
    """A fresh :class:`RewardModel` over encoder ``name`` and its tokenizer."""
    torch.manual_seed(seed)
    encoder, tokenizer = load(name)
    model = RewardModel(encoder)
    return (model.cuda() if torch.cuda.is_available() else model), tokenizer


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def pairwise_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry loss ``mean(-log σ(r_w - r_l))`` over pairs of rewards ``(B,)``."""
    return -F.logsigmoid(chosen - rejected).mean()


def encode(tokenizer, prompts: list[str], replies: list[str], max_length: int) -> dict:
    """Prompt and reply as a sentence pair, padded: what the reward model reads."""
    return dict(tokenizer(prompts, replies, truncation=True, max_length=max_length,
                          padding=True, return_tensors="pt"))


def length_chunks(batch: dict, chunks: int) -> tuple[list[dict], torch.Tensor]:
    """``batch``'s rows sorted by length into ``chunks`` sub-batches, each cut to the columns
    its own rows use; returns them and ``order``, the row of ``batch`` each position holds.

    A padded batch computes every row at the length of its longest; a sub-batch of short rows
    computes far fewer padding positions. Each row's reward is unchanged (attention and pooling
    skip padding).
    """
    mask = batch["attention_mask"]
    order = mask.sum(1).argsort(stable=True)
    parts = []
    for rows in order.chunk(chunks):
        used = mask[rows].any(0)  # (T,) columns that hold a token of these rows
        parts.append({k: v[rows][:, used] for k, v in batch.items()})
    return parts, order


def batch_rewards(model: RewardModel, batch: dict, chunks: int = 1) -> torch.Tensor:
    """Rewards ``(B,)`` of a padded batch, in ``chunks`` length-sorted sub-batches
    (:func:`length_chunks`; 1 = the batch as it is), in the batch's row order."""
    if chunks <= 1:
        return model(**batch)
    # token vectors looked up once for the whole batch: the embedding table's gradient (dense,
    # 30,522 × 384 for MiniLM: a fresh 47 MB buffer to zero) is then built once a step, not
    # once per sub-batch
    rest = {k: v for k, v in batch.items() if k != "input_ids"}
    rest["inputs_embeds"] = model.encoder.get_input_embeddings()(batch["input_ids"])
    parts, order = length_chunks(rest, chunks)
    rewards = torch.cat([model(**part) for part in parts])
    return torch.empty_like(rewards).index_copy(0, order, rewards)


def score(model: RewardModel, tokenizer, prompts: list[str], replies: list[str],
          max_length: int = 96, batch_size: int = 32) -> torch.Tensor:
    """Rewards ``(N,)`` of replies to prompts, without gradients."""
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(prompts), batch_size):
            enc = encode(tokenizer, prompts[i:i + batch_size], replies[i:i + batch_size],
                         max_length)
            out.append(model(**{k: v.to(_device(model)) for k, v in enc.items()}))
    return torch.cat(out).float().cpu()


def train_reward_model(model: RewardModel, tokenizer, rows: list[dict], cfg: RewardConfig,
                       seed: int = 0, curves=None, output_dir: str | None = None,
                       save_steps: int = 0) -> list[float]:
    """Fit the reward model to preference rows; returns the loss of every step.

    The trainer comes from ftkit's factory (path ``reward``): each step scores the chosen and
    the rejected replies of ``rm_batch_size`` pairs (in ``rm_chunks`` length-sorted sub-batches,
    :func:`batch_rewards`) and takes the pairwise loss; AdamW at a constant ``rm_lr``, gradients
    clipped at 1, rows reshuffled every epoch; bf16 autocast when ``rm_bf16`` and the machine
    has bf16 instructions (``ftkit.core.env.use_bf16``), the pooled states and scores in fp32.
    ``curves`` (a LiveCurves over ``loss``; default a loss plot redrawn every 10 steps) plots it
    live; ``output_dir`` keeps the TensorBoard event files and checkpoints (every
    ``save_steps``); without one nothing is kept.
    """
    if len(rows) < cfg.rm_batch_size:
        raise ConfigError(f"RewardConfig.rm_batch_size = {cfg.rm_batch_size} is larger than "
                          f"the {len(rows)} training pairs")

    def collate(batch: list[dict]) -> dict:
        prompts = [r["prompt"] for r in batch] * 2
        replies = [r["chosen"] for r in batch] + [r["rejected"] for r in batch]
        return encode(tokenizer, prompts, replies, cfg.rm_max_length)

    def step_loss(model, batch: dict) -> torch.Tensor:
        rewards = batch_rewards(model, batch, cfg.rm_chunks)  # chosen first, then rejected
        half = len(rewards) // 2
        return pairwise_loss(rewards[:half], rewards[half:])

    with run_folder(output_dir) as folder:
        args = loss_arguments(folder, lr=cfg.rm_lr, batch_size=cfg.rm_batch_size,
                              epochs=cfg.rm_epochs, seed=seed, weight_decay=0.01,
                              bf16=cfg.rm_bf16, save_steps=save_steps,
                              report_to="tensorboard" if output_dir else "none")
        # drawing the loss figure takes ~30 ms, some 7 % of a step: redrawn every 10 steps
        plot = curves if curves is not None else live_plot("reward model", every=10)
        trainer = factory.build(LossTrainer, model, args, path="reward", plot=plot,
                                levers=Levers(length_sorted_chunks=cfg.rm_chunks > 1),
                                title="reward model", train_dataset=list(rows),
                                data_collator=collate, loss_fn=step_loss)
        trainer.train()
    model.eval()
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def pairwise_eval(model: RewardModel, tokenizer, rows: list[dict], max_length: int = 96,
                  seed: int = 0) -> dict:
    """Held-out pairwise accuracy and, per pair shown in a random order, ``P(first preferred)``.

    Returns ``{"accuracy", "ranked_right", "probs", "labels"}``: ``ranked_right[i]`` says
    whether pair ``i`` was ranked right; ``labels[i]`` is 1 when the first reply of pair ``i``
    is the chosen one, so the probabilities can be checked for calibration.
    """
    prompts = [r["prompt"] for r in rows]
    chosen = score(model, tokenizer, prompts, [r["chosen"] for r in rows], max_length)
    rejected = score(model, tokenizer, prompts, [r["rejected"] for r in rows], max_length)
    flip = torch.tensor([random.Random(seed + i).random() < 0.5 for i in range(len(rows))])
    first, second = torch.where(flip, rejected, chosen), torch.where(flip, chosen, rejected)
    return {"accuracy": (chosen > rejected).float().mean().item(),
            "ranked_right": (chosen > rejected).tolist(),
            "probs": torch.sigmoid(first - second).tolist(),
            "labels": (~flip).int().tolist()}


def reliability(probs: list[float], labels: list[int], bins: int = 5):
    """Reliability table (mean predicted probability vs observed frequency per bin) and ECE.

    Returns ``(table, ece)``; ECE is the count-weighted mean gap between the two columns.
    """
    import pandas as pd

    frame = pd.DataFrame({"p": probs, "y": labels})
    frame["bin"] = pd.cut(frame.p, [i / bins for i in range(bins + 1)], include_lowest=True)
    table = frame.groupby("bin", observed=True).agg(predicted=("p", "mean"),
                                                    observed=("y", "mean"), pairs=("y", "size"))
    ece = float((table.pairs * (table.predicted - table.observed).abs()).sum() / len(frame))
    table.index = table.index.astype(str)
    return table, ece


def plot_calibration(table, ece: float):
    """Reliability diagram: observed frequency against predicted probability, per bin."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.plot(table.predicted, table.observed, "o-", label="reward model")
    for _, row in table.iterrows():
        ax.annotate(f"{int(row.pairs)}", (row.predicted, row.observed), fontsize=8,
                    textcoords="offset points", xytext=(4, -10))
    ax.set(xlabel="predicted P(first reply preferred)", ylabel="observed frequency",
           title=f"reward-model calibration (ECE {ece:.3f})", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def scorer(model: RewardModel, tokenizer, max_length: int = 96):
    """``reward_fn(prompts, replies) -> (N,)`` for the PPO loop and for evaluation."""
    return lambda prompts, replies: score(model, tokenizer, prompts, replies, max_length)
