"""Runs whose loss curves teach something (paper §7.3), through the one SFT trainer.

- :func:`curve_run` trains a LoRA adapter on prompt/completion pairs and returns its training
  and eval curves; with ``patience`` it stops early through transformers'
  ``EarlyStoppingCallback`` and keeps the best checkpoint (``load_best_model_at_end``).
- :func:`planted_runs` makes three runs whose diagnosis is known in advance: too few steps
  (under-fitting), many epochs on a handful of examples (over-fitting) and a good budget.
  ``ftkit.evaluate.curves.diagnose`` then reads each from its curves alone.

Used in notebooks/13_evaluation_and_safety.ipynb.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass

import pandas as pd

from ftkit import models
from ftkit.core import env
from ftkit.core.config import AdapterConfig, ConfigError, TrainConfig
from ftkit.data.formatting import pairs_dataset
from ftkit.train import adapters, sft


@dataclass(frozen=True)
class CurvePlan:
    """One run: how many training pairs, steps, learning rate (and its schedule, with a
    10 % warm-up unless constant), batch, eval interval."""
    name: str
    train_rows: int
    steps: int
    lr: float
    batch_size: int = 4
    eval_every: int = 2
    schedule: str = "constant"


@dataclass
class CurveRun:
    """A finished run: its curves (``{step: loss}``), where it stopped, what it kept."""
    plan: CurvePlan
    train: pd.Series
    eval: pd.Series
    stopped_step: int
    kept_eval_loss: float
    seconds: float


def curve_run(model_name: str, plan: CurvePlan, train_pairs: tuple[list, list],
              eval_pairs: tuple[list, list], seed: int = 42, lora_r: int = 8,
              max_length: int = 256, patience: int = 0, min_delta: float = 0.0,
              title: str = "") -> CurveRun:
    """Train ``plan`` on the first ``plan.train_rows`` training pairs; eval every
    ``plan.eval_every`` steps (and at step 0). ``patience`` > 0: stop after that many evals
    without improvement (by more than ``min_delta``) and reload the best checkpoint."""
    if plan.train_rows > len(train_pairs[0]):
        raise ConfigError(f"run {plan.name!r} wants {plan.train_rows} training pairs; only "
                          f"{len(train_pairs[0])} given")
    env.seed_everything(seed)
    model, tokenizer = models.load(model_name)
    model = adapters.apply_method(model, AdapterConfig(peft_method="lora", lora_r=lora_r,
                                                       lora_alpha=2.0 * lora_r))
    model.config.use_cache = False
    train_ds = pairs_dataset(tokenizer, train_pairs[0][:plan.train_rows],
                             train_pairs[1][:plan.train_rows], max_length)
    eval_ds = pairs_dataset(tokenizer, *eval_pairs, max_length)
    cfg = TrainConfig(lr=plan.lr, max_steps=plan.steps, batch_size=plan.batch_size,
                      warmup_ratio=0.0 if plan.schedule == "constant" else 0.1,
                      eval_steps=plan.eval_every, lr_scheduler=plan.schedule)
    folder = tempfile.mkdtemp(prefix=f"ftkit-curve-{plan.name}-")
    callbacks, overrides = [], {"logging_steps": 1}
    if patience:
        from transformers import EarlyStoppingCallback

        callbacks.append(EarlyStoppingCallback(early_stopping_patience=patience,
                                               early_stopping_threshold=min_delta))
        overrides.update(load_best_model_at_end=True, metric_for_best_model="eval_loss",
                         greater_is_better=False, save_total_limit=2)
    try:
        trainer = sft.make_trainer(model, tokenizer, train_ds, eval_ds, cfg, folder, seed,
                                   title=title or plan.name, callbacks=callbacks,
                                   save_steps=plan.eval_every if patience else 0, **overrides)
        start = trainer.evaluate()["eval_loss"]
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
        logs = list(trainer.state.log_history)  # before the final evaluation adds its line
        kept = trainer.evaluate()["eval_loss"]  # the best checkpoint's, with patience
        stopped = int(trainer.state.global_step)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    train = pd.Series({int(r["step"]): float(r["loss"]) for r in logs
                       if "loss" in r and "step" in r}, name="train", dtype=float)
    evals = {0: float(start)} | {int(r["step"]): float(r["eval_loss"]) for r in logs
                                 if "eval_loss" in r and r.get("step", 0) > 0}
    return CurveRun(plan, train.sort_index(), pd.Series(evals, name="eval", dtype=float).sort_index(),
                    stopped, float(kept), round(seconds, 1))


def planted_plans(steps: int, few_steps: int, small_rows: int, train_rows: int, lr: float,
                  batch_size: int = 4, eval_every: int = 2) -> list[CurvePlan]:
    """The three planted runs: ``too few steps`` (``few_steps`` on all rows at ``lr``),
    ``too little data`` (``steps`` on ``small_rows`` rows, many epochs, at twice the rate) and
    ``good`` (``steps`` on ``train_rows`` rows at twice the rate, decayed on a cosine so that
    it settles)."""
    if few_steps >= steps or small_rows >= train_rows:
        raise ConfigError("planted runs need few_steps < steps and small_rows < train_rows")
    return [CurvePlan("too few steps", train_rows, few_steps, lr, batch_size, 1),
            CurvePlan("too little data", small_rows, steps, 2 * lr, batch_size, eval_every),
            CurvePlan("good", train_rows, steps, 2 * lr, batch_size, eval_every, "cosine")]


def planted_runs(model_name: str, plans: list[CurvePlan], train_pairs, eval_pairs,
                 seed: int = 42, **kwargs) -> dict[str, CurveRun]:
    """Each plan run with :func:`curve_run`, by name."""
    return {p.name: curve_run(model_name, p, train_pairs, eval_pairs, seed, **kwargs)
            for p in plans}
