"""Optimisers side by side on one fine-tuning run (paper §5.4).

Eight update rules train the same LoRA adapter on the same data for the same number of steps:
full-batch gradient descent (every training example in each step), stochastic gradient
descent (one example per step), mini-batch SGD, AdaGrad, RMSprop, AdaDelta, Adam and AdamW.
Each is the plain ``torch.optim`` class handed to transformers' Trainer (the sft path of the
factory), so only the update rule differs. Each gets its own learning rate from a short
sweep (:func:`lr_sweep`): one rate shared by all would favour whichever it happens to suit.

Beside the loss, :func:`state_bytes` measures what each rule keeps per trainable parameter:
nothing for SGD, one running sum or average for AdaGrad and RMSprop (4 bytes in fp32), two
for AdaDelta, Adam and AdamW (8 bytes) — the memory that makes Adam-style optimisers cost
three times a model's weights in full fine-tuning.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd
import torch

from ftkit import models
from ftkit.core import env
from ftkit.core.config import AdapterConfig, ConfigError, TrainConfig
from ftkit.train import adapters, sft

OPTIMISERS: dict[str, str] = {
    "gd": "full-batch gradient descent: every training example in every step",
    "sgd": "stochastic gradient descent: one example per step",
    "minibatch_sgd": "mini-batch SGD: batch_size examples per step",
    "adagrad": "AdaGrad: step scaled by the root of each weight's summed squared gradients",
    "rmsprop": "RMSprop: step scaled by a running average of squared gradients",
    "adadelta": "AdaDelta: RMSprop with a running average of past updates in place of a rate",
    "adam": "Adam: momentum and RMSprop scaling, bias-corrected",
    "adamw": "AdamW: Adam with weight decay applied to the weights, not the gradient",
}
STATE_ARITHMETIC = {"gd": 0, "sgd": 0, "minibatch_sgd": 0, "adagrad": 4, "rmsprop": 4,
                    "adadelta": 8, "adam": 8, "adamw": 8}  # fp32 bytes per trainable weight


def check_name(name: str) -> None:
    if name not in OPTIMISERS:
        raise ConfigError(f"optimiser {name!r}: choose one of {list(OPTIMISERS)}")


def make_optimiser(name: str, params, lr: float, weight_decay: float = 0.01):
    """The ``torch.optim`` optimiser called ``name`` (see :data:`OPTIMISERS`)."""
    check_name(name)
    params = list(params)
    if name in ("gd", "sgd", "minibatch_sgd"):
        return torch.optim.SGD(params, lr=lr)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def state_bytes(optimizer) -> int:
    """Bytes of the tensors the optimiser keeps between steps (its state), measured."""
    return sum(v.numel() * v.element_size() for state in optimizer.state.values()
               for v in state.values() if torch.is_tensor(v) and v.dim() > 0)


def batch_size_for(name: str, batch_size: int, n_train: int) -> int:
    """Examples per step: all of them for ``gd``, one for ``sgd``, else ``batch_size``."""
    return {"gd": n_train, "sgd": 1}.get(name, batch_size)


def train_with(name: str, lr: float, model_name: str, adapter: AdapterConfig,
               train: TrainConfig, train_ds, eval_ds, output_dir: str, seed: int = 42) -> dict:
    """One run with optimiser ``name`` at ``lr``: final eval loss, losses per step, median
    step time, state bytes per trainable weight (measured) and the arithmetic's."""
    check_name(name)
    env.seed_everything(seed)
    model, tokenizer = models.load(model_name)
    model = adapters.apply_method(model, adapter)
    model.config.use_cache = False
    cfg = dataclasses.replace(train, lr=lr, batch_size=batch_size_for(
        name, train.batch_size, len(train_ds)), grad_accum=1)
    trainer = sft.make_trainer(model, tokenizer, train_ds, eval_ds, cfg,
                               f"{output_dir}/{name}-lr{lr:g}", seed, title=f"{name} lr={lr:g}")
    trainable = [p for p in trainer.model.parameters() if p.requires_grad]
    trainer.optimizer = make_optimiser(name, trainable, lr)  # the Trainer keeps a given one
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    history = trainer.state.log_history
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    n_weights = sum(p.numel() for p in trainable)
    return {"batch_size": cfg.batch_size,
            "eval_loss": evals[-1] if evals else float("nan"),
            "losses": [(h["step"], h["loss"]) for h in history if "loss" in h],
            "seconds_per_step": seconds / max(1, trainer.state.global_step),
            "state_bytes_per_weight": state_bytes(trainer.optimizer) / n_weights,
            "arithmetic_bytes_per_weight": STATE_ARITHMETIC[name]}


Run = Callable[[str, float], dict]  # (optimiser, lr) -> a row with eval_loss, losses …


def lr_sweep(name: str, lrs: list[float], run: Run) -> tuple[float, pd.DataFrame]:
    """Short runs of ``name`` at each rate; returns the rate with the lowest eval loss (a
    diverged run, NaN, never wins) and the table of all."""
    if not lrs:
        raise ConfigError(f"lr_sweep({name!r}): give at least one learning rate")
    rows = [run(name, lr) for lr in lrs]
    table = pd.DataFrame(rows, index=pd.Index(lrs, name="lr"))[["eval_loss",
                                                                 "seconds_per_step"]]
    finite = table.eval_loss.dropna()
    return (float(finite.idxmin()) if len(finite) else float(lrs[0])), table


@dataclass
class OptimiserComparison:
    """What :func:`compare_optimisers` measured: one row per optimiser (its chosen rate,
    eval loss, time, state memory), the sweeps, and each chosen run's loss curve."""
    table: pd.DataFrame
    sweeps: dict[str, pd.DataFrame]
    curves: dict[str, list[tuple[int, float]]]


def compare_optimisers(names: list[str], lrs: dict[str, list[float]], sweep_run: Run,
                       final_run: Run, progress=None) -> OptimiserComparison:
    """For each optimiser: pick its rate with short runs (``sweep_run``), then train with it
    for the full budget (``final_run``). ``lrs`` maps each name to its candidate rates; both
    runs are ``(name, lr) -> row`` (:func:`full_model_run`, or the cached-state runs of
    ftkit.train.tuning)."""
    for name in names:
        check_name(name)
        if not lrs.get(name):
            raise ConfigError(f"lrs: no candidate learning rates for optimiser {name!r}")
    rows, sweeps, curves = [], {}, {}
    for name in (progress or iter)(names):
        best, sweeps[name] = lr_sweep(name, lrs[name], sweep_run)
        row = dict(final_run(name, best))
        curves[name] = row.pop("losses")
        rows.append({"optimiser": name, "lr": best, **row})
    return OptimiserComparison(pd.DataFrame(rows).set_index("optimiser"), sweeps, curves)


def full_model_run(train: TrainConfig, **run: Any) -> Run:
    """``(name, lr) -> train_with(name, lr, train=train, **run)``: whole-model runs."""
    return lambda name, lr: train_with(name, lr, train=train, **run)


__all__ = ["OPTIMISERS", "OptimiserComparison", "STATE_ARITHMETIC", "batch_size_for",
           "compare_optimisers", "full_model_run", "lr_sweep", "make_optimiser", "state_bytes",
           "train_with"]
