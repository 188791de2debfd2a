"""Speech recognition helpers: transcribe with Whisper, score with WER/CER (paper §11.4).

Used in notebooks/00_setup_and_environment.ipynb (pack check) and notebooks/16_whisper_asr.ipynb.
"""
from __future__ import annotations

import re

import numpy as np
import torch

SAMPLE_RATE = 16_000  # Whisper's feature extractor expects 16 kHz mono


def normalise(text: str) -> str:
    """Lower-case, drop punctuation, collapse spaces: the text WER is computed on."""
    text = re.sub(r"[^\w\s']", " ", text.lower())
    return re.sub(r"\s+", " ", text).strip()


@torch.inference_mode()
def transcribe(model, processor, audio: list[np.ndarray] | np.ndarray,
               max_new_tokens: int = 96) -> list[str]:
    """Greedy transcripts of 16 kHz mono clips (float arrays in [-1, 1])."""
    clips = [audio] if isinstance(audio, np.ndarray) else list(audio)
    feats = processor(clips, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
    ids = model.generate(feats.to(model.device, model.dtype), max_new_tokens=max_new_tokens)
    return [t.strip() for t in processor.batch_decode(ids, skip_special_tokens=True)]


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Word error rate over all pairs, on normalised text."""
    import jiwer

    return float(jiwer.wer([normalise(r) for r in references], [normalise(h) for h in hypotheses]))
