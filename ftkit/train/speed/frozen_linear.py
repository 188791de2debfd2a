"""Frozen Linear layers that keep no bf16 weight copy between forward and backward (paper §5.3).

Under bf16 autocast a Linear layer casts its fp32 weight to bf16 in the forward pass, and
autograd keeps that cast copy until the backward pass needs it for the input gradient. With
LoRA the base weights are frozen, so the copies are all autograd keeps of them: about half the
model's size (212 MB for SmolLM2-135M) held through every step. :class:`RecastLinear` keeps a
reference to the fp32 weight instead and casts it again in the backward pass: the same numbers,
less peak memory, one extra cast per layer and step. Only frozen weights without a trained bias
are switched; everything else keeps the stock Linear. Used by ftkit.train.sft.make_trainer
(``recast_frozen=True``, the default); measured in ``benchmarks/train_throughput.py``.

Casting every frozen weight twice per step is itself ~7% of a bf16 step on a 2-core CPU
(104 ms of 1.5 s for SmolLM2-135M, lm_head included). :class:`FrozenWeightCache` (a Trainer
callback) therefore gives each recast layer one bf16 copy for the length of ``train()``, used
in forward and backward, when the fp32 weight comes from a mapped safetensors file: its pages
are then dropped from the process (ftkit.core.env.release_file_pages), so memory holds the bf16 copy
instead of the fp32 weight, not both. Weights that another layer reads in fp32 as well
(DoRA's weight norms) get the copy but keep their pages: faster, at the copy's memory. Weights
that are not file-mapped, or whose pages cannot be released, keep the cast per step (a copy
would only add memory).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import TrainerCallback

from ftkit.core.env import file_mapped, file_mappings, release_file_pages


class _RecastLinear(torch.autograd.Function):
    """``F.linear(x, weight, bias)`` with a frozen weight and bias; saves the weight itself."""
    @staticmethod
    def forward(ctx, x, weight, bias):
        if bias is not None and x.dim() > 2:
            # what F.linear computes for a batched input with a bias (one addmm over the
            # flattened rows), but reshaped without creating a view: a view returned from a
            # custom Function may not be updated in place (the fused LoRA update does that)
            flat = torch.addmm(bias, x.reshape(-1, x.shape[-1]), weight.t())
            out = torch.ops.aten._unsafe_view(flat, (*x.shape[:-1], flat.shape[-1]))
        else:
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
    _bf16 = None  # (weight version, data pointer, bf16 copy) while FrozenWeightCache holds one

    def _weight(self, x: torch.Tensor) -> torch.Tensor:
        """The bf16 copy where one is held, still matches the weight and autocast computes in
        bf16; otherwise the weight itself."""
        held, weight = self._bf16, self.weight
        if (held is not None and held[0] == weight._version and held[1] == weight.data_ptr()
                and not weight.requires_grad and torch.is_autocast_enabled(x.device.type)
                and torch.get_autocast_dtype(x.device.type) == torch.bfloat16):
            return held[2]
        return weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self._weight(x)
        if self.weight.requires_grad or (self.bias is not None and self.bias.requires_grad) \
                or not torch.is_grad_enabled() or not x.requires_grad:
            return F.linear(x, weight, self.bias)
        return _RecastLinear.apply(x, weight, self.bias)


def use_recast_frozen_linears(model: nn.Module) -> int:
    """Turn every frozen ``nn.Linear`` of ``model`` into a :class:`RecastLinear`; returns how many.

    The class changes in place (weights, hooks and peft wrappers stay); the check for frozen
    weights runs at each call, so a layer unfrozen later trains normally. Quantised weights
    (torchao tensor subclasses) keep the stock Linear: their backward is the subclass's own,
    and they implement no plain matrix product with the weight on the right.
    """
    count = 0
    for module in model.modules():
        if (type(module) is nn.Linear and not module.weight.requires_grad
                and type(module.weight.detach()) is torch.Tensor):
            module.__class__ = RecastLinear
            count += 1
    return count


def _read_elsewhere(model: nn.Module) -> set[int]:
    """ids of base weights that a peft LoRA variant reads itself (DoRA's norms)."""
    return {id(module.get_base_layer().weight) for module in model.modules()
            if getattr(module, "lora_variant", None)}


def hold_bf16_copies(model: nn.Module) -> tuple[int, int]:
    """Give each file-mapped frozen :class:`RecastLinear` weight a bf16 copy and release its
    fp32 pages; returns ``(layers, bytes released)``. A weight whose pages cannot be released
    keeps no copy (it would only add memory), except where another layer reads the fp32
    weight anyway (DoRA). Undone by :func:`drop_bf16_copies`."""

    ranges, kept = file_mappings(), _read_elsewhere(model)
    layers, released, copies = 0, 0, {}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if not isinstance(module, RecastLinear) or weight.requires_grad \
                or weight.dtype != torch.float32 or not file_mapped(weight, ranges):
            continue
        start = weight.data_ptr()
        if start not in copies:  # tied weights (embedding and head) share one copy
            copies[start] = weight.detach().to(torch.bfloat16)  # before its pages go
            if id(weight) not in kept:
                freed = release_file_pages([weight], ranges)
                copies[start] = copies[start] if freed else None
                released += freed
        if copies[start] is not None:
            module._bf16 = (weight._version, start, copies[start])
            layers += 1
    return layers, released


def drop_bf16_copies(model: nn.Module) -> None:
    """Forget the bf16 copies of :func:`hold_bf16_copies`: the fp32 weights serve again."""
    for module in model.modules():
        if isinstance(module, RecastLinear) and module._bf16 is not None:
            del module._bf16


class FrozenWeightCache(TrainerCallback):
    """Holds the bf16 weight copies of the recast layers while ``train()`` runs (module text)."""
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if args.bf16 and model is not None:
            hold_bf16_copies(model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if model is not None:
            drop_bf16_copies(model)
