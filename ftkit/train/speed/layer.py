"""The speed layer's one entry point, which the trainer factory applies to every training path.

:func:`apply` switches a model to the faster layer forms that keep its numbers — fused LoRA
updates (:mod:`~ftkit.train.speed.fused_lora`), frozen Linear layers recast in backward and
computing with one held bf16 copy while ``train()`` runs (:mod:`~ftkit.train.speed.frozen_linear`)
— and returns the Trainer callbacks they need. :class:`Levers` says which are on; every lever
can be switched off. The levers that live in a path's own trainer class (label-only logits
and padding-free batches for SFT, VQA and DPO, reference log-probabilities computed once for
DPO, the rollout levers of GRPO and PPO, Whisper's cross-attention on the label side, the reward
model's length-sorted sub-batches) are named in the same :class:`Levers` by the path that
uses them, so that one log line per run says what is on (:func:`describe`).

bf16 autocast itself is chosen by measured hardware support (``ftkit.core.env.use_bf16``) when
the path builds its arguments; the recast and held-copy levers act only under it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ftkit.train.speed.frozen_linear import FrozenWeightCache, use_recast_frozen_linears
from ftkit.train.speed.fused_lora import use_fused_lora


@dataclass(frozen=True)
class Levers:
    """Which speed levers a training run uses; ``None`` = the path has no such lever.

    The first four act on the model's layers (:func:`apply`); the rest are a path's own and
    are set by it (``ftkit.train.sft``, ``ftkit.align.dpo``, ``ftkit.align.grpo``,
    ``ftkit.align.ppo``, ``ftkit.asr.whisper``, ``ftkit.align.reward``, ``ftkit.vqa.train``).
    """
    fused_lora: bool = True
    recast_frozen: bool = True
    hold_frozen_bf16: bool = True
    frozen_bf16: bool = False
    label_only_logits: bool | None = None
    packing: bool | None = None
    reference_once: bool | None = None
    completion_logits: bool | None = None
    merged_rollouts: bool | None = None
    shared_prompts: bool | None = None
    label_side_cross_attention: bool | None = None
    length_sorted_chunks: bool | None = None

    def replace(self, **changes) -> Levers:
        return dataclasses.replace(self, **changes)


PLAIN = Levers(fused_lora=False, recast_frozen=False, hold_frozen_bf16=False)


def frozen_weights_to_bf16(model, peft_only: bool = True) -> int:
    """Store the frozen Linear weights of a peft model in bf16; returns how many changed.

    Under bf16 autocast every matmul reads its weight as bf16 anyway, so a frozen fp32 weight is
    cast again at every forward and backward; kept in bf16 it is cast never and takes half the
    memory, and the matmuls compute exactly what they computed before. Embeddings, norms and
    the (tied) output head stay fp32, so the residual stream keeps its precision; the trained
    adapter weights stay fp32. Only for peft models (full fine-tuning keeps fp32 weights),
    unless ``peft_only=False`` (e.g. a VLM whose projector alone trains).
    """
    if peft_only and not hasattr(model, "peft_config"):
        return 0
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    keep = {id(p) for p in (head.parameters() if head is not None else ())}
    changed = 0
    for module in model.modules():
        if not isinstance(module, nn.Linear):
            continue
        w = module.weight
        if not w.requires_grad and w.dtype == torch.float32 and id(w) not in keep:
            w.data = w.data.to(torch.bfloat16)
            changed += 1
    return changed


def apply(model: nn.Module, bf16: bool, levers: Levers) -> tuple[list, dict]:
    """Switch ``model``'s layers to the forms ``levers`` asks for; returns the callbacks they
    need and how many layers each lever changed (for :func:`describe`).

    ``bf16``: whether the run trains under bf16 autocast (the TrainingArguments' ``bf16``);
    the frozen-weight levers act only then. Calling it twice changes nothing more.
    """
    counts = {"fused_lora": 0, "recast_frozen": 0, "frozen_bf16": 0}
    if levers.frozen_bf16 and bf16:
        counts["frozen_bf16"] = frozen_weights_to_bf16(model)
    if levers.fused_lora:
        counts["fused_lora"] = use_fused_lora(model)
    if not (levers.recast_frozen and bf16):
        return [], counts
    counts["recast_frozen"] = use_recast_frozen_linears(model)
    return ([FrozenWeightCache()] if levers.hold_frozen_bf16 else []), counts


def describe(path: str, bf16: bool, levers: Levers, counts: dict | None = None) -> str:
    """One line: the path, its precision and each lever on or off (layers changed where known)."""
    counts = counts or {}
    parts = [f"bf16 autocast {'on' if bf16 else 'off (fp32)'}"]
    for field in dataclasses.fields(levers):
        value = getattr(levers, field.name)
        if value is None:
            continue
        needs_bf16 = field.name in ("recast_frozen", "hold_frozen_bf16", "frozen_bf16")
        state = "on" if value and (bf16 or not needs_bf16) else "off"
        n = counts.get(field.name)
        parts.append(f"{field.name.replace('_', ' ')} {state}"
                     + (f" ({n} layers)" if state == "on" and n else ""))
    return f"speed layer [{path}]: " + ", ".join(parts)


def prepare(model: nn.Module, bf16: bool, levers: Levers | None, path: str,
            callbacks: list | None = None) -> tuple[Levers, list]:
    """What a trainer build does with the layer: :func:`apply` ``levers`` (default all on),
    print the run's :func:`describe` line, and return the levers and ``callbacks`` with the
    layer's own added (``ftkit.train.factory.build``, ``ftkit.train.loop.CallbackLoop``)."""
    levers = Levers() if levers is None else levers
    speed_callbacks, counts = apply(model, bf16, levers)
    print(describe(path, bf16, levers, counts), flush=True)
    return levers, [*(callbacks or []), *speed_callbacks]
