"""Model registry: short names resolve to loaders (offline packs, tiny test models, hub ids).

``load("smollm2-135m")`` returns ``(model, tokenizer)`` loaded with the standard transformers
classes from the offline pack; a hub id (``"HuggingFaceTB/SmolLM2-360M-Instruct"``) or a local
folder works too when the hub is reachable or the files are cached. Names starting with
``tiny-`` build small random models for unit tests without any download.
Used in notebooks/00_setup_and_environment.ipynb and notebooks/03_model_initialisation.ipynb.
"""
from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal
from urllib.parse import urlparse

import torch

from ftkit.core.config import ConfigError
from ftkit.models import packs, tiny
from ftkit.models.quantize import METHODS

Kind = Literal["causal-lm", "asr", "encoder"]


class ModelNotFoundError(ConfigError, LookupError):
    """A model name resolves to nothing loadable; the message lists what is known."""


@dataclass(frozen=True)
class ModelEntry:
    """A registry entry: an offline pack or a tiny builder, plus the matching hub id."""
    name: str
    kind: Kind
    description: str
    pack: str | None = None
    hub_id: str | None = None
    builder: Callable[[], tuple[Any, Any]] | None = None


REGISTRY: dict[str, ModelEntry] = {e.name: e for e in (
    ModelEntry("smollm2-135m", "causal-lm", "SmolLM2-135M-Instruct, chat LLM (offline pack)",
               pack="smollm2-135m-instruct", hub_id="HuggingFaceTB/SmolLM2-135M-Instruct"),
    ModelEntry("whisper-tiny.en", "asr", "Whisper tiny.en, English ASR (offline pack)",
               pack="whisper-tiny.en", hub_id="openai/whisper-tiny.en"),
    ModelEntry("minilm-l6", "encoder", "all-MiniLM-L6-v2 sentence encoder (offline pack)",
               pack="all-minilm-l6-v2", hub_id="sentence-transformers/all-MiniLM-L6-v2"),
    ModelEntry("tiny-llama", "causal-lm", "random 2-layer Llama + tiny BPE tokenizer (tests)",
               builder=tiny.tiny_llama),
    ModelEntry("tiny-bert", "encoder", "random 2-layer BERT + tiny WordPiece tokenizer (tests)",
               builder=tiny.tiny_bert),
)}

AUTO_CLASSES = {"causal-lm": "AutoModelForCausalLM", "asr": "AutoModelForSpeechSeq2Seq",
                "encoder": "AutoModel", "sequence-classification":
                "AutoModelForSequenceClassification"}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def known_models() -> list[str]:
    """Registry names, offline packs first."""
    return list(REGISTRY)


def entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; an unknown short name lists the known ones."""
    if name in REGISTRY:
        return REGISTRY[name]
    raise ModelNotFoundError(f"unknown model {name!r}. Known names: {', '.join(REGISTRY)}; or "
                             "pass a hub id like 'org/model' (needs the hub or its cache) or a "
                             "local folder with config.json.")


def resolve(name: str) -> str:
    """Where ``name`` loads from: a pack folder (built on first use), a local folder, a hub id."""
    if name in REGISTRY:
        e = REGISTRY[name]
        if e.pack is None:
            raise ModelNotFoundError(f"{name!r} is built in memory; use ftkit.models.load()")
        return str(packs.ensure(e.pack))
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if "/" in name and not name.startswith((".", "/")):
        return name
    entry(name)  # raises with the list of known names
    raise AssertionError("unreachable")


def _kind_of(name: str, source: str) -> str:
    if name in REGISTRY:
        return REGISTRY[name].kind
    from transformers import AutoConfig

    config = _from_source(AutoConfig, source, name)
    if config.model_type == "whisper":
        return "asr"
    archs = " ".join(config.architectures or [])
    return "causal-lm" if "CausalLM" in archs or not archs else "encoder"


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the model hub answers (checked once); offline, loads use the local cache only."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _from_source(loader: Any, source: str, name: str, **kwargs: Any) -> Any:
    if not Path(source).is_dir() and not hub_reachable():
        kwargs["local_files_only"] = True  # no hub: use the HF cache without retrying for 20 s
    try:
        return loader.from_pretrained(source, **kwargs)
    except OSError as err:  # hub unreachable and not cached, or a missing folder
        raise ModelNotFoundError(
            f"could not load {name!r} from {source!r}: {err}\nOffline, use a registry name "
            f"({', '.join(REGISTRY)}); hub ids need the hub or a populated HF cache.") from err


def load_tokenizer(name: str) -> Any:
    """The tokenizer (text models) or processor (Whisper) that belongs to ``name``."""
    if name in REGISTRY and REGISTRY[name].builder:
        return REGISTRY[name].builder()[1]
    import transformers

    source = resolve(name)
    cls = transformers.AutoProcessor if _kind_of(name, source) == "asr" else transformers.AutoTokenizer
    return _from_source(cls, source, name)


def load_model(name: str, dtype: str = "float32", quantization: str = "none",
               task: str | None = None, **kwargs: Any) -> Any:
    """Load model ``name`` in ``dtype``; ``quantization`` as in ModelConfig.

    Args:
        task: override the head, e.g. ``"sequence-classification"`` (pass ``num_labels``).
        kwargs: passed to ``from_pretrained`` (or ignored for tiny models).
    """
    if name in REGISTRY and REGISTRY[name].builder:
        model = REGISTRY[name].builder()[0].to(DTYPES[dtype])
        return quantize(model, quantization)
    import transformers

    source = resolve(name)
    kind = task or _kind_of(name, source)
    cls = getattr(transformers, AUTO_CLASSES[kind])
    if quantization in ("4bit", "8bit"):
        kwargs["quantization_config"] = _bnb_config(quantization, dtype)
    model = _from_source(cls, source, name, dtype=DTYPES[dtype], **kwargs)
    return quantize(model, quantization)


def load(name: str, **kwargs: Any) -> tuple[Any, Any]:
    """``(model, tokenizer_or_processor)`` for ``name``; kwargs as in :func:`load_model`."""
    return load_model(name, **kwargs), load_tokenizer(name)


def quantize(model: Any, method: str) -> Any:
    """Apply post-training quantisation in memory (see ftkit.models.quantize); ``"none"`` is a no-op.

    ``4bit``/``8bit`` happen at load time (bitsandbytes, GPU only), so they are no-ops here.
    """

    if method in ("none", "4bit", "8bit"):
        return model
    if method not in METHODS:
        raise ValueError(f"quantization={method!r}; choose none, {', '.join(METHODS)}, 4bit or 8bit")
    return METHODS[method](model)


def _bnb_config(method: str, dtype: str) -> Any:
    if not torch.cuda.is_available():
        raise RuntimeError(f"quantization={method!r} uses bitsandbytes and needs a CUDA GPU; on a "
                           "CPU use quantization='int8-dynamic'")
    from transformers import BitsAndBytesConfig

    if method == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_compute_dtype=DTYPES[dtype if dtype != "float32"
                                                            else "bfloat16"])
