"""A Llama-family checkpoint written as one GGUF file (llama.cpp's format), with the ``gguf``
package, and read back through transformers' GGUF loader (paper §8.3.5).

:func:`export_gguf` writes the model's hyperparameters, its byte-level BPE tokenizer (tokens,
merges, special ids, chat template) and its weights: 2-D weights in the chosen block format
(``Q8_0``: 8-bit, 32 weights per block and one fp16 scale, 8.5 bits per weight; ``Q4_0``,
``Q4_1``, ``Q5_0``: 4 or 5 bits; ``F16``/``F32``: unquantised), norms in F32. In 4- and
5-bit files the token embedding (also the output head when tied) stays Q8_0, as llama.cpp's
own mixes keep their most sensitive tensor at higher precision. Query and key rows are
permuted into llama.cpp's rotary layout, which transformers' loader undoes.

The file is written beside the target under a temporary name and renamed when complete; an
existing target is refused. :func:`load_gguf` returns a plain transformers model (the loader
dequantises to float), so perplexity can be compared with the source.
Used in notebooks/12_pruning_and_quantisation.ipynb.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ftkit.core.config import ConfigError
from ftkit.evaluate.perplexity import perplexity

TYPES = ("Q8_0", "Q5_0", "Q4_1", "Q4_0", "F16", "F32")
LAYER_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
               "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
               "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
               "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def check_type(qtype: str) -> str:
    """``qtype`` if it is one this module writes; a clear error otherwise."""
    if qtype not in TYPES:
        raise ConfigError(f"GGUF type {qtype!r} is not written here; choose one of {list(TYPES)} "
                          "(the k-quants need llama.cpp's own quantiser)")
    return qtype


def gguf_name(hf_name: str) -> str:
    """The llama.cpp tensor name of a transformers Llama parameter."""
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight":
             "output_norm.weight", "lm_head.weight": "output.weight"}
    if hf_name in fixed:
        return fixed[hf_name]
    parts = hf_name.split(".")  # model.layers.<i>.<module...>.weight
    if parts[:2] != ["model", "layers"] or ".".join(parts[3:-1]) not in LAYER_NAMES:
        raise ConfigError(f"{hf_name!r} has no GGUF name (only Llama-family models are exported)")
    return f"blk.{parts[2]}.{LAYER_NAMES['.'.join(parts[3:-1])]}.{parts[-1]}"


def rotary_permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Rows of a query or key projection reordered from transformers' rotary layout (two
    halves per head) into llama.cpp's (interleaved pairs)."""
    dim = weight.shape[0] // n_head // 2
    return weight.reshape(n_head, 2, dim, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _tokenizer_fields(writer, tokenizer) -> None:
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec["model"]["type"] != "BPE":
        raise ConfigError("GGUF export writes byte-level BPE tokenizers (gpt2 style) only")
    vocab = tokenizer.get_vocab()
    tokens = [""] * len(vocab)
    for token, idx in vocab.items():
        tokens[idx] = token
    special = {t["id"] for t in spec.get("added_tokens", []) if t.get("special")}
    added = {t["id"] for t in spec.get("added_tokens", [])}
    types = [3 if i in special else 4 if i in added else 1 for i in range(len(tokens))]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for key, token_id in (("bos", tokenizer.bos_token_id), ("eos", tokenizer.eos_token_id),
                          ("unk", tokenizer.unk_token_id), ("pad", tokenizer.pad_token_id)):
        if token_id is not None:
            getattr(writer, {"bos": "add_bos_token_id", "eos": "add_eos_token_id",
                             "unk": "add_unk_token_id", "pad": "add_pad_token_id"}[key])(token_id)
    writer.add_add_bos_token(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def _tensor(weight: np.ndarray, qtype, name: str, types):
    from gguf import quants

    if weight.ndim < 2:
        return weight.astype(np.float32), types.F32
    if name == "token_embd.weight" and qtype not in (types.Q8_0, types.F16, types.F32):
        qtype = types.Q8_0
    if qtype == types.F32:
        return weight.astype(np.float32), qtype
    if qtype == types.F16:
        return weight.astype(np.float16), qtype
    return quants.quantize(weight.astype(np.float32), qtype), qtype


def export_gguf(model, tokenizer, target: str | Path, qtype: str = "Q8_0",
                name: str = "ftkit model") -> Path:
    """Write a plain (merged) Llama-family ``model`` and its tokenizer as one GGUF file."""
    import gguf

    check_type(qtype)
    target = Path(target)
    if target.exists():
        raise ConfigError(f"export target {str(target)!r} exists; choose a new file name or "
                          "remove it")
    cfg = model.config
    if cfg.model_type not in ("llama", "mistral"):
        raise ConfigError(f"GGUF export handles Llama-family models; got {cfg.model_type!r}")
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, "llama")
        writer.add_name(name)
        writer.add_context_length(cfg.max_position_embeddings)
        writer.add_embedding_length(cfg.hidden_size)
        writer.add_block_count(cfg.num_hidden_layers)
        writer.add_feed_forward_length(cfg.intermediate_size)
        writer.add_head_count(cfg.num_attention_heads)
        writer.add_head_count_kv(cfg.num_key_value_heads)
        writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
        writer.add_rope_freq_base(float(getattr(cfg, "rope_theta", None)
                                        or cfg.rope_parameters["rope_theta"]))
        writer.add_rope_dimension_count(head_dim)
        writer.add_vocab_size(cfg.vocab_size)
        writer.add_file_type(gguf.LlamaFileType[f"MOSTLY_{qtype}"] if qtype != "F32"
                             else gguf.LlamaFileType.ALL_F32)
        _tokenizer_fields(writer, tokenizer)
        state = model.state_dict()
        tied = getattr(cfg, "tie_word_embeddings", False)
        for hf_name, value in state.items():
            if tied and hf_name == "lm_head.weight":
                continue  # llama.cpp reuses token_embd when there is no output tensor
            weight = value.detach().to(torch.float32).cpu().numpy()
            if hf_name.endswith("self_attn.q_proj.weight"):
                weight = rotary_permute(weight, cfg.num_attention_heads)
            elif hf_name.endswith("self_attn.k_proj.weight"):
                weight = rotary_permute(weight, cfg.num_key_value_heads)
            out_name = gguf_name(hf_name)
            data, dtype = _tensor(weight, gguf.GGMLQuantizationType[qtype], out_name,
                                  gguf.GGMLQuantizationType)
            writer.add_tensor(out_name, data, raw_shape=data.shape if dtype in (
                gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16) else None,
                raw_dtype=dtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_gguf(path: str | Path) -> tuple:
    """``(model, tokenizer)`` read from a GGUF file by transformers (weights dequantised)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no GGUF file at {str(path)!r}")
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    return model, tokenizer


@torch.inference_mode()
def gguf_table(model, tokenizer, folder: str | Path, types: list[str], texts: list[str],
               input_ids: torch.Tensor, progress=None) -> pd.DataFrame:
    """``model`` written as one GGUF file per type in ``folder`` (which must not hold them
    yet), each read back by transformers: file size, perplexity on ``texts`` against the
    source's, and the largest logit difference on ``input_ids``."""
    for qtype in types:
        check_type(qtype)
    want = model(input_ids=input_ids).logits.float()
    rows = {"source": {"file_mb": float("nan"), "perplexity": perplexity(model, tokenizer, texts),
                       "max_logit_diff": 0.0}}
    for qtype in (progress(types, desc="GGUF") if progress else types):
        path = export_gguf(model, tokenizer, Path(folder) / f"model-{qtype}.gguf", qtype)
        loaded, loaded_tok = load_gguf(path)
        rows[qtype] = {"file_mb": path.stat().st_size / 1e6,
                       "perplexity": perplexity(loaded, loaded_tok, texts),
                       "max_logit_diff": float((loaded(input_ids=input_ids).logits.float()
                                                - want).abs().max())}
    table = pd.DataFrame(rows).T
    table["perplexity_change"] = table.perplexity / table.perplexity["source"] - 1
    return table


__all__ = ["TYPES", "check_type", "export_gguf", "gguf_name", "gguf_table", "load_gguf",
           "rotary_permute"]
