"""Offline English speech synthesis with eSpeak NG, for ASR tests and notebooks.

Two backends, tried in order:

* ``espeakng-loader``: the libespeak-ng shared library and voice data bundled by the PyPI
  package ``espeakng-loader`` (an ftkit dependency), driven through ctypes;
* ``espeak-ng``: the command-line program (``apt-get install espeak-ng`` or conda-forge).

eSpeak renders 16-bit mono audio at 22050 Hz; :func:`synthesize` converts it to float32 and
resamples it with a Kaiser-windowed sinc polyphase filter written in numpy (:func:`resample`).

Used in tests/test_whisper_ct2.py, tests/test_speech.py and the ASR notebooks.
"""
from __future__ import annotations

import ctypes
import functools
import importlib.util
import math
import shutil
import subprocess
import tempfile
import threading
import wave
from pathlib import Path

import numpy as np

CLI = "espeak-ng"
LOADER = "espeakng-loader"
INSTALL_HINT = ("no speech backend found. Install one of: `apt-get install espeak-ng` "
                "(Debian/Ubuntu), `conda install -c conda-forge espeak-ng`, or "
                "`pip install espeakng-loader`.")

# constants of eSpeak NG's public C API (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_RATE, _PITCH = 1, 3
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.c_void_p)
_LIB_NAMES = ("libespeak-ng.so", "libespeak-ng.dylib", "espeak-ng.dll")  # Linux, macOS, Windows
_LIB_LOCK = threading.Lock()  # libespeak-ng keeps global state: one synthesis at a time


def _loader_library_path() -> Path | None:
    """The shared library shipped by ``espeakng-loader``, found without importing the package."""
    spec = importlib.util.find_spec("espeakng_loader")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0])
    libs = [folder / name for name in _LIB_NAMES if (folder / name).is_file()]
    return libs[0] if libs and (folder / "espeak-ng-data").is_dir() else None


def available_backends() -> list[str]:
    """Names of the usable backends, in the order :func:`synthesize` tries them.

    The pip-pinned library comes first: the same eSpeak version on every machine gives the
    same audio, hence the same transcripts and WERs in every run.
    """
    found = [LOADER] if _loader_library_path() is not None else []
    return found + ([CLI] if shutil.which(CLI) else [])


def available_backend() -> str | None:
    """Name of the first usable backend (``"espeak-ng"`` or ``"espeakng-loader"``), or None."""
    backends = available_backends()
    return backends[0] if backends else None


def _synth_cli(text: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    """Run the espeak-ng program into a temporary WAV file (stdout WAVs carry no valid length)."""
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = Path(tmp) / "speech.wav"
        cmd = [CLI, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav_path), "--stdin"]
        proc = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True)
        if proc.returncode != 0 or not wav_path.is_file():
            raise RuntimeError(f"espeak-ng failed: {proc.stderr.decode(errors='replace').strip()}")
        with wave.open(str(wav_path), "rb") as wav:
            if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                raise RuntimeError("espeak-ng wrote a WAV that is not 16-bit mono")
            frames = wav.readframes(wav.getnframes())
            return np.frombuffer(frames, dtype="<i2").copy(), wav.getframerate()


@functools.lru_cache(maxsize=1)
def _loader_library() -> tuple[ctypes.CDLL, int]:
    """Load and initialise espeakng-loader's libespeak-ng once; returns it and its sample rate."""
    path = _loader_library_path()
    if path is None:
        raise RuntimeError(INSTALL_HINT)
    lib = ctypes.CDLL(str(path))
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    # the data path is the folder that contains espeak-ng-data
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(path.parent).encode(),
                                 _INITIALIZE_DONT_EXIT)
    if rate <= 0:
        raise RuntimeError(f"libespeak-ng from espeakng-loader failed to initialise ({rate})")
    return lib, rate


def _synth_library(text: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    """Synthesise through libespeak-ng's synchronous API, collecting the callback's blocks."""
    blocks: list[np.ndarray] = []

    def collect(wav, count, _events):
        if wav and count > 0:
            blocks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0  # 0 = keep going

    callback = _SYNTH_CALLBACK(collect)  # referenced until synthesis ends, so it is not collected
    data = text.encode("utf-8")
    with _LIB_LOCK:
        lib, rate = _loader_library()
        lib.espeak_SetSynthCallback(callback)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"libespeak-ng has no voice {voice!r}")
        lib.espeak_SetParameter(_RATE, int(speed), 0)
        lib.espeak_SetParameter(_PITCH, int(pitch), 0)
        err = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
    if err != 0:
        raise RuntimeError(f"libespeak-ng synthesis failed (error {err})")
    return (np.concatenate(blocks) if blocks else np.zeros(0, np.int16)), rate


_BACKENDS = {CLI: _synth_cli, LOADER: _synth_library}


def resample(x: np.ndarray, src_rate: int, dst_rate: int, half_width: int = 32,
             beta: float = 8.6, rolloff: float = 0.95) -> np.ndarray:
    """Band-limited polyphase resampling with a Kaiser-windowed sinc (float32 in, float32 out).

    The ratio is reduced to ``up/down``; output sample ``n`` sits at input time ``n*down/up``,
    so only ``up`` distinct filter phases exist and are computed once.
    """
    if src_rate == dst_rate:
        return x.astype(np.float32, copy=True)
    g = math.gcd(src_rate, dst_rate)
    up, down = dst_rate // g, src_rate // g
    cutoff = rolloff * min(1.0, up / down)  # as a fraction of the input Nyquist frequency
    taps = np.arange(-half_width + 1, half_width + 1)
    dist = taps[None, :] - np.arange(up)[:, None] / up
    window = np.i0(beta * np.sqrt(np.clip(1 - (dist / half_width) ** 2, 0, None))) / np.i0(beta)
    filt = cutoff * np.sinc(cutoff * dist) * window
    filt /= filt.sum(axis=1, keepdims=True)  # unit gain at DC for every phase
    n_out = -(-len(x) * up // down)
    padded = np.pad(x.astype(np.float64), (half_width, half_width + 1))
    out = np.empty(n_out, dtype=np.float32)
    for start in range(0, n_out, 16384):  # blocks keep the gathered matrix small
        n = np.arange(start, min(start + 16384, n_out))
        base, phase = np.divmod(n * down, up)
        window_rows = padded[base[:, None] + taps + half_width]
        out[start:start + len(n)] = np.sum(window_rows * filt[phase], axis=1)
    return out


def synthesize(text: str, voice: str = "en-us", speed: int = 160, pitch: int = 50,
               sample_rate: int = 16000, backend: str | None = None) -> np.ndarray:
    """Speak ``text`` and return float32 mono audio in [-1, 1] at ``sample_rate`` Hz.

    Args:
        voice: an eSpeak NG voice, e.g. ``"en-us"``, ``"en-gb"``, ``"en-us+f3"``.
        speed: words per minute (eSpeak's ``-s``; 80-450).
        pitch: 0-100 (eSpeak's ``-p``).
        backend: force ``"espeak-ng"`` or ``"espeakng-loader"``; default is the first available.

    Raises:
        RuntimeError: no backend is installed (the message says how to install one).
    """
    if not text.strip():
        raise ValueError("text is empty")
    name = backend or available_backend()
    if name is None:
        raise RuntimeError(INSTALL_HINT)
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {sorted(_BACKENDS)}")
    pcm, rate = _BACKENDS[name](text, voice, speed, pitch)
    audio = resample(pcm.astype(np.float32) / 32768.0, rate, sample_rate)
    return np.clip(audio, -1.0, 1.0)


# ---------------------------------------------------------------- augmentation (paper §11.4.3)

def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator,
              colour: str = "white") -> np.ndarray:
    """``audio`` plus Gaussian noise at a signal-to-noise ratio of ``snr_db`` decibels.

    The ratio is between the mean power of the whole clip and of the noise, so
    ``10·log10(P_signal / P_noise) = snr_db``; ``colour="pink"`` shapes the noise to 1/f
    power (more low-frequency rumble, closer to room and traffic noise than white hiss).
    """
    if colour not in ("white", "pink"):
        raise ValueError(f"colour={colour!r}; choose 'white' or 'pink'")
    noise = rng.standard_normal(len(audio))
    if colour == "pink":  # divide the spectrum's amplitude by sqrt(f): power falls as 1/f
        spectrum = np.fft.rfft(noise)
        spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
        spectrum[0] = 0
        noise = np.fft.irfft(spectrum, n=len(audio))
    power = float(np.mean(audio.astype(np.float64) ** 2))
    noise *= np.sqrt(power / 10 ** (snr_db / 10) / max(float(np.mean(noise ** 2)), 1e-20))
    return np.clip(audio + noise, -1.0, 1.0).astype(np.float32)


def change_speed(audio: np.ndarray, factor: float, sample_rate: int = 16000) -> np.ndarray:
    """Play ``audio`` ``factor`` times faster, tape-style: duration ÷ factor, pitch × factor.

    The clip is read as if sampled at ``factor × sample_rate`` and resampled to
    ``sample_rate`` (the speed perturbation of Kaldi recipes).
    """
    if not 0.25 <= factor <= 4.0:
        raise ValueError(f"speed factor {factor} is outside 0.25-4")
    return resample(audio, int(round(sample_rate * factor)), sample_rate)


def time_stretch(audio: np.ndarray, rate: float, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Phase-vocoder time stretch: duration ÷ ``rate``, pitch unchanged.

    STFT frames are read at fractional steps of ``rate``; magnitudes are interpolated
    between neighbours and each bin's phase advances by its measured instantaneous
    frequency, so partials stay continuous across the re-spaced frames.
    """
    window = np.hanning(n_fft)
    half = n_fft // 2  # centred frames: the first one already holds signal, so its phases are real
    padded = np.pad(audio.astype(np.float64), (half, n_fft))
    starts = np.arange(0, len(padded) - n_fft, hop)
    spec = np.fft.rfft(padded[starts[:, None] + np.arange(n_fft)] * window, axis=1)  # (T, F)
    steps = np.arange(0, len(spec) - 1, rate)
    i, frac = steps.astype(int), (steps % 1)[:, None]
    mags = (1 - frac) * np.abs(spec[i]) + frac * np.abs(spec[i + 1])
    expected = 2 * np.pi * hop * np.arange(spec.shape[1]) / n_fft  # phase advance per hop
    delta = np.angle(spec[i + 1]) - np.angle(spec[i]) - expected
    delta -= 2 * np.pi * np.round(delta / (2 * np.pi))  # wrap to [-pi, pi]
    phase = np.angle(spec[0]) + np.vstack([np.zeros_like(expected),
                                           np.cumsum(expected + delta, axis=0)[:-1]])
    frames = np.fft.irfft(mags * np.exp(1j * phase), n=n_fft, axis=1) * window
    out = np.zeros(len(frames) * hop + n_fft)
    norm = np.zeros_like(out)
    for k, frame in enumerate(frames):  # overlap-add, normalised by the summed window power
        out[k * hop:k * hop + n_fft] += frame
        norm[k * hop:k * hop + n_fft] += window ** 2
    out = out / np.maximum(norm, 1e-3)
    n_out = int(round(len(audio) / rate))
    return out[half:half + n_out].astype(np.float32)


def shift_pitch(audio: np.ndarray, semitones: float, sample_rate: int = 16000) -> np.ndarray:
    """Raise (or lower) the pitch by ``semitones`` and keep the duration.

    Stretch the clip ``2^(s/12)`` times longer with :func:`time_stretch`, then play it that
    much faster with :func:`change_speed`: tempo returns to the original, pitch moves.
    """
    ratio = 2.0 ** (semitones / 12)
    shifted = change_speed(time_stretch(audio, 1 / ratio), ratio, sample_rate)
    out = np.zeros(len(audio), np.float32)
    out[:min(len(audio), len(shifted))] = shifted[:len(audio)]
    # phase-vocoded speech comes out quieter (neighbouring bins lose phase coherence):
    # restore the input's RMS level so the shift changes pitch, not loudness
    rms_in, rms_out = np.sqrt(np.mean(audio ** 2)), np.sqrt(np.mean(out ** 2))
    return np.clip(out * (rms_in / rms_out if rms_out > 0 else 1.0), -1.0, 1.0)
