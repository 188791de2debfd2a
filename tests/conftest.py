"""Fixtures shared by several test modules."""
import pytest

from ftkit.core.config import AdapterConfig
from ftkit.models.tiny import tiny_llama
from ftkit.train.adapters import apply_method


@pytest.fixture(scope="module")
def policy():
    """A tiny random Llama with a rank-2 LoRA adapter (no dropout) and its tokenizer."""
    model, tok = tiny_llama()
    return apply_method(model, AdapterConfig(lora_r=2, lora_dropout=0.0)), tok
