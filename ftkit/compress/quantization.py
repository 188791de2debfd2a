"""Quantised variants of a model measured side by side: size, speed, perplexity (paper §4.3, §6.10).

The quantisers themselves live in ``ftkit.models.quantize``.
Used in notebooks/03_model_initialisation.ipynb.
"""
from __future__ import annotations

import copy

import pandas as pd

from ftkit.evaluate.perplexity import perplexity
from ftkit.models.footprint import serialized_mb
from ftkit.models.generation import ms_per_token
from ftkit.models.registry import load_model, quantize


def compare(model, tokenizer, methods: list[str], texts: list[str], model_name: str = "",
            progress=None) -> tuple:
    """Quantise copies of ``model`` and measure each: storage MB, ms per token, perplexity.

    ``4bit``/``8bit`` (bitsandbytes, GPU only) quantise at load time, so those variants are
    loaded again from ``model_name``. Returns ``(table, variants)``: a DataFrame indexed by
    method, and the models.
    """
    loop = progress(methods, desc="quantise and measure") if progress else methods
    variants, rows = {}, {}
    for method in loop:
        variants[method] = variant = _variant(model, method, model_name)
        rows[method] = {"size_mb": serialized_mb(variant),
                        "ms_per_token": ms_per_token(variant, tokenizer, "Tell me about Paris.", 24),
                        "perplexity": perplexity(variant, tokenizer, texts)}
    return pd.DataFrame(rows).T, variants


def _variant(model, method: str, model_name: str):
    if method in ("4bit", "8bit"):
        if not model_name:
            raise ValueError(f"{method} quantises while loading: pass model_name")
        return load_model(model_name, quantization=method)
    if method == "none":
        return model
    on_cpu = copy.deepcopy(model).to("cpu")  # torch's int8 kernels here are CPU kernels
    return quantize(on_cpu, method)
