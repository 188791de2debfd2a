"""Stage 5: evaluation (paper §7). One module per kind of measurement."""
from .perplexity import perplexity

__all__ = ["perplexity"]
