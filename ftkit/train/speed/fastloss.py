"""Completion-only loss that projects to the vocabulary only where a label exists.

A causal LM's output head maps every position's hidden state to ~49k vocabulary logits, yet
with completion-only training (prompt tokens labelled -100, ftkit.data.formatting) most
positions never enter the loss. :class:`LabelOnlyLossTrainer` runs the decoder, keeps the
hidden states whose *next* token has a label, and applies the head and the cross-entropy to
those alone: the same loss (mean over label tokens), less compute and far less memory for the
logits. Measured in ``benchmarks/train_throughput.py``. Paper §5.3 (training setup).
Used by ftkit.train.sft.make_trainer (``label_only_logits=True``, the default).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from transformers import Trainer

IGNORE_INDEX = -100
PACKED_KEYS = ("position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


def _parts(model):
    """``(decoder, head)`` of a causal LM or a peft model wrapping one, or None if unknown."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = getattr(base, "model", None)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if decoder is None or head is None or not isinstance(decoder, torch.nn.Module):
        return None
    return decoder, head


def label_only_loss(model, input_ids, attention_mask, labels,
                    num_items_in_batch: int | torch.Tensor | None = None,
                    **packed: torch.Tensor | int) -> torch.Tensor:
    """Next-token cross-entropy over the labelled positions, logits for those only.

    The mean over this batch's label tokens, or (like transformers' own causal-LM loss) the
    sum divided by ``num_items_in_batch`` when the Trainer counts labels across accumulation.
    ``packed``: ``position_ids`` and example boundaries of a flattened batch
    (ftkit.train.speed.packing), passed on to the decoder.
    """
    decoder, head = _parts(model)
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, **packed).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    logits = head(hidden[:, :-1][keep]).float()
    if num_items_in_batch is None:
        return F.cross_entropy(logits, targets[keep])
    return F.cross_entropy(logits, targets[keep], reduction="sum") / num_items_in_batch


@contextlib.contextmanager
def _no_adapter_input_casts(model, active: bool = True):
    """Switch off peft's cast of adapter inputs to the adapter weights' dtype while inside.

    Under bf16 autocast that fp32 copy of each input is cast straight back to bf16 by autocast
    itself, so skipping it changes no value. Layers without the switch ignore it.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)] if active else []
    before = [m.__dict__.get("cast_input_dtype_enabled") for m in layers]
    for m in layers:
        m.cast_input_dtype_enabled = False
    try:
        yield
    finally:
        for m, value in zip(layers, before):
            if value is None:
                del m.cast_input_dtype_enabled
            else:
                m.cast_input_dtype_enabled = value


def _unwrap_ddp(model):
    """The module inside a DistributedDataParallel wrapper, else ``model`` itself."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def _through_ddp(ddp, inner, args, packed) -> torch.Tensor:
    """:func:`label_only_loss` of ``inner``, called through its DDP wrapper ``ddp``.

    DDP synchronises gradients only for a forward that passes through the wrapper, so the
    wrapped module's ``forward`` is swapped for the label-only loss for this one call."""

    def forward(*_, **__):
        return label_only_loss(inner, *args, **packed)

    inner.forward = forward
    try:
        return ddp()
    finally:
        del inner.forward


class LabelOnlyLossTrainer(Trainer):
    """A Trainer whose training loss computes logits at labelled positions only.

    Falls back to the model's own loss for models it cannot split into decoder and head, when
    outputs are requested (evaluation with predictions), or for batches without labels. Runs
    under bf16 autocast itself when ``args.bf16`` (the decoder is called directly, outside the
    autocast wrapper the Trainer puts around ``model.forward``). Under DistributedDataParallel
    (``torchrun``/``accelerate launch``, ftkit.train.distributed) the loss is computed through
    the wrapper, so gradients are averaged over processes as for the model's own loss.
    """

    eval_collator = None  # set when training batches are flattened (ftkit.train.speed.packing)
    label_only = True  # False: the model's own loss over full-sequence logits

    def _padded(self, build, dataset):
        if self.eval_collator is None:
            return build(dataset)
        train_collator, self.data_collator = self.data_collator, self.eval_collator
        try:
            return build(dataset)
        finally:
            self.data_collator = train_collator

    def get_eval_dataloader(self, eval_dataset=None):
        """Evaluation keeps padded batches (and with them the model's own attention)."""
        return self._padded(super().get_eval_dataloader, eval_dataset)

    def get_test_dataloader(self, test_dataset):
        return self._padded(super().get_test_dataloader, test_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.get("labels")
        inner = _unwrap_ddp(model)
        if not self.label_only or return_outputs or labels is None or _parts(inner) is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        device = inputs["input_ids"].device.type
        packed = {k: v for k, v in inputs.items() if k in PACKED_KEYS}
        # under autocast peft's cast of each adapter input to fp32 is undone at once by
        # autocast's cast to bf16: the same values, two copies saved per adapter and pass
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=self.args.bf16), \
                _no_adapter_input_casts(inner, active=self.args.bf16):
            args = (inputs["input_ids"], inputs.get("attention_mask"), labels, num_items_in_batch)
            if inner is model:
                return label_only_loss(model, *args, **packed)
            loss = _through_ddp(model, inner, args, packed)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # num_items_in_batch counts every process's labels and DDP averages the gradients
            # over processes: scaled back, each step's gradient is the global token mean's
            loss = loss * self.accelerator.num_processes
        return loss
