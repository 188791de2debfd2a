"""The vocabulary head of TRL's preference trainers applied at completion positions only (§6.9).

TRL's DPO trainer calls its model with ``fused_lm_head=True`` and the labels: the model returns
per-token log-probabilities (and the entropy, mean logit and top-1 flags it logs) from TRL's
chunked head kernel instead of ``[batch, length, vocabulary]`` logits. Where Triton runs
(CUDA, XPU) that head scores only the positions that have a label; everywhere else it
projects every position, prompt and padding included, through the whole vocabulary and masks
the result afterwards. On a CPU most positions of a preference pair are prompt or padding.

:func:`use_completion_head` wraps the forward that TRL installed so that, on the plain causal
LMs the kit trains, the same kernel (``trl.kernels.ChunkedLogProbFunction``) receives only the
labelled positions, and the results are scattered back to the full shape: the same values
(a test compares them), fewer rows through the head. Anything it does not handle (no labels,
pre-shifted labels, MoE router logits, soft-capped or scaled logits) goes to TRL's forward.

With ``packed=True`` the backbone also runs padding-free: TRL pads a pair's chosen and
rejected sequences to one length (its own ``padding_free`` is switched off in TRL 1.16), and
here the right-padded batch is put end to end in one row with restarting positions and the
sequence boundaries that ``ftkit.train.speed.packing``'s attention reads, so the linear
layers see only real tokens. Inside each sequence causal attention sees what it saw padded.
Used by ``ftkit.align.dpo`` (``Levers.completion_logits``, ``Levers.packing``); measured in
``benchmarks/dpo_step.py``.
"""
from __future__ import annotations

import functools
import types

import torch
import torch.nn.functional as F
from trl.kernels import ChunkedLogProbFunction
from trl.trainer.utils import FusedCausalLMOutput

VOCAB_CHUNK = 32768  # vocabulary columns per tile of the kernel
FIELDS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
SCALE_KEYS = ("final_logit_softcapping", "logit_scale", "output_multiplier",
              "lm_head_multiplier", "logits_scaling")


def supported(model) -> bool:
    """Whether ``model``'s head is a bare projection the compact path reproduces exactly."""
    config = model.config.get_text_config()
    return (config is model.config and not getattr(config, "output_router_logits", False)
            and all(getattr(config, key, None) is None for key in SCALE_KEYS))


def packed_states(backbone, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  **kwargs) -> torch.Tensor | None:
    """The backbone's last hidden states ``[real tokens, hidden]`` of a right-padded batch,
    computed with its sequences end to end in one row (``None`` when a row is not
    right-padded). The states come in the row-major order of ``attention_mask``'s ones."""
    lengths = attention_mask.sum(1)
    keep = torch.arange(attention_mask.shape[1], device=lengths.device) < lengths[:, None]
    if not torch.equal(keep, attention_mask.bool()):
        return None
    bounds = F.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)
    positions = torch.arange(attention_mask.shape[1], device=lengths.device).expand_as(keep)
    longest = int(lengths.max())
    return backbone(input_ids=input_ids[keep][None], position_ids=positions[keep][None],
                    cu_seq_lens_q=bounds, cu_seq_lens_k=bounds, max_length_q=longest,
                    max_length_k=longest, **kwargs).last_hidden_state[0]


def use_completion_head(model, outputs: tuple[str, ...] = ("log_probs",),
                        packed: bool = False) -> bool:
    """Send only labelled positions through the head of a TRL fused forward on ``model``
    (the causal LM itself, not a peft wrapper); returns whether it did.

    ``outputs``: the per-token fields to compute (TRL's trainer asks for the ones it logs).
    ``packed``: run the backbone padding-free (:func:`packed_states`); the model's attention
    must be ``ftkit.train.speed.packing``'s (``use_packed_attention``).
    Calling it again changes nothing more.
    """
    if getattr(model, "_ftkit_completion_head", False) or not supported(model):
        return False
    fused = model.forward  # the forward TRL installed (falls back to the model's own)
    wanted = tuple(f for f in FIELDS if f in outputs or f == "log_probs")

    @functools.wraps(type(model).forward)
    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None,
                num_items_in_batch=None, **kwargs):
        if not fused_lm_head or labels is None or shift_labels is not None \
                or kwargs.get("output_router_logits"):
            return fused(*args, fused_lm_head=fused_lm_head, labels=labels,
                         shift_labels=shift_labels, num_items_in_batch=num_items_in_batch,
                         **kwargs)
        kwargs["use_cache"] = False
        targets = labels[:, 1:]
        mask = targets != -100
        states = None
        if packed and not args and kwargs.get("attention_mask") is not None:
            ids, attention = kwargs.pop("input_ids"), kwargs.pop("attention_mask")
            flat = packed_states(self.base_model, ids, attention, **kwargs)
            if flat is not None:  # a token's label is the next token of its own sequence
                states = flat[F.pad(targets, (0, 1), value=-100)[attention.bool()] != -100]
            kwargs.update(input_ids=ids, attention_mask=attention)
        if states is None:
            states = self.base_model(*args, **kwargs).last_hidden_state[:, :-1][mask]
        head = self.get_output_embeddings()
        parts = ChunkedLogProbFunction.apply(states, head.weight, head.bias,
                                             targets[mask], 1.0, VOCAB_CHUNK, None, 1.0, wanted)
        full = dict(zip(FIELDS, (None if x is None else x.new_zeros(mask.shape).masked_scatter(
            mask, x) for x in parts)))
        count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(loss=-full["log_probs"].sum() / count, label_mask=mask,
                                   **full)

    model.forward = types.MethodType(forward, model)
    model._ftkit_completion_head = True
    return True
