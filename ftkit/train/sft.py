"""Supervised fine-tuning: a transformers Trainer built from ftkit's configs (paper §5.3, §6.1).

``make_trainer`` turns a TrainConfig into TrainingArguments (bf16 autocast on CPUs that have
it, the live loss plot, no checkpoints unless asked), computes the loss's logits only at
labelled positions (ftkit.train.speed.fastloss), trains causal LMs on padding-free batches
(ftkit.train.speed.packing; evaluation batches are padded), masks the prompt tokens out of the loss,
and returns a ready Trainer. Bad data is refused before any compute (:func:`check_datasets`);
:func:`train` resumes from the newest valid checkpoint.
Configs stay out of the classes: builders take flat values (torchtune's rule).
Used in the fine-tuning notebooks (05-09) and benchmarks/.
"""
from __future__ import annotations

import importlib.util
from typing import Any

import torch
from accelerate.utils import extract_model_from_parallel

from ftkit.core.config import ConfigError, TrainConfig
from ftkit.core.env import headless, use_bf16
from ftkit.train import checkpoints, factory
from ftkit.train.checkpoints import IntegrityCallback, latest_valid_checkpoint
from ftkit.train.speed.fastloss import LabelOnlyLossTrainer
from ftkit.train.speed.layer import Levers
from ftkit.train.speed.packing import flatten_collator, use_packed_attention


def report_targets(train: TrainConfig) -> list[str]:
    """The trainers' ``report_to`` for ``train.report_to``; a tracker whose package is missing
    is refused here, naming the package, rather than deep inside the Trainer."""
    if train.report_to == "none":
        return []
    if importlib.util.find_spec(train.report_to) is None:
        raise ConfigError(f"TrainConfig.report_to = {train.report_to!r} needs its package: "
                          f"pip install {train.report_to} (or report_to='none')")
    return [train.report_to]


def training_arguments(train: TrainConfig, output_dir: str, seed: int = 42,
                       **overrides: Any):
    """TrainingArguments for ``train``; ``overrides`` win (e.g. ``save_strategy="steps"``)."""
    from transformers import TrainingArguments

    args = dict(
        output_dir=output_dir, seed=seed, learning_rate=train.lr,
        num_train_epochs=train.num_epochs, max_steps=train.max_steps or -1,
        per_device_train_batch_size=train.batch_size, per_device_eval_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        warmup_steps=train.warmup_ratio,  # a float below 1 is a share of all steps
        weight_decay=train.weight_decay, lr_scheduler_type=train.lr_scheduler,
        max_grad_norm=train.max_grad_norm, eval_strategy="steps", eval_steps=train.eval_steps,
        logging_steps=max(1, train.eval_steps // 5), bf16=use_bf16(train.bf16),
        use_cpu=not torch.cuda.is_available(), save_strategy="no", report_to=report_targets(train),
        disable_tqdm=headless(), dataloader_num_workers=0)
    return TrainingArguments(**{**args, **overrides})


def check_lengths(model, max_length: int, what: str = "ModelConfig.max_length") -> None:
    """Raise ConfigError when ``max_length`` tokens exceed the model's position limit.

    Past ``max_position_embeddings`` a model with learned positions fails deep inside torch and
    a RoPE model runs, silently, on positions it never saw; both are refused here.
    """
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(limit, int) and max_length > limit:
        raise ConfigError(f"{what} = {max_length}: must be <= the model's "
                          f"max_position_embeddings ({limit}); lower ModelConfig.max_length")


def check_datasets(train_ds, eval_ds, train: TrainConfig, model=None) -> None:
    """Refuse, before any optimiser step, data that the Trainer would fail on mid-run.

    Both sets must hold rows with ``input_ids`` and ``labels`` (``pairs_dataset``), the
    training set at least ``train.batch_size`` of them, and (with ``model``) no row may be
    longer than the model's ``max_position_embeddings``.
    """
    sets = {"train_ds": train_ds, "eval_ds": eval_ds}
    for name, ds in sets.items():
        if ds is None:
            continue
        if len(ds) == 0:
            raise ConfigError(f"{name} is empty (0 examples); it needs at least one tokenised "
                              "example")
        columns = getattr(ds, "column_names", None)
        missing = [c for c in ("input_ids", "labels") if columns is not None and c not in columns]
        if missing:
            raise ConfigError(f"{name} has columns {columns}, missing {missing}: make_trainer "
                              "needs tokenised rows with 'input_ids' and 'labels' (build them "
                              "with data.formatting.pairs_dataset or data.instruct.sft_dataset)")
    if len(train_ds) < train.batch_size:
        raise ConfigError(f"TrainConfig.batch_size = {train.batch_size} is larger than the "
                          f"training set ({len(train_ds)} examples)")
    if model is not None:
        for name, ds in sets.items():
            if ds is not None and "input_ids" in (getattr(ds, "column_names", None) or ()):
                longest = max(map(len, ds["input_ids"]))
                check_lengths(model, longest, f"longest {name} example (tokens)")


def make_trainer(model, tokenizer, train_ds, eval_ds, train: TrainConfig, output_dir: str,
                 seed: int = 42, title: str = "training", callbacks: list | None = None,
                 label_only_logits: bool = True, save_steps: int = 0,
                 frozen_bf16: bool = False, packing: bool = True, recast_frozen: bool = True,
                 fused_lora: bool = True, hold_frozen_bf16: bool = True, **overrides: Any):
    """A Trainer on padding-free batches with a completion-only loss and the live loss plot.

    ``label_only_logits``: compute the vocabulary logits of the training loss only where a
    label exists (ftkit.train.speed.fastloss; same loss, less compute). ``overrides`` go to
    TrainingArguments.
    ``packing``: train causal LMs on padding-free batches, each batch's examples end to end
    in one row with attention kept inside each example (ftkit.train.speed.packing); the same
    examples per step and the same loss, no pad tokens computed. Other models train on padded
    batches; evaluation batches stay padded.
    ``recast_frozen`` (with bf16): frozen Linear layers keep no bf16 copy of their weight for
    the backward pass (ftkit.train.speed.frozen_linear); the same numbers, less peak memory.
    ``hold_frozen_bf16`` (with ``recast_frozen``): while ``train()`` runs, those layers compute
    with one bf16 copy of each weight instead of casting it twice per step, and the fp32
    weight's pages (mapped from the safetensors file) go back to the OS; the same numbers.
    ``fused_lora``: peft LoRA layers add their scaled update inside one matmul
    (ftkit.train.speed.fused_lora); the same values up to float rounding, two fewer passes over each
    layer's output.
    ``frozen_bf16``: with bf16 training, keep a peft model's frozen Linear weights in bf16
    (``ftkit.train.speed.layer.frozen_weights_to_bf16``). Off by default: with
    ``recast_frozen`` it no longer pays measurably (benchmarks/train_throughput.py), and
    :func:`unwrap` casts the weights back to fp32 but bf16-rounded, so the base would no longer
    equal a freshly loaded one.
    ``save_steps``: a checkpoint every this many optimiser steps, with an integrity marker
    (ftkit.train.checkpoints; resume with :func:`train`); 0 = no checkpoints.
    """
    check_datasets(train_ds, eval_ds, train, model)
    from transformers import DataCollatorForSeq2Seq

    overrides = checkpoints.save_overrides(save_steps, overrides)
    if eval_ds is None:
        overrides.setdefault("eval_strategy", "no")
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    args = training_arguments(train, output_dir, seed, **overrides)
    packed = packing and use_packed_attention(model)
    levers = Levers(fused_lora=fused_lora, recast_frozen=recast_frozen,
                    hold_frozen_bf16=hold_frozen_bf16, frozen_bf16=frozen_bf16,
                    label_only_logits=label_only_logits, packing=packed)
    trainer = factory.build(LabelOnlyLossTrainer, model, args, path="sft", title=title,
                            callbacks=callbacks, levers=levers, train_dataset=train_ds,
                            eval_dataset=eval_ds,
                            data_collator=flatten_collator() if packed else collator)
    trainer.label_only = label_only_logits
    if packed:
        trainer.eval_collator = collator
    return trainer


def train(trainer, resume: bool = True):
    """``trainer.train()``, continuing from the newest valid checkpoint in its output_dir.

    With ``resume`` the checkpoints are checked newest first (ftkit.train.checkpoints); broken
    ones are skipped with a printed reason, and without a valid one training starts from
    scratch. A checkpoint needs the integrity marker when the trainer writes one
    (``make_trainer(save_steps=...)``). Returns the Trainer's TrainOutput.
    """

    marked = any(isinstance(c, IntegrityCallback) for c in trainer.callback_handler.callbacks)
    path = latest_valid_checkpoint(trainer.args.output_dir, marked) if resume else None
    if path:
        print(f"resuming from {path}", flush=True)
    else:
        print(f"training from scratch ({'no valid checkpoint' if resume else 'resume=False'})",
              flush=True)
    return trainer.train(resume_from_checkpoint=str(path) if path else None)


def unwrap(trainer):
    """The trained model without the Trainer's mixed-precision wrapper, in fp32 again.

    With ``bf16=True`` accelerate replaces ``model.forward`` by an autocast version that stays
    after training; a model evaluated that way computes in bf16 while a freshly loaded one does
    not, so comparisons and saved-then-reloaded outputs would differ.
    """

    model = extract_model_from_parallel(trainer.model, keep_fp32_wrapper=False)
    for p in model.parameters():  # undo frozen_weights_to_bf16: evaluation runs in fp32
        if not p.requires_grad and p.dtype == torch.bfloat16:
            p.data = p.data.float()
    return model
