"""Fine-tune with one method and measure it: the shared experiment of notebooks 05, 06 and 07.

``train_method`` loads a fresh copy of the model, applies the method (full, half, LoRA, DoRA,
IA³: :mod:`ftkit.train.adapters`), trains it through the one trainer factory
(:func:`ftkit.train.sft.make_trainer`) and returns the trained model with its cost: trainable
parameters, median optimiser-step time, peak resident memory added by training, losses.
``score_model`` measures what it can do: exact-match accuracy per task
(:mod:`ftkit.evaluate.tasks`) and, for forgetting, perplexity on general text and the share of
simple factual questions still answered (:mod:`ftkit.evaluate.probes`). Paper §6.1-6.4.
"""
from __future__ import annotations

import copy
import dataclasses
import gc
import statistics
import time
from typing import Any

import pandas as pd
import torch
from transformers import TrainerCallback

from ftkit import models
from ftkit.core import env
from ftkit.core.config import (
    AdapterConfig,
    TrainConfig,
)
from ftkit.evaluate import probes, tasks
from ftkit.evaluate.perplexity import perplexity
from ftkit.models.generation import chat_batch
from ftkit.train import adapters, sft


class StepTimer(TrainerCallback):
    """Wall time of each optimiser step (evaluation and logging excluded)."""
    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._t0 = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._t0)

    @property
    def median(self) -> float:
        """Median step time; the first step (warm-up, lazy optimiser state) is left out."""
        steps = self.seconds[1:] or self.seconds
        return statistics.median(steps) if steps else float("nan")


def train_method(model_name: str, adapter: AdapterConfig, train: TrainConfig, train_ds,
                 eval_ds, output_dir: str, seed: int = 42, title: str | None = None,
                 dtype: str = "float32", **overrides: Any) -> tuple[Any, dict]:
    """Fresh model → method → Trainer → train; returns ``(model, cost row)``."""
    sft.check_datasets(train_ds, eval_ds, train)  # bad data fails before a model is loaded
    env.seed_everything(seed)
    model, tokenizer = models.load(model_name, dtype=dtype)
    model = adapters.apply_method(model, adapter)
    model.config.use_cache = False
    summary = adapters.trainable_summary(model)
    timer, extra = StepTimer(), adapters.callbacks(model, adapter, seed)
    trainer = sft.make_trainer(model, tokenizer, train_ds, eval_ds, train, output_dir, seed,
                               title=title or adapter.peft_method, callbacks=[timer, *extra],
                               **overrides)
    with env.MemoryTracker() as mem:
        result = trainer.train()
    model = sft.unwrap(trainer)
    rounds = [r for c in extra for r in getattr(c, "history", [])]
    if rounds:  # half fine-tuning: what trained in a round, not every candidate
        summary["trainable"] = round(statistics.mean(r["trainable"] for r in rounds))
        summary["share"] = statistics.mean(r["share"] for r in rounds)
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    model.config.use_cache = True
    row = {"trainable_params": summary["trainable"], "trainable_share": summary["share"],
           "step_seconds": timer.median, "train_seconds": result.metrics["train_runtime"],
           "peak_memory_mb": mem.delta_mb, "train_loss": result.training_loss,
           "eval_loss": evals[-1] if evals else float("nan")}
    return model.eval(), row


def score_model(model, tokenizer, test_rows: list[dict], max_new_tokens: int,
                batch_size: int = 16, general: bool = True, progress=None) -> tuple[Any, dict]:
    """Exact-match accuracy per task and (``general``) the forgetting probes."""
    table, scores = tasks.evaluate(model, tokenizer, test_rows, max_new_tokens, batch_size,
                                   progress)
    row = {"task_score": statistics.mean(scores.values()),
           **{f"score_{t}": s for t, s in scores.items()}}
    if general:
        model.eval()
        row["general_perplexity"] = perplexity(model, tokenizer, probes.GENERAL_TEXTS)
        answers = chat_batch(model, tokenizer, [q for q, _ in probes.FACT_QUESTIONS], 24,
                             batch_size)
        row["fact_accuracy"] = sum(probes.answer_is_correct(a, e) for a, (_, e) in
                                   zip(answers, probes.FACT_QUESTIONS)) / len(answers)
    return table, row


@torch.inference_mode()
def forward_latency_ms(model, batch: dict, repeats: int = 5) -> float:
    """Best-of-``repeats`` milliseconds for one forward pass over ``batch`` (after a warm-up)."""
    model.eval()
    model(**batch)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(**batch)
        best = min(best, time.perf_counter() - t0)
    return best * 1000


@dataclasses.dataclass
class MethodComparison:
    """What :func:`compare_methods` measured: a cost-and-score row per method, the answers
    each method gave to the test prompts, and the models asked to be kept."""
    rows: dict[str, dict]
    answers: dict[str, Any]
    kept: dict[str, Any]


def compare_methods(model_name: str, adapter: AdapterConfig, train: TrainConfig,
                    methods: list[str], lrs: dict[str, float], train_ds, eval_ds, tokenizer,
                    test_rows: list[dict], max_new_tokens: int, eval_batch_size: int,
                    output_dir: str, seed: int = 42, keep: tuple[str, ...] = (),
                    progress=None) -> MethodComparison:
    """Fine-tune each of ``methods`` at its own learning rate on the same data and score it
    (task exact match, forgetting probes); paper §6.1-6.4. Used in notebook 05."""
    out = MethodComparison({}, {}, {})
    for method in methods:
        model, row = train_method(model_name, dataclasses.replace(adapter, peft_method=method),
                                  dataclasses.replace(train, lr=lrs[method]), train_ds, eval_ds,
                                  f"{output_dir}/{method}", seed,
                                  title=f"{method} (lr {lrs[method]:g})")
        scored, score_row = score_model(model, tokenizer, test_rows, max_new_tokens,
                                        eval_batch_size, progress=progress)
        out.rows[method], out.answers[method] = {**row, **score_row}, scored.answer
        if method in keep:
            out.kept[method] = model
        del model
        gc.collect()
    return out


def interleaved_latency_ms(models: dict[str, Any], batch: dict, rounds: int = 50) -> pd.DataFrame:
    """Forward milliseconds of each model over ``batch``, measured in turns, ``rounds`` times.

    Turns (a, b, c, a, b, c, …) spread the machine's drifts (other processes, clock changes)
    evenly over the models, so their ratios are fair even when the absolute times move.
    Returns the median and the quartiles per model (rows) in ms.
    """
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            model.eval()
            model(**batch)  # warm-up
        for _ in range(rounds):
            for name, model in models.items():
                t0 = time.perf_counter()
                model(**batch)
                times[name].append((time.perf_counter() - t0) * 1000)
    frame = pd.DataFrame(times)
    return pd.DataFrame({"median": frame.median(), "q25": frame.quantile(0.25),
                         "q75": frame.quantile(0.75)})


def merged_latency(model, base, batch: dict, rounds: int = 50) -> dict:
    """Forward time of ``model`` unmerged and after ``merge_and_unload``, each over the base
    model's, measured in turns (:func:`interleaved_latency_ms`); the relative spread
    (interquartile range over median) of the merged model's times; and whether merging kept
    the logits (atol 1e-3)."""
    with torch.inference_mode():
        before = model(**batch).logits
        merged = copy.deepcopy(model).merge_and_unload()
        same = torch.allclose(before, merged(**batch).logits, atol=1e-3)
    ms = interleaved_latency_ms({"base": base, "unmerged": model, "merged": merged}, batch,
                                rounds)
    med = ms["median"]
    return {"merged": merged, "unmerged_ms": med["unmerged"], "merged_ms": med["merged"],
            "merged_over_base": med["merged"] / med["base"],
            "unmerged_over_base": med["unmerged"] / med["base"],
            "merged_spread": (ms.loc["merged", "q75"] - ms.loc["merged", "q25"]) / med["merged"],
            "merge_keeps_outputs": same}


def seed_repeats(model_name: str, adapter: AdapterConfig, train: TrainConfig,
                 lrs: dict[str, float], rank: int, seeds: list[int], train_ds, eval_ds,
                 output_dir: str, methods: tuple[str, ...] = ("lora", "dora"),
                 known: dict[tuple[str, int], float] | None = None) -> pd.DataFrame:
    """Eval loss of each method at ``rank`` for every seed: a difference between methods that
    one run shows may be the seed's. ``known`` holds losses already measured, by
    ``(method, seed)``. Returns a DataFrame indexed by seed, one column per method."""
    losses = dict(known or {})
    for seed in seeds:
        for method in methods:
            if (method, seed) in losses:
                continue
            model, row = train_method(
                model_name, dataclasses.replace(adapter, peft_method=method, lora_r=rank),
                dataclasses.replace(train, lr=lrs[method]), train_ds, eval_ds,
                f"{output_dir}/{method}_r{rank}_seed{seed}", seed,
                title=f"{method} r={rank} seed {seed}")
            losses[(method, seed)] = row["eval_loss"]
            del model
            gc.collect()
    return pd.DataFrame({m: {s: losses[(m, s)] for s in seeds} for m in methods}).rename_axis("seed")


def rank_sweep(model_name: str, adapter: AdapterConfig, train: TrainConfig,
               lrs: dict[str, float], ranks: list[int], train_ds, eval_ds, tokenizer,
               test_rows: list[dict], max_new_tokens: int, eval_batch_size: int, base, batch: dict,
               output_dir: str, seed: int = 42, keep_rank: int | None = None,
               methods: tuple[str, ...] = ("lora", "dora"),
               latency_rounds: int = 50) -> tuple[Any, dict]:
    """LoRA and DoRA at every rank on the same batches: cost, task score, merged latency.

    Returns ``(table, merged)``: a DataFrame indexed by (method, rank), and the merged models
    at ``keep_rank`` by method (for the weight-decomposition analysis). Paper §6.3.2, §6.3.4.
    Used in notebook 06.
    """
    rows, kept = [], {}
    for r in sorted(ranks):
        for method in methods:
            model, row = train_method(model_name,
                                      dataclasses.replace(adapter, peft_method=method, lora_r=r),
                                      dataclasses.replace(train, lr=lrs[method]), train_ds,
                                      eval_ds, f"{output_dir}/{method}_r{r}", seed,
                                      title=f"{method} r={r}")
            _, score_row = score_model(model, tokenizer, test_rows, max_new_tokens,
                                       eval_batch_size, general=False)
            latency = merged_latency(model, base, batch, latency_rounds)
            merged = latency.pop("merged")
            if r == keep_rank:
                kept[method] = merged
            rows.append({"method": method, "rank": r, **row, **score_row, **latency})
            del model, merged
            gc.collect()
    return pd.DataFrame(rows).set_index(["method", "rank"]), kept
