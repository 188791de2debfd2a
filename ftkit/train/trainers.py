"""The library trainer for models whose loss is not a language model's own.

A reward model (pairwise loss), a classifier on a LoRA backbone (a loss chosen by name, rows
drawn by a balancing sampler) and a contrastive image encoder (InfoNCE) are plain ``nn.Module``
objects with a loss of their own. :class:`LossTrainer` is transformers' ``Trainer`` with that
loss and, optionally, a fixed order of training rows, so these paths get the same optimiser,
schedule, clipping, seeding, checkpoints/resume, live plot and run tracking as the language-model
paths, through :func:`ftkit.train.factory.build`. :func:`loss_arguments` makes their
``TrainingArguments``: no evaluation loop, no column filtering, one log line per ``log_every``
steps.

Used by ftkit.align.reward, ftkit.train.lora_classifier and ftkit.vqa.contrastive.
"""
from __future__ import annotations

import contextlib
import tempfile
from typing import Any, Callable, Iterable

import torch
from transformers import Trainer

from ftkit.core.config import TrainConfig
from ftkit.train.sft import training_arguments


class FixedOrder(torch.utils.data.Sampler):
    """Row indices in a given order: what a balancing sampler (``ftkit.train.sampling``) drew."""

    def __init__(self, order: Iterable[int]):
        self.order = [int(i) for i in order]

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


class LossTrainer(Trainer):
    """``Trainer`` whose loss is ``loss_fn(model, batch)``; rows in ``order`` when given.

    Args:
        loss_fn: ``(model, batch) -> scalar loss``; ``batch`` is what the collator returned.
        order: indices into the training set, one per row the run will draw (``max_steps ·
            batch_size`` of them); default: the Trainer's own seeded shuffle.
    """

    def __init__(self, *args, loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
                 order: Iterable[int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_fn, self.order = loss_fn, None if order is None else FixedOrder(order)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = self.loss_fn(model, inputs)
        return (loss, None) if return_outputs else loss

    def _get_train_sampler(self, train_dataset=None):
        return self.order if self.order is not None else super()._get_train_sampler(train_dataset)


def loss_arguments(output_dir: str, *, lr: float, batch_size: int, max_steps: int = 0,
                   epochs: float = 1.0, seed: int = 0, warmup: float = 0.0,
                   schedule: str = "constant", weight_decay: float = 0.0,
                   max_grad_norm: float = 1.0, bf16: bool = False, log_every: int = 1,
                   report_to: str = "tensorboard", save_steps: int = 0, **overrides: Any):
    """``TrainingArguments`` for a :class:`LossTrainer` run.

    ``warmup`` below 1 is a share of the steps, otherwise a number of steps; ``schedule`` is a
    transformers scheduler name (``constant_with_warmup``, ``cosine`` …); ``max_grad_norm`` 0
    turns clipping off; ``save_steps`` > 0 writes a checkpoint (with its integrity marker)
    every that many steps.
    """
    train = TrainConfig(lr=lr, num_epochs=epochs, max_steps=max_steps, batch_size=batch_size,
                        weight_decay=weight_decay, bf16=bf16, report_to=report_to)
    extra = {"lr_scheduler_type": schedule, "warmup_steps": warmup,
             "max_grad_norm": max_grad_norm, "eval_strategy": "no", "logging_steps": log_every,
             "remove_unused_columns": False, "save_strategy": "steps" if save_steps else "no"}
    if save_steps:
        extra["save_steps"] = save_steps
    return training_arguments(train, output_dir, seed, **{**extra, **overrides})


@contextlib.contextmanager
def run_folder(output_dir: str | None):
    """``output_dir`` itself, or (when None) a temporary folder removed on exit."""
    if output_dir:
        yield str(output_dir)
        return
    with tempfile.TemporaryDirectory(prefix="ftkit-run-") as folder:
        yield folder


__all__ = ["FixedOrder", "LossTrainer", "loss_arguments", "run_folder"]
