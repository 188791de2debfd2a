"""Speech data for ASR: clips Whisper can read, the jargon manifest, synthesis, augmentation.

The data steps of paper §11.4.3: :func:`load_manifest` reads the text manifest of
``data/asr_jargon/``, :func:`select` picks sentences per split, :func:`synthesize_rows` speaks
them with eSpeak NG (:mod:`ftkit.asr.speech`) and caches the audio; :func:`prepare_audio` and
:func:`check_transcript` turn bad input into 16 kHz mono clips or clear errors;
:func:`augment` adds noise at a chosen SNR or changes speed or pitch, and
:func:`augmentation_figure` shows the effect on the waveform and the log-mel spectrogram.
Training and scoring live in :mod:`ftkit.asr.whisper`.

Used in notebooks/16_whisper_asr.ipynb.
"""
from __future__ import annotations

import hashlib
import json
import unicodedata
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ftkit.asr import speech
from ftkit.asr.speech import resample
from ftkit.core.config import ConfigError
from ftkit.models.packs.core import cache_root

SAMPLE_RATE = 16_000  # Whisper's feature extractor expects 16 kHz mono
MAX_SECONDS = 30.0  # Whisper's encoder sees one 30 s window (3000 mel frames)
SILENCE_PEAK = 1e-4  # a clip whose loudest sample is below this is treated as silent
MAX_LABEL_TOKENS = 440  # decoder positions (448) minus the prompt tokens


# ---------------------------------------------------------------- bad input

def prepare_audio(audio: Any, sample_rate: int) -> np.ndarray:
    """A clip as Whisper needs it: float32 mono at 16 kHz, at most 30 s, not silent.

    Handled: integer PCM (scaled to [-1, 1]), stereo or multi-channel (averaged to mono,
    channels on either axis), any sample rate (resampled), peaks above 1 (scaled down).
    Rejected with a ValueError that says why: empty, silent, non-finite, over 30 s.
    """

    x = np.asarray(audio)
    if x.ndim == 2:  # channels are the short axis: (n, 2) or (2, n)
        x = x.mean(axis=int(np.argmin(x.shape))) if min(x.shape) <= 8 else None
    if x is None or x.ndim != 1:
        raise ValueError(f"audio of shape {np.shape(audio)}: expected mono (n,) or a few "
                         "channels (n, c) / (c, n)")
    if np.issubdtype(np.asarray(audio).dtype, np.integer):
        x = x / float(np.iinfo(np.asarray(audio).dtype).max)
    x = x.astype(np.float32)
    if x.size == 0:
        raise ValueError("audio clip is empty (0 samples)")
    if not np.all(np.isfinite(x)):
        raise ValueError("audio clip contains NaN or infinite samples")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate={sample_rate}: must be positive")
    if sample_rate != SAMPLE_RATE:
        x = resample(x, int(sample_rate), SAMPLE_RATE)
    seconds = len(x) / SAMPLE_RATE
    if seconds > MAX_SECONDS:
        raise ValueError(f"audio clip lasts {seconds:.1f} s; Whisper takes at most "
                         f"{MAX_SECONDS:.0f} s per clip: split it into shorter segments")
    peak = float(np.abs(x).max())
    if peak < SILENCE_PEAK:
        raise ValueError(f"audio clip is silent (peak amplitude {peak:.1e} < {SILENCE_PEAK})")
    return x / peak if peak > 1.0 else x


def check_transcript(tokenizer, text: str) -> str:
    """``text`` if the tokenizer can encode it and decode it back unchanged, else ValueError.

    Refused: empty text, control characters, unpaired surrogates (not encodable as UTF-8),
    text that does not survive an encode/decode round trip, and text longer than the
    decoder's positions.
    """
    if not text or not text.strip():
        raise ValueError("transcript is empty")
    bad = sorted({c for c in text if unicodedata.category(c) in ("Cc", "Cs", "Co", "Cn")})
    if bad:
        raise ValueError(f"transcript {text[:40]!r} has characters the tokenizer cannot "
                         f"encode: {[f'U+{ord(c):04X}' for c in bad]}")
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if tokenizer.decode(ids) != text:
        raise ValueError(f"transcript {text[:40]!r} does not survive tokenisation: it decodes "
                         f"as {tokenizer.decode(ids)[:40]!r}")
    if len(ids) > MAX_LABEL_TOKENS:
        raise ValueError(f"transcript has {len(ids)} tokens; the decoder takes at most "
                         f"{MAX_LABEL_TOKENS}")
    return text


# ---------------------------------------------------------------- the data set

def load_manifest(path: str | Path) -> list[dict]:
    """The clips of a manifest (``data/asr_jargon/make_manifest.py``), one dict per row."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; build it with "
                                "`python data/asr_jargon/make_manifest.py`")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    need = {"id", "sentence_id", "text", "kind", "split", "voice", "speed", "pitch"}
    missing = need - set(rows[0]) if rows else need
    if missing:
        raise ValueError(f"{path}: rows lack {sorted(missing)}")
    return rows


def select(rows: list[dict], kind: str, split: str, n_sentences: int, seed: int = 0,
           renderings: int = 1, context: str | None = None) -> list[dict]:
    """Clips of ``n_sentences`` random sentences of one kind and split, ``renderings`` each.

    ``context`` keeps only domain test sentences whose frame is ``"known"`` from training or
    ``"new"``. Domain sentences are dealt round-robin over their medical terms, so a small
    selection still covers as many terms as it can (every term once before any twice).
    """
    by_sentence: dict[str, list[dict]] = {}
    for r in rows:
        if r["kind"] == kind and r["split"] == split and context in (None, r.get("context")):
            by_sentence.setdefault(r["sentence_id"], []).append(r)
    if n_sentences > len(by_sentence):
        raise ConfigError(f"asked for {n_sentences} {kind} {split} sentences"
                          f"{f' ({context} context)' if context else ''}; the manifest "
                          f"holds {len(by_sentence)}")
    rng = np.random.default_rng(seed)
    queues: dict[str, list[str]] = {}
    for sid in sorted(by_sentence):
        term = ",".join(by_sentence[sid][0].get("terms") or [sid])
        queues.setdefault(term, []).append(sid)
    order = [queues[t] for t in sorted(queues)]
    for queue in order:
        rng.shuffle(queue)
    rng.shuffle(order)
    dealt = [q[i] for i in range(max(map(len, order))) for q in order if i < len(q)]
    return [c for sid in sorted(dealt[:n_sentences]) for c in by_sentence[sid][:renderings]]


def audio_cache_dir() -> Path:
    """Where synthesised clips are cached: ``<ftkit cache>/asr_audio``."""
    return cache_root() / "asr_audio"


def _clip_key(row: dict, backend: str) -> str:
    spec = json.dumps([row["text"], row["voice"], row["speed"], row["pitch"], backend])
    return hashlib.sha1(spec.encode()).hexdigest()[:20]


def synthesize_rows(rows: list[dict], progress: Callable | None = None) -> list[np.ndarray]:
    """16 kHz float32 audio of every row, spoken by eSpeak NG; cached as int16 .npy files."""
    backend = speech.available_backend()
    if backend is None:
        raise RuntimeError(speech.INSTALL_HINT)
    folder = audio_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for row in (progress or (lambda x, **k: x))(rows, desc="synthesising"):
        path = folder / f"{_clip_key(row, backend)}.npy"
        if path.is_file():
            pcm = np.load(path, allow_pickle=False)
        else:
            audio = speech.synthesize(row["text"], row["voice"], row["speed"], row["pitch"],
                                      SAMPLE_RATE, backend)
            pcm = np.round(audio * 32767).astype(np.int16)
            np.save(path, pcm, allow_pickle=False)
        clips.append(prepare_audio(pcm, SAMPLE_RATE))
    return clips


def split_summary(splits: dict[str, list[dict]]):
    """Clips, sentences and distinct medical terms per split; shared sentences are an error."""
    import pandas as pd

    seen: dict[str, str] = {}
    for name, rows in splits.items():
        for r in rows:
            other = seen.setdefault(r["sentence_id"], name)
            if other != name:
                raise ValueError(f"sentence {r['text']!r} is in both {other} and {name}")
    return pd.DataFrame([{"split": name, "clips": len(rows),
                          "sentences": len({r["sentence_id"] for r in rows}),
                          "medical_terms": len({t for r in rows for t in r.get("terms", [])})}
                         for name, rows in splits.items()]).set_index("split")


# ---------------------------------------------------------------- augmentation (§11.4.3)

def augment(audio: np.ndarray, rng: np.random.Generator, snrs: list[float],
            speed_delta: float, pitch_semitones: float) -> tuple[np.ndarray, str]:
    """One random augmentation of a clip: noise, speed or pitch; returns it and its name."""
    choice = rng.integers(3)
    if choice == 0:
        snr, colour = float(rng.choice(snrs)), str(rng.choice(["white", "pink"]))
        return speech.add_noise(audio, snr, rng, colour), f"{colour} noise {snr:g} dB"
    if choice == 1 and speed_delta > 0:
        factor = float(rng.uniform(1 - speed_delta, 1 + speed_delta))
        return speech.change_speed(audio, factor), f"speed x{factor:.2f}"
    semitones = float(rng.uniform(-pitch_semitones, pitch_semitones))
    return speech.shift_pitch(audio, semitones), f"pitch {semitones:+.1f} st"


def augment_clips(clips: list[np.ndarray], share: float, seed: int, snrs: list[float],
                  speed_delta: float, pitch_semitones: float) -> tuple[list, list[str]]:
    """Augment a random ``share`` of the clips (others unchanged); returns clips and labels."""
    rng = np.random.default_rng(seed)
    out, labels = [], []
    for clip in clips:
        if rng.random() < share:
            clip, label = augment(clip, rng, snrs, speed_delta, pitch_semitones)
        else:
            label = "clean"
        out.append(prepare_audio(clip, SAMPLE_RATE))
        labels.append(label)
    return out, labels


def log_mel(processor, audio: np.ndarray) -> np.ndarray:
    """Whisper's log-mel features of a clip, cut to its length: (80, frames)."""
    feats = processor.feature_extractor(audio, sampling_rate=SAMPLE_RATE,
                                        return_tensors="np").input_features[0]
    return feats[:, :int(np.ceil(len(audio) / 160))]  # 160 samples (10 ms) per frame


def augmentation_figure(processor, variants: dict[str, np.ndarray]):
    """Waveform (top) and log-mel spectrogram (bottom) of each named variant of a clip."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(variants), figsize=(3.4 * len(variants), 4.6),
                             squeeze=False)
    for col, (name, audio) in enumerate(variants.items()):
        axes[0, col].plot(np.arange(len(audio)) / SAMPLE_RATE, audio, lw=0.4)
        axes[0, col].set(title=name, xlabel="seconds", ylim=(-1, 1))
        axes[1, col].imshow(log_mel(processor, audio), origin="lower", aspect="auto",
                            vmin=-1, vmax=1.5, cmap="magma")
        axes[1, col].set(xlabel="10 ms frames", ylabel="mel bin" if col == 0 else "")
    fig.tight_layout()
    return fig
