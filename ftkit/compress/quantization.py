"""Quantised variants of a model measured side by side: size, memory, speed, perplexity
(paper §4.3, §8.3.5).

- :func:`compare` — the in-memory int8 variants of ``ftkit.models.quantize`` (notebook 03).
- :func:`quantize_weights` / :func:`quantisation_table` — fp32, bf16 and torchao's weight-only
  int8 and int4 of a checkpoint: size on disk, RSS measured in a fresh process, forward time,
  perplexity (notebooks/12_pruning_and_quantisation.ipynb).
"""
from __future__ import annotations

import copy
import ctypes
import gc
import json
import os
import subprocess
import sys

import pandas as pd
import torch
from torch import nn

from ftkit.core.config import ConfigError
from ftkit.evaluate.perplexity import perplexity
from ftkit.models.footprint import serialized_mb
from ftkit.models.generation import forward_ms, ms_per_token
from ftkit.models.registry import load_model, quantize


def compare(model, tokenizer, methods: list[str], texts: list[str], model_name: str = "",
            progress=None) -> tuple:
    """Quantise copies of ``model`` and measure each: storage MB, ms per token, perplexity.

    ``4bit``/``8bit`` (bitsandbytes, GPU only) quantise at load time, so those variants are
    loaded again from ``model_name``. Returns ``(table, variants)``: a DataFrame indexed by
    method, and the models.
    """
    loop = progress(methods, desc="quantise and measure") if progress else methods
    variants, rows = {}, {}
    for method in loop:
        variants[method] = variant = _variant(model, method, model_name)
        rows[method] = {"size_mb": serialized_mb(variant),
                        "ms_per_token": ms_per_token(variant, tokenizer, "Tell me about Paris.",
                                                     24),
                        "perplexity": perplexity(variant, tokenizer, texts)}
    return pd.DataFrame(rows).T, variants


def _variant(model, method: str, model_name: str):
    if method in ("4bit", "8bit"):
        if not model_name:
            raise ValueError(f"{method} quantises while loading: pass model_name")
        return load_model(model_name, quantization=method)
    if method == "none":
        return model
    on_cpu = copy.deepcopy(model).to("cpu")  # torch's int8 kernels here are CPU kernels
    return quantize(on_cpu, method)


# --- weight-only quantisation with torchao, measured on disk, in memory and in quality -------

TORCHAO_METHODS = ("int8", "int4")
FLOAT_METHODS = ("fp32", "bf16")
GPU_ONLY = {"nf4": "bitsandbytes 4-bit", "bnb-8bit": "bitsandbytes 8-bit",
            "4bit": "bitsandbytes 4-bit", "8bit": "bitsandbytes 8-bit"}


def check_method(method: str) -> str:
    """``method`` if this machine can quantise with it; one clear error otherwise."""
    if method in GPU_ONLY and not torch.cuda.is_available():
        raise ConfigError(f"quantisation {method!r} ({GPU_ONLY[method]}) needs a CUDA GPU and "
                          f"this machine has none; on a CPU choose one of "
                          f"{', '.join(FLOAT_METHODS + TORCHAO_METHODS)} (torchao)")
    if method not in FLOAT_METHODS + TORCHAO_METHODS + tuple(GPU_ONLY):
        raise ConfigError(f"quantisation {method!r} is unknown; choose one of "
                          f"{', '.join(FLOAT_METHODS + TORCHAO_METHODS + tuple(GPU_ONLY))}")
    return method


def _torchao():
    import torchao.quantization as tq
    from torchao.quantization.granularity import PerAxis, PerGroup

    return tq, PerAxis, PerGroup


def quantize_weights(model, method: str, group_size: int = 32):
    """A copy of ``model`` with its weights in ``method``'s format.

    ``fp32``/``bf16``: a cast. ``int8``: one scale per output row; the Linear layers become
    torchao's int8 weight-only tensors, whose CPU matmul reads the int8 weights directly
    (``_weight_int8pack_mm``), and the token embedding an int8 table read a row at a time
    (:class:`Int8RowEmbedding`); a head tied to the embedding stays tied and multiplies by the
    int8 table directly too (:class:`Int8TiedHead`). ``int4``: torchao weight-only int4, one
    scale per ``group_size`` weights, on every Linear layer and the embedding; each matmul
    dequantises its weight. Activations stay in float in both. ``nf4``/``bnb-8bit``
    (bitsandbytes) need a GPU: loading with ``models.load_model(..., quantization="4bit")`` is
    that path.
    """
    check_method(method)
    if method in GPU_ONLY:
        raise ConfigError(f"{method!r} quantises while loading: use models.load_model(name, "
                          "quantization='4bit' or '8bit') on a GPU")
    out = copy.deepcopy(model)
    if method in FLOAT_METHODS:
        return out.to(torch.float32 if method == "fp32" else torch.bfloat16)
    tq, per_axis, per_group = _torchao()
    head = out.get_output_embeddings()
    embedding = out.get_input_embeddings()
    tied = head is not None and head.weight is embedding.weight

    def linear(m, fqn):
        return isinstance(m, nn.Linear) and not (tied and m is head)

    if method == "int8":
        tq.quantize_(out, tq.Int8WeightOnlyConfig(), filter_fn=linear)
        table = tq.IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=per_axis(0))
        tq.quantize_(out, table, filter_fn=lambda m, fqn: isinstance(m, nn.Embedding))
    else:
        config = tq.IntxWeightOnlyConfig(weight_dtype=torch.int4,
                                         granularity=per_group(group_size))
        tq.quantize_(out, config, filter_fn=lambda m, fqn: linear(m, fqn)
                     or isinstance(m, nn.Embedding))
    if tied:  # the head reads the quantised embedding, as before it read the float one
        head.weight = embedding.weight
    if method == "int8":
        _read_int8_rows(out, head if tied else None)
    return out


def _int8_rows(weight) -> bool:
    """Whether ``weight`` is a symmetric int8 table with one scale per row (torchao's
    ``IntxUnpackedToInt8Tensor`` as :func:`quantize_weights` makes it for ``int8``)."""
    parts = [getattr(weight, name, None) for name in ("qdata", "scale", "zero_point")]
    return (all(isinstance(p, torch.Tensor) for p in parts) and parts[0].dtype == torch.int8
            and parts[1].numel() == parts[0].shape[0] and not parts[2].any())


class Int8RowEmbedding(nn.Embedding):
    """An embedding over an int8 table with one scale per row: only the rows looked up are
    dequantised (torchao's own lookup dequantises the whole table first: 113 MB of float per
    call for SmolLM2's 49152 × 576 table)."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        w = self.weight
        rows = nn.functional.embedding(ids, w.qdata).to(w.scale.dtype)
        scales = nn.functional.embedding(ids, w.scale.reshape(w.qdata.shape[0], 1))
        return (rows * scales).to(w.dtype)


class Int8TiedHead(nn.Linear):
    """A vocabulary head tied to an :class:`Int8RowEmbedding`'s table, multiplying by the int8
    weights directly (``torch._weight_int8pack_mm``) where that kernel applies: on the CPU,
    without gradients (it has no derivative). Elsewhere it dequantises, as torchao would."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if (x.requires_grad and torch.is_grad_enabled()) or x.device.type != "cpu" \
                or x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            return nn.functional.linear(x, w.dequantize().to(x.dtype), self.bias)
        flat = torch._weight_int8pack_mm(x.reshape(-1, x.shape[-1]).contiguous(), w.qdata,
                                         w.scale.reshape(-1).to(x.dtype))
        out = flat.reshape(*x.shape[:-1], flat.shape[-1])
        return out if self.bias is None else out + self.bias


def _read_int8_rows(model, tied_head) -> None:
    """The embedding (and a head tied to it) read the int8 table directly (the two classes
    above; the modules keep their weights, names and state dict)."""
    embedding = model.get_input_embeddings()
    if type(embedding) is nn.Embedding and _int8_rows(embedding.weight):
        embedding.__class__ = Int8RowEmbedding
        if tied_head is not None and type(tied_head) is nn.Linear:
            tied_head.__class__ = Int8TiedHead


def weight_storage_mb(model) -> float:
    """Bytes held by the model's parameters and buffers, each storage counted once (MB).
    Read from the tensors themselves, including quantised tensors' int data and scales."""
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        for inner in _inner_tensors(t):
            key = inner.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                total += inner.untyped_storage().nbytes()
    return total / 1e6


def _inner_tensors(t):
    if hasattr(t, "__tensor_flatten__"):
        names, _ = t.__tensor_flatten__()
        return [x for n in names for x in _inner_tensors(getattr(t, n))]
    return [t]


def resident_memory(folder: str, method: str, timeout: float = 600.0) -> dict:
    """Load the checkpoint in ``folder`` in a fresh Python process, quantise it with ``method``
    and measure that process: ``resident_mb`` (RSS once the model is built and has run one
    forward pass, over the RSS before loading) and ``peak_mb`` (peak RSS over the same
    baseline; int8/int4 pass through the fp32 weights on the way)."""
    check_method(method)
    cmd = [sys.executable, "-m", "ftkit.compress.quantization", str(folder), method]
    # large blocks get their own mappings, so freed fp32 weights leave the RSS at once instead
    # of staying behind as heap fragments
    env = {**os.environ, "TQDM_DISABLE": "1", "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {method} in a fresh process failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _status_mb(field: str) -> float:
    """A memory line of /proc/self/status in MB (``VmRSS`` now, ``VmHWM`` its peak; both
    belong to this process image, unlike ``ru_maxrss``, which a child inherits from its
    parent)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1e3
    raise RuntimeError(f"/proc/self/status has no {field}")


def _measure(folder: str, method: str) -> dict:
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    _torchao()
    MODEL_FOR_CAUSAL_LM_MAPPING[type(AutoConfig.from_pretrained(folder))]  # import its code now
    gc.collect()
    before = _status_mb("VmRSS")
    dtype = torch.bfloat16 if method == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    if method in TORCHAO_METHODS:
        model = quantize_weights(model, method)  # a copy: the mapped file is let go
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed fp32 pages back before reading RSS
    with torch.inference_mode():  # every weight is read once, so mapped file pages count too
        model(input_ids=torch.tensor([[1, 2, 3, 4]]))
    return {"method": method, "resident_mb": _status_mb("VmRSS") - before,
            "peak_mb": _status_mb("VmHWM") - before, "weights_mb": weight_storage_mb(model)}


def quantisation_table(model, tokenizer, folder: str, methods: list[str], texts: list[str],
                       timing_ids: torch.Tensor, rounds: int = 5, progress=None) -> tuple:
    """Each ``method`` applied to ``model`` (saved as a plain checkpoint in ``folder``),
    measured: size on disk (``torch.save`` of the state dict, MB), RSS in a fresh process
    (:func:`resident_memory`; ``weights_mb``: the weights' own bytes in that process, the rest
    of the resident figure is what loading and a forward pass left allocated), median forward
    time side by side, perplexity on ``texts``.
    Returns ``(table, variants)``."""
    for m in methods:
        check_method(m)
    loop = progress(methods, desc="quantise") if progress else methods
    variants = {m: quantize_weights(model, m).eval() for m in loop}
    ms = forward_ms(variants, timing_ids, rounds)
    rows = {}
    for m in (progress(methods, desc="measure") if progress else methods):
        memory = resident_memory(folder, m)
        rows[m] = {"disk_mb": serialized_mb(variants[m]), "resident_mb": memory["resident_mb"],
                   "weights_mb": memory["weights_mb"], "peak_rss_mb": memory["peak_mb"],
                   "forward_ms": ms[m],
                   "perplexity": perplexity(variants[m], tokenizer, texts)}
    return pd.DataFrame(rows).T, variants


if __name__ == "__main__":  # python -m ftkit.compress.quantization <folder> <method>
    print(json.dumps(_measure(sys.argv[1], sys.argv[2])))
