"""Compression (paper §4.3, §6.10, §8.3.5): quantised variants measured side by side.

- :mod:`~ftkit.compress.quantization` — size, speed and perplexity of quantised copies.

Used in notebooks/03_model_initialisation.ipynb.
"""
