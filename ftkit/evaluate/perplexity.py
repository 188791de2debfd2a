"""Perplexity of a causal LM on texts: exp of the mean next-token cross-entropy (paper §7.2.1).

Used in notebooks/03_model_initialisation.ipynb (quantisation) and to measure forgetting;
:func:`token_nll` and :func:`perplexity_table` compare models on several sets of text with
bootstrap intervals (notebooks/13_evaluation_and_safety.ipynb).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from ftkit.core.config import ConfigError
from ftkit.data.formatting import IGNORE_INDEX, tokenize_with_mask


@torch.inference_mode()
def perplexity(model, tokenizer, texts: list[str], max_length: int = 256) -> float:
    """Token-weighted perplexity over ``texts`` (each truncated to ``max_length`` tokens)."""
    total_nll, total_tokens = 0.0, 0
    for text in texts:
        ids = tokenizer(text, return_tensors="pt", truncation=True,
                        max_length=max_length)["input_ids"].to(model.device)
        if ids.shape[1] < 2:
            continue  # nothing to predict in a one-token text
        loss = model(input_ids=ids, labels=ids).loss  # mean over T-1 predicted tokens
        total_nll += float(loss) * (ids.shape[1] - 1)
        total_tokens += ids.shape[1] - 1
    if total_tokens == 0:
        raise ValueError("perplexity: no text has two or more tokens")
    return math.exp(total_nll / total_tokens)


def token_nll(model, tokenizer, prompts: list[str], completions: list[str] | None = None,
              max_length: int = 256, progress=None) -> pd.DataFrame:
    """Summed next-token negative log-likelihood and token count per example.

    Without ``completions`` each prompt is scored as a whole text; with them, only the
    completion tokens are scored given the prompt (the loss a fine-tuned model trained on:
    ``ftkit.data.formatting.tokenize_with_mask``). One row per example: ``nll`` (nats),
    ``tokens``.
    """
    if not prompts:
        raise ConfigError("token_nll: no texts to score")
    if completions is not None and len(completions) != len(prompts):
        raise ConfigError(f"token_nll: {len(prompts)} prompts, {len(completions)} completions")
    return _token_nll(model, tokenizer, prompts, completions, max_length, progress)


@torch.inference_mode()
def _token_nll(model, tokenizer, prompts, completions, max_length, progress) -> pd.DataFrame:
    items = range(len(prompts))
    rows = []
    for i in (progress(items) if progress else items):
        if completions is None:
            ids = tokenizer(prompts[i], truncation=True, max_length=max_length)["input_ids"]
            labels = list(ids)
        else:
            enc = tokenize_with_mask(tokenizer, prompts[i], completions[i], max_length)
            ids, labels = enc["input_ids"], enc["labels"]
        ids_t = torch.tensor([ids], device=model.device)
        labels_t = torch.tensor([labels], device=model.device)
        n = int((labels_t[:, 1:] != IGNORE_INDEX).sum())
        if n == 0:
            rows.append({"nll": 0.0, "tokens": 0})
            continue
        loss = model(input_ids=ids_t, labels=labels_t).loss  # mean over the n scored tokens
        rows.append({"nll": float(loss) * n, "tokens": n})
    table = pd.DataFrame(rows)
    if table["tokens"].sum() == 0:
        raise ConfigError("token_nll: no example has a token to predict")
    return table


def perplexity_table(scores: dict[tuple[str, str], pd.DataFrame], baseline: str,
                     n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Cross-entropy and perplexity per (model, set), with 95 % bootstrap intervals.

    ``scores`` maps ``(model, set)`` to :func:`token_nll` tables; models scored on one set must
    have scored the same examples. Examples are resampled together for all models, so
    ``ratio`` (perplexity ÷ the ``baseline`` model's on the same set) gets a paired interval.
    """
    rng = np.random.default_rng(seed)
    sets = sorted({s for _, s in scores})
    rows = []
    for name in sets:
        base = scores.get((baseline, name))
        if base is None:
            raise ConfigError(f"perplexity_table: no {baseline!r} scores on set {name!r}")
        draws = rng.integers(0, len(base), (n_boot, len(base)))
        base_boot = np.exp(base["nll"].to_numpy()[draws].sum(1) /
                           np.maximum(base["tokens"].to_numpy()[draws].sum(1), 1))
        for (model, s), table in scores.items():
            if s != name:
                continue
            if len(table) != len(base):
                raise ConfigError(f"{model!r} and {baseline!r} scored different examples of "
                                  f"{name!r} ({len(table)} vs {len(base)})")
            nll, tok = table["nll"].to_numpy(), table["tokens"].to_numpy()
            ce = nll.sum() / tok.sum()
            boot = np.exp(nll[draws].sum(1) / np.maximum(tok[draws].sum(1), 1))
            ratio = boot / base_boot
            rows.append({"model": model, "set": name, "examples": len(table),
                         "tokens": int(tok.sum()), "cross_entropy": float(ce),
                         "perplexity": float(np.exp(ce)),
                         "ppl_low": float(np.percentile(boot, 2.5)),
                         "ppl_high": float(np.percentile(boot, 97.5)),
                         "ratio": float(np.exp(ce) / np.exp(base["nll"].sum() /
                                                            base["tokens"].sum())),
                         "ratio_low": float(np.percentile(ratio, 2.5)),
                         "ratio_high": float(np.percentile(ratio, 97.5))})
    return pd.DataFrame(rows).set_index(["set", "model"])


def compare(model, tokenizer, variants: dict, sets: dict[str, tuple], baseline: str,
            max_length: int = 256, n_boot: int = 1000, seed: int = 0,
            progress=None) -> pd.DataFrame:
    """:func:`perplexity_table` of every variant on every set.

    ``variants``: name → a context-manager factory that puts ``model`` in that state (e.g.
    ``model.disable_adapter`` for a peft model's base, ``contextlib.nullcontext`` for itself).
    ``sets``: name → ``(texts, None)`` for whole texts or ``(prompts, completions)``.
    """
    scores = {}
    for name, switch in variants.items():
        with switch():
            for set_name, (prompts, completions) in sets.items():
                scores[(name, set_name)] = token_nll(model, tokenizer, list(prompts),
                                                     None if completions is None else list(completions),
                                                     max_length, progress)
    return perplexity_table(scores, baseline, n_boot, seed)
