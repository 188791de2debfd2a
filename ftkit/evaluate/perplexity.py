"""Perplexity of a causal LM on texts: exp of the mean next-token cross-entropy (paper §7.2.1).

Used in notebooks/03_model_initialisation.ipynb (quantisation) and to measure forgetting.
"""
from __future__ import annotations

import math

import torch


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
