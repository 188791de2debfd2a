"""The balancing methods of notebook 02 as recipes, and the comparison that runs them.

A :class:`Recipe` combines one choice per lever of paper §3.1.3: how the training rows are
re-sampled (``ftkit.data.balance``), which loss is used (``ftkit.train.losses``), how batches
are drawn (``ftkit.train.sampling``) and whether several models are bagged
(``ftkit.train.classifier.bagging``). :data:`RECIPES` names the eight compared methods;
:func:`compare_heads` trains each on cached sentence embeddings for several seeds and averages
the metrics of ``ftkit.evaluate.classification``; :func:`train_llm` applies a recipe to LoRA
fine-tuning of a language model. The notebook's knobs are :class:`BalanceConfig`.
Used in notebooks/02_data_balancing.ipynb.
"""
from __future__ import annotations

import functools
import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ftkit.data import balance
from ftkit.data.split import split
from ftkit.evaluate.classification import (
    METRICS,
    choose_weight,
    classification_metrics,
    reweight,
)
from ftkit.models import load
from ftkit.models.embeddings import encode
from ftkit.models.packs.core import cache_root
from ftkit.train import classifier, lora_classifier
from ftkit.train.callbacks import live_plot
from ftkit.train.params import RECIPES, TEXT_RECIPES


def cached_embeddings(texts: list[str], encoder_name: str, cache_dir: str | Path | None = None,
                      batch_size: int = 64) -> np.ndarray:
    """Sentence embeddings ``(N, H)``, computed once and then read from ``cache_dir``.

    The file name hashes the encoder name and every text, so changed data is re-embedded.
    ``cache_dir`` defaults to ``embeddings/`` in the ftkit cache (``$FTKIT_CACHE``).
    """
    if cache_dir is None:

        cache_dir = cache_root() / "embeddings"
    digest = hashlib.sha256("\n".join([encoder_name, *texts]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"embeddings-{encoder_name.replace('/', '_')}-{digest}.npy"
    if path.exists():
        return np.load(path)

    model, tokenizer = load(encoder_name)
    X = encode(model.eval(), tokenizer, texts, batch_size=batch_size).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, X)
    return X


def train_head(name: str, X: np.ndarray, y: np.ndarray, n_classes: int, seed: int = 0,
               gamma: float = 2.0, ensemble_size: int = 5, **head_kwargs):
    """Train the embedding head of recipe ``name`` on features ``X (N, D)``, labels ``y``."""
    recipe = RECIPES[name]
    X_r, y_r = balance.resample(recipe.resample, X, y, seed)
    weight = balance.class_weights(y, n_classes) if recipe.loss == "weighted" else None
    kwargs = dict(loss=recipe.loss, sampler=recipe.sampler, class_weight=weight, gamma=gamma,
                  **head_kwargs)
    if recipe.ensemble:
        return classifier.bagging(X_r, y_r, n_classes, ensemble_size, seed, **kwargs)
    return classifier.train_head(X_r, y_r, n_classes, seed=seed, **kwargs)


def threshold_head(X_train, y_train, X_eval, minority: list[int], n_classes: int, seed: int = 0,
                   val_fraction: float = 0.2, **train_kwargs):
    """The cheapest imbalance method: a baseline head trained on the training rows less a
    stratified validation part, whose minority probabilities are then scaled by the weight that
    gives the best minority F1 on that validation part (never on the test split).

    Returns ``(eval probabilities, chosen weight, validation curve)``.
    """
    fit, val = split(len(y_train), "stratified", test_size=val_fraction, seed=seed,
                     labels=y_train)
    head = train_head("baseline", X_train[fit], y_train[fit], n_classes, seed, **train_kwargs)
    weight, curve = choose_weight(y_train[val], classifier.predict_proba(head, X_train[val]),
                                  minority)
    return reweight(classifier.predict_proba(head, X_eval), minority, weight), weight, curve


def compare_heads(methods: list[str], X_train, y_train, X_eval, y_eval, minority: list[int],
                  seeds: list[int], progress=None, **train_kwargs):
    """Metrics per method, averaged over ``seeds``, and each method's first-seed probabilities.

    Returns:
        ``(table, probas)``: a DataFrame (rows: methods, columns: METRICS and their ``_std``),
        and ``{method: (N_eval, K) probabilities}``.
    """
    n_classes = int(max(y_train.max(), y_eval.max())) + 1
    jobs = [(m, s) for m in methods for s in seeds]
    rows, probas = [], {}
    for method, seed in (progress or iter)(jobs):
        if RECIPES[method].threshold:
            proba = threshold_head(X_train, y_train, X_eval, minority, n_classes, seed,
                                   **train_kwargs)[0]
        else:
            proba = classifier.predict_proba(
                train_head(method, X_train, y_train, n_classes, seed, **train_kwargs), X_eval)
        probas.setdefault(method, proba)
        rows.append({"method": method, **classification_metrics(y_eval, proba, minority)})
    grouped = pd.DataFrame(rows).groupby("method", sort=False)[list(METRICS)]
    return grouped.mean().join(grouped.std(ddof=0).add_suffix("_std")), probas


def resampled_counts(methods: list[str], X, y, classes: list[str],
                     seed: int = 0) -> dict[str, dict[str, int]]:
    """Training rows per class after each method's re-sampling (for the distribution plot)."""
    out = {}
    for method in methods:
        recipe = RECIPES[method]
        if recipe.ensemble:  # what one bagging member sees
            y_r = y[classifier.balanced_bootstrap(y, seed)]
        else:
            y_r = balance.resample(recipe.resample, X, y, seed)[1]
        out[method] = balance.class_counts(y_r, classes)
    return out


def train_llm(name: str, model_name: str, texts: list[str], y: np.ndarray, n_classes: int, *,
              seed: int = 0, gamma: float = 2.0, adapter: dict | None = None,
              **finetune_kwargs):
    """LoRA fine-tune ``model_name`` with recipe ``name``; returns ``(clf, tokenizer, losses)``.

    Re-sampling recipes select rows of ``texts``; the model is loaded fresh for every call so
    that methods do not share adapters.
    """

    if name not in TEXT_RECIPES:
        raise ValueError(f"{name!r} is not available for LLM fine-tuning; use one of "
                         f"{list(TEXT_RECIPES)}")
    recipe = RECIPES[name]
    idx = np.arange(len(y))
    if recipe.resample != "none":
        idx = balance.INDEX_METHODS[recipe.resample](y, seed)
    weight = balance.class_weights(y, n_classes) if recipe.loss == "weighted" else None

    finetune_kwargs.setdefault("plot", live_plot(f"{model_name} + LoRA: {name}", every=5))
    model, tokenizer = load(model_name)
    clf = lora_classifier.lora_classifier(model, n_classes, seed=seed, **(adapter or {}))
    losses = lora_classifier.finetune(
        clf, tokenizer, [texts[i] for i in idx], y[idx], loss=recipe.loss,
        sampler=recipe.sampler, class_weight=weight, gamma=gamma, seed=seed, **finetune_kwargs)
    return clf, tokenizer, losses


def compare_llm_methods(methods: list[str], model_name: str, train_texts: list[str],
                        y_train: np.ndarray, eval_texts: list[str], y_eval: np.ndarray,
                        n_classes: int, minority_ids: list[int], *, adapter: dict,
                        max_length: int, bf16: bool, output_dir: str | None = None,
                        val_fraction: float = 0.2, **train_kwargs) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """LoRA classifiers of ``model_name``, one per imbalance recipe, scored on the eval split
    with the imbalance metrics; returns ``(table, eval probabilities by method)``. Each run's
    event files go to ``output_dir/lora-<method>``. ``threshold`` trains the baseline on the
    training rows less a stratified ``val_fraction`` and moves the decision threshold by the
    minority weight that is best on that part. Paper §3.1.3. Used in notebook 02."""
    rows, probas = {}, {}
    for method in methods:
        t0 = time.perf_counter()
        folder = f"{output_dir}/lora-{method}" if output_dir else None
        predict = functools.partial(lora_classifier.predict_proba, max_length=max_length,
                                    bf16=bf16)
        if RECIPES[method].threshold:  # baseline on the fit part, weight chosen on validation
            fit, val = split(len(y_train), "stratified", test_size=val_fraction,
                             seed=train_kwargs.get("seed", 0), labels=y_train)
            clf, tokenizer, losses = train_llm(
                "baseline", model_name, [train_texts[i] for i in fit], y_train[fit], n_classes,
                adapter=adapter, max_length=max_length, bf16=bf16, output_dir=folder,
                **train_kwargs)
            weight, _ = choose_weight(y_train[val], predict(clf, tokenizer,
                                                            [train_texts[i] for i in val]),
                                      minority_ids)
            probas[method] = reweight(predict(clf, tokenizer, eval_texts), minority_ids, weight)
        else:
            clf, tokenizer, losses = train_llm(method, model_name, train_texts, y_train,
                                               n_classes, adapter=adapter,
                                               max_length=max_length, bf16=bf16,
                                               output_dir=folder, **train_kwargs)
            probas[method] = predict(clf, tokenizer, eval_texts)
        rows[method] = {**classification_metrics(y_eval, probas[method], minority_ids),
                        "final_loss": round(sum(losses[-5:]) / len(losses[-5:]), 3),
                        "seconds": round(time.perf_counter() - t0, 1)}
    return pd.DataFrame.from_dict(rows, orient="index"), probas
