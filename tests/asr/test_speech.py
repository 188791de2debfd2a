"""Tests of ftkit.asr.speech: audio format, sample rate, speed, resampling and the no-backend error."""
import numpy as np
import pytest

from ftkit.asr import speech

SENTENCE = "The quick brown fox jumps over the lazy dog."
BACKENDS = speech.available_backends()
needs_backend = pytest.mark.skipif(not BACKENDS, reason=speech.INSTALL_HINT)


@needs_backend
@pytest.mark.parametrize("backend", BACKENDS)
def test_output_is_float32_mono_in_range(backend):
    audio = speech.synthesize(SENTENCE, backend=backend)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.abs(audio).max() <= 1.0
    assert np.abs(audio).max() > 0.05  # actual speech, not silence


@needs_backend
def test_sample_rate_sets_length_and_duration_is_plausible():
    at16 = speech.synthesize(SENTENCE, sample_rate=16000)
    at8 = speech.synthesize(SENTENCE, sample_rate=8000)
    assert abs(len(at16) / len(at8) - 2.0) < 0.01
    seconds = len(at16) / 16000
    assert 1.5 < seconds < 6.0, seconds  # nine words at 160 words per minute


@needs_backend
def test_faster_speech_is_shorter():
    slow = speech.synthesize(SENTENCE, speed=100)
    fast = speech.synthesize(SENTENCE, speed=250)
    assert len(slow) > 1.5 * len(fast)


@pytest.mark.skipif(len(BACKENDS) < 2, reason="needs both espeak-ng and espeakng-loader")
def test_backends_produce_the_same_speech():
    cli = speech.synthesize(SENTENCE, backend=speech.CLI)
    lib = speech.synthesize(SENTENCE, backend=speech.LOADER)
    # the program pads trailing silence; the spoken part has nearly the same length
    last_sound = [np.flatnonzero(np.abs(audio) > 0.01)[-1] for audio in (cli, lib)]
    assert abs(last_sound[0] - last_sound[1]) < 1600  # 0.1 s


def test_no_backend_raises_with_install_instructions(monkeypatch):
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    monkeypatch.setattr(speech, "_loader_library_path", lambda: None)
    assert speech.available_backend() is None
    with pytest.raises(RuntimeError) as err:
        speech.synthesize("hello")
    message = str(err.value)
    for hint in ("apt-get install espeak-ng", "conda install -c conda-forge espeak-ng",
                 "pip install espeakng-loader"):
        assert hint in message


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError):
        speech.synthesize("   ")
    with pytest.raises(ValueError):
        speech.synthesize("hello", backend="festival")


def test_resample_keeps_a_tone_and_removes_what_cannot_be_represented():
    t_in = np.arange(22050) / 22050
    tone = speech.resample(np.sin(2 * np.pi * 1000 * t_in).astype(np.float32), 22050, 16000)
    assert tone.dtype == np.float32 and len(tone) == 16000
    expected = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    assert np.abs(tone[100:-100] - expected[100:-100]).max() < 1e-3
    # 10 kHz is above the 8 kHz Nyquist limit of 16 kHz audio: it must be filtered, not aliased
    high = speech.resample(np.sin(2 * np.pi * 10000 * t_in).astype(np.float32), 22050, 16000)
    assert np.sqrt(np.mean(high[100:-100] ** 2)) < 1e-3


@needs_backend
@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_voice_is_a_clear_error(backend):
    with pytest.raises(RuntimeError, match="voice"):
        speech.synthesize("hello", voice="xx-no-such-voice", backend=backend)
