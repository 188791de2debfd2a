"""Post-training weight quantisation in memory: int8 weight-only and int8 dynamic (paper §4.3).

- ``int8-weight``: each Linear weight row is stored as int8 with one fp32 scale (absmax / 127)
  and expanded back to float in the forward pass. Activations stay in float, so outlier
  activation features of LLMs are untouched.
- ``int8-dynamic``: torch's eager dynamic quantisation; weights int8 per channel and the
  activations quantised on the fly per tensor, which LLM outlier features can hurt.
Used by ``ftkit.models.registry.load_model(quantization=...)`` and ftkit.compress.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn


class Int8WeightLinear(nn.Module):
    """A Linear layer whose weight is int8 ``(out, in)`` with a per-row fp32 scale ``(out, 1)``."""
    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
        self.register_buffer("qweight", torch.round(w / scale).to(torch.int8))
        self.register_buffer("scale", scale)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().float(),
                                                                  requires_grad=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.qweight.to(x.dtype) * self.scale.to(x.dtype)
        return nn.functional.linear(x, weight, None if self.bias is None else self.bias.to(x.dtype))


def _swap_linears(module: nn.Module, make) -> int:
    swapped = 0
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, make(child))
            swapped += 1
        else:
            swapped += _swap_linears(child, make)
    return swapped


def int8_weight_only(model: nn.Module) -> nn.Module:
    """Replace every Linear (except a head tied to the embeddings) by Int8WeightLinear."""
    tied = getattr(model, "lm_head", None) if getattr(model.config, "tie_word_embeddings",
                                                      False) else None
    head = model.lm_head if tied is not None else None
    if head is not None:
        model.lm_head = nn.Identity()  # keep the tied head (it is the embedding matrix)
    _swap_linears(model, Int8WeightLinear)
    if head is not None:
        model.lm_head = head
    return model


def int8_dynamic(model: nn.Module) -> nn.Module:
    """torch's dynamic int8 quantisation of every Linear (per-channel weights)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch marks its eager int8 path as deprecated
        return quantize_dynamic(model.float(), {nn.Linear: per_channel_dynamic_qconfig},
                                dtype=torch.qint8)


METHODS = {"int8-weight": int8_weight_only, "int8-dynamic": int8_dynamic}
