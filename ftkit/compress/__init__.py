"""Compression and export (paper §4.3, §6.10, §8.3.5, §6.3.3): smaller models measured side by
side, and the files a server or another team loads.

- :mod:`~ftkit.compress.pruning` — unstructured and structured (MLP channel) pruning, a sweep.
- :mod:`~ftkit.compress.quantization` — quantised copies: size, memory, speed, perplexity.
- :mod:`~ftkit.compress.recovery` — LoRA fine-tunes on pruned or quantised models.
- :mod:`~ftkit.compress.export` — peft adapter and merged checkpoint, verified by loading back.
- :mod:`~ftkit.compress.gguf_file` — GGUF files written with ``gguf``, read by transformers.

Used in notebooks/03_model_initialisation.ipynb, 12_pruning_and_quantisation.ipynb and
14_deployment.ipynb.
"""
