"""Look inside a loaded model: architecture facts, parameters per component, memory per dtype.

Used in notebooks/03_model_initialisation.ipynb (paper §4.3: model size, resource constraints
and quantisation).
"""
from __future__ import annotations

import io

import torch

# Bytes per parameter of each storage format. int8 and 4-bit also keep a scale per group or
# row; that overhead is small (e.g. one fp16 scale per 64 weights adds 0.03 bytes) and is
# left out of this estimate.
BYTES_PER_PARAM = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "int8": 1.0, "4-bit": 0.5}

COMPONENTS = (("embeddings", ("embed",)), ("attention", ("attn", "attention")),
              ("mlp", ("mlp", "intermediate", "output.dense", "fc")),
              ("norms", ("norm", "layernorm", "ln_")), ("lm_head", ("lm_head",)))


def architecture(model) -> dict:
    """Key facts from the model's config: type, layers, width, heads, vocabulary, context."""
    c = model.config
    keys = {"model_type": "model_type", "layers": "num_hidden_layers",
            "hidden_size": "hidden_size", "attention_heads": "num_attention_heads",
            "kv_heads": "num_key_value_heads", "mlp_size": "intermediate_size",
            "vocab_size": "vocab_size", "context_length": "max_position_embeddings",
            "tied_embeddings": "tie_word_embeddings"}
    return {k: getattr(c, attr) for k, attr in keys.items() if getattr(c, attr, None) is not None}


def component_of(param_name: str) -> str:
    """Which component a parameter belongs to, by its name (first match wins)."""
    lowered = param_name.lower()
    for component, needles in COMPONENTS:
        if any(n in lowered for n in needles):
            return component
    return "other"


def parameter_breakdown(model) -> dict[str, int]:
    """Parameters per component; tied weights (shared embedding/lm_head) are counted once."""
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():  # named_parameters skips tied duplicates
        counts[component_of(name)] = counts.get(component_of(name), 0) + p.numel()
    return counts


def memory_by_format(n_params: int) -> dict[str, float]:
    """Weight memory in MB for ``n_params`` stored in each format of BYTES_PER_PARAM."""
    return {fmt: n_params * b / 1e6 for fmt, b in BYTES_PER_PARAM.items()}


def serialized_mb(model) -> float:
    """Size of the model's state dict saved with ``torch.save`` (what it costs on disk), MB."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell() / 1e6


def count_parameters(model, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
