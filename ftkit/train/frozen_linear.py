"""Frozen Linear layers that keep no bf16 weight copy between forward and backward (paper §5.3).

Under bf16 autocast a Linear layer casts its fp32 weight to bf16 in the forward pass, and
autograd keeps that cast copy until the backward pass needs it for the input gradient. With
LoRA the base weights are frozen, so the copies are all autograd keeps of them: about half the
model's size (212 MB for SmolLM2-135M) held through every step. :class:`RecastLinear` keeps a
reference to the fp32 weight instead and casts it again in the backward pass: the same numbers,
less peak memory, one extra cast per layer and step. Only frozen weights without a trained bias
are switched; everything else keeps the stock Linear. Used by ftkit.train.sft.make_trainer
(``recast_frozen=True``, the default); measured in ``benchmarks/train_throughput.py``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _RecastLinear(torch.autograd.Function):
    """``F.linear(x, weight, bias)`` with a frozen weight and bias; saves the weight itself."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        out = F.linear(x, weight, bias)  # autocast (if on) casts here; nothing is recorded
        ctx.save_for_backward(weight)
        ctx.x_dtype, ctx.compute_dtype = x.dtype, out.dtype
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (weight,) = ctx.saved_tensors
        grad_x = torch.matmul(grad_out.to(ctx.compute_dtype), weight.to(ctx.compute_dtype))
        return grad_x.to(ctx.x_dtype), None, None


class RecastLinear(nn.Linear):
    """An ``nn.Linear`` whose frozen weight is cast again in backward (see the module)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.requires_grad or (self.bias is not None and self.bias.requires_grad) \
                or not torch.is_grad_enabled() or not x.requires_grad:
            return F.linear(x, self.weight, self.bias)
        return _RecastLinear.apply(x, self.weight, self.bias)


def use_recast_frozen_linears(model: nn.Module) -> int:
    """Turn every frozen ``nn.Linear`` of ``model`` into a :class:`RecastLinear`; returns how many.

    The class changes in place (weights, hooks and peft wrappers stay); the check for frozen
    weights runs at each call, so a layer unfrozen later trains normally.
    """
    count = 0
    for module in model.modules():
        if type(module) is nn.Linear and not module.weight.requires_grad:
            module.__class__ = RecastLinear
            count += 1
    return count
