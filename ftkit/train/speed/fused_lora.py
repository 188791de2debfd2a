"""LoRA layers whose update is added inside the matmul (paper §6.3.2, LoRA; §5.3 training setup).

peft computes a LoRA layer as ``result + lora_B(lora_A(x)) * scaling``: after the small matmul
``[tokens, r] @ [r, out]`` it scales the whole ``[tokens, out]`` update and adds it to the base
output, two passes over a tensor as large as the layer's output, and the backward pass scales
the gradient once more. :class:`FusedLoraLinear` computes the same sum with one
``result.addmm_(h, B^T, alpha=scaling)`` on the base layer's fresh output: the scale and the
addition happen inside the matrix product, nothing is copied, and autograd scales only the
``[tokens, r]`` gradient. The values agree with peft's up to float rounding (tested);
merging, saving and every other path stay peft's own. Used by ftkit.train.sft.make_trainer
(``fused_lora=True``, the default); measured in ``benchmarks/train_throughput.py``.
"""
from __future__ import annotations

import torch
from peft.tuners.lora.layer import Linear as LoraLinear
from torch import nn


def _plain_adapter(layer, name: str) -> bool:
    """Whether adapter ``name`` of ``layer`` is a vanilla LoRA on plain Linear factors."""
    if name in layer.lora_variant:
        return False
    a, b = layer.lora_A[name], layer.lora_B[name]
    return type(a) is nn.Linear and type(b) is nn.Linear and b.bias is None and a.bias is None


class FusedLoraLinear(LoraLinear):
    """peft's LoRA ``Linear`` with the update added inside one matmul (see the module)."""
    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        active = [n for n in self.active_adapters if n in self.lora_A]
        if (args or kwargs or self.disable_adapters or self.merged or not active
                or not isinstance(self.base_layer, nn.Linear) or self.base_layer._forward_hooks
                or not all(_plain_adapter(self, n) for n in active)
                or (not torch.is_autocast_enabled(x.device.type)
                    and any(x.dtype != self.lora_A[n].weight.dtype for n in active))):
            return super().forward(x, *args, **kwargs)  # peft's own
        result = self.base_layer(x)  # a fresh tensor autograd does not keep: updated in place
        flat = result.view(-1, result.shape[-1])
        for name in active:
            h = self.lora_A[name](self.lora_dropout[name](x))
            weight = self.lora_B[name].weight.to(flat.dtype)  # what autocast would cast it to
            flat.addmm_(h.reshape(-1, h.shape[-1]).to(flat.dtype), weight.t(),
                        alpha=self.scaling[name])
        return result


def use_fused_lora(model: nn.Module) -> int:
    """Turn every peft LoRA ``Linear`` layer of ``model`` into a :class:`FusedLoraLinear`;
    returns how many.

    The class changes in place (weights, adapters and hooks stay); each call checks that the
    layer still qualifies (one or more vanilla LoRA adapters, not merged, no extra arguments)
    and otherwise runs peft's forward, so DoRA layers, merged layers and disabled adapters
    behave as before.
    """
    count = 0
    for module in model.modules():
        if type(module) is LoraLinear:
            module.__class__ = FusedLoraLinear
            count += 1
    return count
