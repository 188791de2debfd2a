"""Sequence classification with a language model: LoRA on the backbone, a pooled linear head.

The backbone is the transformer without its LM head (``model.base_model``), so no logits over
the whole vocabulary are computed. A decoder reads left to right, so its *last* real token has
seen the whole text and is used as the summary ("last" pooling); an encoder averages its tokens
("mean"). LoRA adapters (peft) are the only trainable backbone weights, plus the head. The loss
and the batch sampler are taken by name, as for the embedding heads, so the balancing methods
of paper §3.1.3 apply unchanged. The trainer is transformers' (``ftkit.train.trainers``, through
the factory); bf16 autocast where the CPU has fast bf16 (DESIGN.md §5).
Used in notebooks/02_data_balancing.ipynb.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ftkit.core.env import bf16_autocast
from ftkit.train.adapters import target_modules as checked_targets
from ftkit.train.classifier import check_labels
from ftkit.train import factory
from ftkit.train.losses import make_loss
from ftkit.train.sampling import make_sampler
from ftkit.train.trainers import LossTrainer, loss_arguments, run_folder


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
             max_length: int = 64, bf16: bool = True, seed: int = 0, plot=None,
             output_dir: str | None = None, report_to: str = "tensorboard",
             save_steps: int = 0) -> list[float]:
    """Train ``clf`` for ``steps`` batches drawn by ``sampler``; returns the loss per step.

    The trainer comes from ftkit's factory (path ``classifier``): AdamW, a linear warm-up over
    a tenth of the steps then a constant rate, gradients clipped at 1. ``plot``: a live-plot
    callback (default: the factory's). ``output_dir`` holds the TensorBoard event files and
    checkpoints (every ``save_steps``); without one the run writes to a temporary folder that
    is removed afterwards, and tracks nothing.
    """
    check_labels(y, clf.head.out_features, len(texts))
    torch.manual_seed(seed)
    loss_fn = make_loss(loss, class_weight, gamma)
    labels = torch.as_tensor(y, dtype=torch.long)

    def collate(rows: list[int]) -> dict:
        return {**_batch(tokenizer, [texts[i] for i in rows], max_length),
                "labels": labels[rows]}

    def step_loss(model, batch: dict) -> torch.Tensor:
        with bf16_autocast(bf16, batch["input_ids"].device.type):
            logits = model(batch["input_ids"], batch["attention_mask"])
        return loss_fn(logits.float(), batch["labels"])

    order = make_sampler(sampler, y, steps * batch_size, seed)
    with run_folder(output_dir) as folder:
        args = loss_arguments(folder, lr=lr, batch_size=batch_size, max_steps=steps, seed=seed,
                              warmup=max(1, steps // 10), schedule="constant_with_warmup",
                              weight_decay=0.01, save_steps=save_steps,
                              report_to=report_to if output_dir else "none")
        trainer = factory.build(LossTrainer, clf, args, path="classifier", plot=plot,
                                title="LoRA classifier", train_dataset=list(range(len(texts))),
                                data_collator=collate, loss_fn=step_loss, order=order)
        trainer.train()
    clf.eval()
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


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
