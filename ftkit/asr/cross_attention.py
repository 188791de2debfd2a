"""Whisper's decoder cross-attention computed on the label side of cached encoder states.

Fine-tuning the decoder on cached encoder states (``ftkit.asr.whisper.train_decoder``) projects
keys and values over all 1500 encoder positions in every decoder layer at every step, for
labels of a dozen tokens. :func:`absorbed_cross_attention` moves the key and value projections
onto the queries and the mixture instead (the same function, fewer multiply-adds for short
labels); :class:`AbsorbedCrossAttention` switches a model to it for the batches where it costs
less. Used by notebooks/16_whisper_asr.ipynb through ``train_decoder``; measured in
``benchmarks/whisper_step.py``.
"""
from __future__ import annotations

import functools

import torch

from ftkit.train.speed.frozen_linear import RecastLinear


def _frozen_or_plain_weight(linear: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """The weight ``linear`` would multiply ``x`` by: the speed layer's held bf16 copy of a
    frozen weight where it holds one (``ftkit.train.speed.frozen_linear``), else the weight."""
    return linear._weight(x) if isinstance(linear, RecastLinear) else linear.weight


def absorbed_cross_attention(attn, hidden: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """Whisper's decoder cross-attention with the key and value projections moved onto the
    label side: the function ``attn(hidden, key_value_states=states)`` computes without a cache.

    For one head with queries ``q`` (T, dh), encoder states ``S`` (1500, d) and that head's rows
    ``W_k``, ``W_v`` (dh, d) of the projections, associativity and softmax rows that sum to 1 give

        softmax(q (S W_kᵀ)ᵀ) (S W_vᵀ + b_v) = softmax((q W_k) Sᵀ) S W_vᵀ + b_v.

    The left side projects all 1500 positions: 2 · 1500 · d² multiply-adds per clip and layer
    (442 M for tiny, d = 384), with or without gradients. The right side reads ``S`` for the
    scores and for the mixture: 2 · H · T · d · 1500 (97 M for H = 6 heads and T = 14 label
    tokens), as much again in backward, and holds no (B, H, 1500, dh) keys and values. Its
    forward needs fewer multiply-adds while H · T < d, i.e. for labels shorter than the head
    width dh = d / H = 64, where :class:`AbsorbedCrossAttention` takes it. One tiny layer, batch
    16, forward and backward in bf16 on one core: 43 ms against 131 ms for Whisper's attention
    at T = 14, 256 against 365 ms at T = 48, 308 against 247 ms at T = 64.

    Args:
        attn: a decoder layer's ``encoder_attn`` (``WhisperAttention``) whose key and value
            projections are plain Linear layers (frozen or trained, not adapted).
        hidden: (B, T, d) decoder states after the cross-attention layer norm.
        states: (B, 1500, d) encoder output.
    Returns: (B, T, d), after ``attn.out_proj``.
    """
    b, t, d = hidden.shape
    h, dh = attn.num_heads, attn.head_dim
    q = (attn.q_proj(hidden) * attn.scaling).view(b, t, h, dh).transpose(1, 2)  # (B, H, T, dh)
    w_k, w_v = (_frozen_or_plain_weight(p, hidden).view(h, dh, d)
                for p in (attn.k_proj, attn.v_proj))
    qk = torch.einsum("bhtk,hkd->bhtd", q, w_k).reshape(b, h * t, d)  # (B, H·T, d)
    states = states.to(qk.dtype)
    probs = torch.softmax(torch.bmm(qk, states.transpose(1, 2)).float(), dim=-1)  # (B, H·T, S)
    mixed = torch.bmm(probs.to(qk.dtype), states).view(b, h, t, d)  # (B, H, T, d)
    out = torch.einsum("bhtd,hkd->bthk", mixed, w_v).reshape(b, t, d)  # heads side by side
    if attn.v_proj.bias is not None:
        out = out + attn.v_proj.bias.to(out.dtype)
    return attn.out_proj(out)


class AbsorbedCrossAttention:
    """Switches a Whisper model's decoder cross-attention to :func:`absorbed_cross_attention`
    for the batches where it costs less, and back on exit (a context manager).

    Taken: no cache (training and teacher-forced loss), no attention mask or weights asked
    for, no attention dropout while training, plain key and value layers, labels shorter than
    the head width. Everything else (generation with its cache, long labels) runs Whisper's own
    attention. ``enabled=False`` changes nothing.
    """

    def __init__(self, model, enabled: bool = True):
        self.layers = [m for name, m in model.named_modules()
                       if name.endswith("encoder_attn")] if enabled else []

    def __enter__(self):
        for attn in self.layers:
            attn.forward = functools.partial(self._forward, attn, attn.forward)
        return self

    def __exit__(self, *exc):
        for attn in self.layers:
            del attn.forward  # the class's own forward again

    @staticmethod
    def _forward(attn, original, hidden_states, key_value_states=None, past_key_values=None,
                 attention_mask=None, output_attentions=False, **kwargs):
        plain = all(isinstance(p, torch.nn.Linear) for p in (attn.k_proj, attn.v_proj))
        if (key_value_states is None or past_key_values is not None or attention_mask is not None
                or output_attentions or (attn.training and attn.dropout > 0) or not plain
                or hidden_states.shape[1] >= attn.head_dim):
            return original(hidden_states, key_value_states=key_value_states,
                            past_key_values=past_key_values, attention_mask=attention_mask,
                            output_attentions=output_attentions, **kwargs)
        return absorbed_cross_attention(attn, hidden_states, key_value_states), None


__all__ = ["AbsorbedCrossAttention", "absorbed_cross_attention"]
