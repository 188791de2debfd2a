"""Sequence classification with a language model: LoRA on the backbone, a pooled linear head.

The backbone is the transformer without its LM head (``model.base_model``), so no logits over
the whole vocabulary are computed. A decoder reads left to right, so its *last* real token has
seen the whole text and is used as the summary ("last" pooling); an encoder averages its tokens
("mean"). LoRA adapters (peft) are the only trainable backbone weights, plus the head. The loss
and the batch sampler are taken by name, as for the embedding heads, so the balancing methods
of paper §3.1.3 apply unchanged. Training uses bf16 autocast on CPU (about 2x, DESIGN.md §5).
Used in notebooks/02_data_balancing.ipynb.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ftkit.core.env import bf16_autocast
from ftkit.train.adapters import target_modules as checked_targets
from ftkit.train.classifier import check_labels
from ftkit.train.loop import optimiser_step
from ftkit.train.losses import make_loss
from ftkit.train.sampling import make_sampler


class PooledClassifier(nn.Module):
    """``backbone -> pool -> linear``: logits ``(B, K)`` from ``input_ids (B, T)``."""
    def __init__(self, backbone: nn.Module, hidden_size: int, n_classes: int,
                 pooling: str = "last"):
        super().__init__()
        if pooling not in POOLING:
            raise ValueError(f"pooling={pooling!r}; choose one of {list(POOLING)}")
        self.backbone, self.pooling = backbone, pooling
        self.head = nn.Linear(hidden_size, n_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(POOLING[self.pooling](hidden, attention_mask).float())


def _last_token(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    last = mask.sum(1) - 1  # right padding: the last real token of each row
    return hidden[torch.arange(len(hidden)), last]  # (B, H)


def _mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


POOLING = {"last": _last_token, "mean": _mean}


def lora_classifier(model, n_classes: int, lora_r: int = 8, lora_alpha: float = 16.0,
                    lora_dropout: float = 0.05, target_modules: str = "all-linear",
                    pooling: str | None = None, seed: int = 0) -> PooledClassifier:
    """Wrap a transformers model: LoRA on its backbone, a new head; only those train.

    Args:
        pooling: ``last`` for decoders, ``mean`` for encoders (default: ``last`` when the
            model can generate text).
    """
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    backbone = getattr(model, "base_model", model)
    pooling = pooling or ("last" if model.can_generate() else "mean")  # decoder vs encoder
    targets = checked_targets(backbone, target_modules)  # unknown names: ConfigError
    config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                        target_modules=targets)
    return PooledClassifier(get_peft_model(backbone, config), model.config.hidden_size,
                            n_classes, pooling)


def _batch(tokenizer, texts: list[str], max_length: int) -> dict:
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length,
                    return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def finetune(clf: PooledClassifier, tokenizer, texts: list[str], y: np.ndarray, *,
             steps: int = 40, batch_size: int = 16, lr: float = 5e-4, loss: str = "ce",
             sampler: str = "shuffle", class_weight=None, gamma: float = 2.0,
             max_length: int = 64, bf16: bool = True, seed: int = 0, progress=None,
             plot=None) -> list[float]:
    """Train ``clf`` for ``steps`` batches drawn by ``sampler``; returns the loss per step.

    ``plot``: an optional ftkit.train.callbacks.LivePlotCallback fed with every step's loss.
    """
    check_labels(y, clf.head.out_features, len(texts))
    torch.manual_seed(seed)
    loss_fn = make_loss(loss, class_weight, gamma)
    params = [p for p in clf.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, steps // 10)))
    order = list(make_sampler(sampler, y, steps * batch_size, seed))
    y_t, losses = torch.as_tensor(y, dtype=torch.long), []
    clf.train()
    for step in (progress or iter)(range(steps)):
        idx = order[step * batch_size:(step + 1) * batch_size]
        with bf16_autocast(bf16):
            logits = clf(**_batch(tokenizer, [texts[i] for i in idx], max_length))
        optimiser_step(loss_fn(logits, y_t[idx]), opt, sched, losses, step, plot, params)
    if plot is not None:
        plot.finish()
    return losses


@torch.no_grad()
def predict_proba(clf: PooledClassifier, tokenizer, texts: list[str], batch_size: int = 64,
                  max_length: int = 64, bf16: bool = True) -> np.ndarray:
    """Class probabilities ``(N, K)`` for ``texts``."""
    clf.eval()
    out = []
    for start in range(0, len(texts), batch_size):
        with bf16_autocast(bf16):
            logits = clf(**_batch(tokenizer, texts[start:start + batch_size], max_length))
        out.append(logits.float().softmax(-1).numpy())
    return np.concatenate(out)
