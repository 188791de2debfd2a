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
from ftkit.train.loop import optimiser_step


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
             seed: int = 0, progress=None, plot=None) -> list[float]:
    """Train ``tower`` (vision encoder + projection) for ``steps``; returns the losses.

    Args:
        pixels: ``(N, 3, H, W)``; text_emb: frozen caption embeddings ``(N, D)``, unit length.
        captions: the N caption strings (to find identical ones within a batch).
        progress: a tqdm-like wrapper for the step loop; plot: a live plot with ``add_train``.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(tower.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, steps // 10)  # linear warm-up over 10 % of the steps, then cosine decay
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, 0.5 * (
        1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, steps - warm))))) if s >= warm
        else (s + 1) / warm)
    tower.train()
    losses = []
    for step in (progress or iter)(range(steps)):
        idx = torch.randperm(len(pixels), generator=gen)[:batch_size]
        same = same_caption([captions[i] for i in idx.tolist()])
        loss = clip_loss(tower(pixels[idx]), text_emb[idx], same, tower.logit_scale)
        optimiser_step(loss, opt, sched, losses, step, plot)
    if plot is not None:
        plot.finish()
    return losses


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
