"""Padding-free training batches for decoder LMs on a CPU (paper §5.3, training setup).

A padded batch of instruction examples wastes a quarter or more of every matmul on pad tokens
(the examples of one batch differ in length), and PyTorch's CPU attention kernel is slow for
the short sequences of fine-tuning, in bf16 above all. Here each batch is flattened into one
row: the linear layers, norms and MLPs see only real tokens, and attention runs per example.

- :func:`flatten_collator`: concatenates a batch's examples into one row with per-example
  ``position_ids`` (so RoPE positions restart) and the example boundaries (``cu_seq_lens_q``).
- :func:`segment_attention`: registered with transformers as ``"ftkit_packed"``; given the
  boundaries it gathers the flat row into a small ``[examples, heads, longest, head_dim]`` block,
  applies causal attention with an additive mask (matmuls in the autocast dtype, softmax in fp32,
  as transformers' eager attention does), and scatters the result back. Without boundaries
  (evaluation, generation) it defers to transformers' SDPA, so outputs there are unchanged.

Inside one example the result equals the padded batch's at every real token: padding sits after
an example's last token, and causal attention never looks forward. Used by
ftkit.train.sft.make_trainer (``packing=True``, the default); measured in
``benchmarks/train_throughput.py``.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

NAME = "ftkit_packed"
_BOUNDARY_KEY = "cu_seq_lens_q"


@functools.lru_cache(maxsize=4)
def _gather_index(bounds: tuple[int, ...], device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(index, real, longest)`` for examples at ``bounds`` (cumulative lengths) in a flat row:
    ``index`` (``[examples * longest]``) says which flat token each slot of the padded block
    reads (pads read their example's first token); ``real`` lists the block slots that hold
    real tokens, in flat order. Computed once per batch, reused by every layer."""
    cu = torch.tensor(bounds, device=device)
    starts, lengths = cu[:-1], cu[1:] - cu[:-1]
    longest = int(lengths.max())
    pos = torch.arange(longest, device=device)
    valid = pos[None, :] < lengths[:, None]
    index = torch.where(valid, starts[:, None] + pos[None, :], starts[:, None])
    return index.flatten(), valid.flatten().nonzero().squeeze(1), longest


@functools.lru_cache(maxsize=8)
def _causal_bias(length: int, device) -> torch.Tensor:
    return torch.full((length, length), float("-inf"), device=device).triu_(1)


def segment_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                      scaling: float | None = None, **kwargs):
    """Causal attention within each example of a flattened batch (see the module docstring).

    ``query`` is ``[1, heads, tokens, head_dim]``, ``key``/``value`` ``[1, kv_heads, tokens,
    head_dim]`` (grouped-query attention is handled without repeating keys). Returns
    ``([1, tokens, heads, head_dim], None)`` like transformers' attention functions.
    """
    cu = kwargs.get(_BOUNDARY_KEY)
    if cu is None or query.shape[0] != 1 or key.shape[2] != query.shape[2]:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    index, real, length = _gather_index(tuple(cu.tolist()), query.device)
    n = index.numel() // length
    heads, kv_heads, dim = query.shape[1], key.shape[1], query.shape[3]
    group = heads // kv_heads

    def block(x):  # [1, h, T, d] -> [n, h, L, d], read in the projections' [T, h, d] layout
        return x[0].transpose(0, 1).index_select(0, index).view(n, length, -1, dim) \
            .transpose(1, 2)

    q = block(query).reshape(n, kv_heads, group * length, dim)  # queries grouped per key head
    k, v = block(key), block(value)
    scale = scaling if scaling is not None else dim ** -0.5
    scores = torch.matmul(q, k.transpose(-1, -2)).view(n, kv_heads, group, length, length)
    scores = scores * scale + _causal_bias(length, query.device)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    if dropout and module.training:
        probs = F.dropout(probs, p=dropout)
    out = torch.matmul(probs.view(n, kv_heads, group * length, length), v)
    out = out.view(n, heads, length, dim).transpose(1, 2).reshape(n * length, heads, dim)
    return out.index_select(0, real).unsqueeze(0), None


def _register() -> None:
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(NAME, segment_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def use_packed_attention(model) -> bool:
    """Switch a causal LM (or a peft model around one) to :func:`segment_attention`.

    Returns False, changing nothing, for other models (encoders attend both ways, so the causal
    mask would be wrong for them) and for architectures that refuse a registered attention;
    those train on padded batches.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not type(base).__name__.endswith("ForCausalLM"):
        return False
    return set_packed_attention(base)


def set_packed_attention(decoder) -> bool:
    """Set a causal decoder to :func:`segment_attention`: a ``...ForCausalLM`` or the language
    model inside a vision-language model. The caller vouches that it attends causally.

    Returns False, changing nothing, where the module has no attention to set or refuses a
    registered one.
    """
    config = getattr(decoder, "config", None)
    if config is None or not hasattr(decoder, "set_attn_implementation"):
        return False
    if getattr(config, "_attn_implementation", None) == NAME:
        return True
    _register()
    try:
        decoder.set_attn_implementation(NAME)
    except (ValueError, ImportError, NotImplementedError):
        return False
    return getattr(config, "_attn_implementation", None) == NAME


def flatten_collator():
    """A collator that puts a batch's examples end to end in one row, with restarting
    ``position_ids``, the boundaries :func:`segment_attention` needs, and each example's first
    label masked (it would otherwise be predicted from the previous example)."""
    from transformers import DataCollatorWithFlattening

    return DataCollatorWithFlattening(return_position_ids=True, return_flash_attn_kwargs=True)
