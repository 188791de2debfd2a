"""CLIP-style pretraining of the small vision encoder against a frozen text encoder (§11.1.2).

Images and captions are mapped into one space: the caption side is the offline MiniLM sentence
encoder, frozen (its embeddings computed once); the image side is the vision transformer, its
patch features mean-pooled and linearly projected to the text width. Training pulls each image
towards its own caption and away from the other captions in the batch (symmetric InfoNCE with
a learned temperature). Identical captions in one batch are all counted as matches, so two
scenes that read the same are not pushed apart.
Used in notebooks/17_multimodal_vqa.ipynb.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ftkit.models.embeddings import encode
from ftkit.train import factory
from ftkit.train.trainers import LossTrainer, loss_arguments, run_folder


class ImageTower(nn.Module):
    """Vision encoder + mean pooling + linear projection to the text embedding width."""
    def __init__(self, vision, text_dim: int):
        super().__init__()
        self.vision = vision
        self.proj = nn.Linear(vision.config.hidden_size, text_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial 1/τ

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Unit-length image embeddings ``(B, text_dim)`` from pixels ``(B, 3, H, W)``."""
        patches = self.vision(pixel_values=pixel_values).last_hidden_state  # (B, P, C)
        return F.normalize(self.proj(patches.mean(1)), dim=-1)


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, same: torch.Tensor,
              logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a batch with possibly repeated captions.

    Args:
        image_emb, text_emb: unit vectors ``(B, D)``; row i of each belongs to example i.
        same: ``(B, B)`` bool, True where captions i and j are identical (the diagonal at least).
        logit_scale: log of the inverse temperature.
    """
    logits = logit_scale.exp().clamp(max=100) * image_emb @ text_emb.T  # (B, B)
    target = same.float() / same.float().sum(1, keepdim=True)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def same_caption(captions: list[str]) -> torch.Tensor:
    """``(B, B)`` bool: which captions are identical."""
    ids = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    idx = torch.tensor([ids[c] for c in captions])
    return idx[:, None] == idx[None, :]


def caption_embeddings(text_model, tokenizer, captions: list[str]) -> torch.Tensor:
    """Frozen sentence embeddings ``(N, D)`` of ``captions``, each distinct caption encoded once
    (scenes repeat captions: 1,200 training scenes have about 420 distinct ones)."""

    unique = list(dict.fromkeys(captions))
    index = {c: i for i, c in enumerate(unique)}
    return encode(text_model, tokenizer, unique)[[index[c] for c in captions]]


def pixel_values(image_processor, images: list) -> torch.Tensor:
    """``(N, 3, H, W)`` model inputs for PIL images."""
    return image_processor(images=images, return_tensors="pt")["pixel_values"]


def pretrain(tower: ImageTower, pixels: torch.Tensor, text_emb: torch.Tensor,
             captions: list[str], steps: int, batch_size: int = 64, lr: float = 1e-3,
             seed: int = 0, plot=None, output_dir: str | None = None) -> list[float]:
    """Train ``tower`` (vision encoder + projection) for ``steps``; returns the losses.

    The trainer comes from ftkit's factory (path ``contrastive``): each step takes
    ``batch_size`` distinct images drawn afresh, AdamW with weight decay 0.01, a linear warm-up
    over a tenth of the steps, then cosine decay, no clipping.

    Args:
        pixels: ``(N, 3, H, W)``; text_emb: frozen caption embeddings ``(N, D)``, unit length.
        captions: the N caption strings (to find identical ones within a batch).
        plot: a live-plot callback (default: the factory's); output_dir: where the TensorBoard
            event files go (without one, nothing is kept).
    """
    gen = torch.Generator().manual_seed(seed)
    batch_size = min(batch_size, len(pixels))
    order = [i for _ in range(steps)
             for i in torch.randperm(len(pixels), generator=gen)[:batch_size].tolist()]

    def collate(rows: list[int]) -> dict:
        return {"pixel_values": pixels[rows], "text": text_emb[rows],
                "same": same_caption([captions[i] for i in rows])}

    def step_loss(model, batch: dict) -> torch.Tensor:
        return clip_loss(model(batch["pixel_values"]), batch["text"], batch["same"],
                         model.logit_scale)

    with run_folder(output_dir) as folder:
        args = loss_arguments(folder, lr=lr, batch_size=batch_size, max_steps=steps, seed=seed,
                              warmup=max(1, steps // 10), schedule="cosine", weight_decay=0.01,
                              max_grad_norm=0.0, log_every=1,
                              report_to="tensorboard" if output_dir else "none")
        trainer = factory.build(LossTrainer, tower, args, path="contrastive", plot=plot,
                                title="contrastive pretraining",
                                train_dataset=list(range(len(pixels))), data_collator=collate,
                                loss_fn=step_loss, order=order)
        trainer.train()
    tower.eval()
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


@torch.no_grad()
def retrieval_accuracy(tower: ImageTower, pixels: torch.Tensor, text_emb: torch.Tensor,
                       captions: list[str]) -> dict:
    """Zero-shot image→caption retrieval among the distinct captions of a held-out set.

    Each image's nearest caption (cosine) counts as right when its text equals the image's
    own caption. Returns top-1 accuracy, chance (one over the number of distinct captions,
    i.e. guessing) and how many candidates there were.
    """
    tower.eval()
    unique = list(dict.fromkeys(captions))
    first = {c: captions.index(c) for c in unique}
    candidates = text_emb[[first[c] for c in unique]]  # (U, D)
    best = (tower(pixels) @ candidates.T).argmax(1)  # (N,)
    hits = sum(unique[j] == c for j, c in zip(best.tolist(), captions))
    return {"top1": hits / len(captions), "chance": 1 / len(unique), "candidates": len(unique)}
