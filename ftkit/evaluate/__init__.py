"""Stage 5: evaluation (paper §7). One module per kind of measurement."""
from ftkit.evaluate.perplexity import perplexity

__all__ = ["perplexity"]
