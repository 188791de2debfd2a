"""Chat-formatted image/text examples, their collator, and one training stage (paper §11.2.2).

An example is an image, a user turn (the image, then the question or the caption request) and
the one assistant turn to learn. The collator renders both through the processor's chat
template, so the same code serves the offline LLaVA assembly and a hub VLM, and masks the
prompt (image placeholders included) out of the loss. :func:`train_stage` runs one stage with a
transformers Trainer built from ftkit's TrainingArguments and live loss plot: vocabulary logits
only at answer positions (:func:`label_only_loss`) and, for the LLaVA assembly, padding-free
batches (:func:`flatten`, the same examples and loss without pad tokens).
Used in notebooks/17_multimodal_vqa.ipynb; measured in benchmarks/vqa_step.py.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import torch
from PIL import Image

from ftkit.core.config import ConfigError, TrainConfig
from ftkit.core.env import use_bf16
from ftkit.train import factory
from ftkit.train.adapters import trainable_summary
from ftkit.train.finetune import StepTimer
from ftkit.train.sft import training_arguments, unwrap
from ftkit.train.speed import packing as packed_attention
from ftkit.train.speed.fastloss import _parts
from ftkit.train.speed.layer import Levers, frozen_weights_to_bf16
from ftkit.vqa import shapes

CAPTION_PROMPT = "Describe the image."


def prepare_image(image: Any, size: int | None = None):
    """An RGB ``PIL.Image`` from a PIL image or an ``(H, W[, C])`` uint8 array, optionally
    resized to ``size`` pixels square; a missing image is a clear error."""

    if image is None:
        raise ValueError("missing image: every question needs the image it asks about")
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image.astype(np.uint8))
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL image or a NumPy array, not {type(image).__name__}")
    image = image.convert("RGB")  # RGBA, greyscale (L), palette (P) … all become RGB
    if size and image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    return image


def prepare_question(question: Any) -> str:
    """The question stripped of surrounding space; an empty one is a clear error."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"empty question {question!r}: ask something about the image")
    return question.strip()


def user_turn(text: str) -> list[dict]:
    """A one-message conversation: the image, then ``text`` (the processor's chat format)."""
    return [{"role": "user", "content": [{"type": "image"},
                                         {"type": "text", "text": prepare_question(text)}]}]


def caption_examples(scenes: list[dict]) -> list[dict]:
    """Captioning examples: "Describe the image." → the scene's caption."""
    return [{"image": shapes.render(s), "prompt": CAPTION_PROMPT, "answer": s["caption"]}
            for s in scenes]


def qa_examples(scenes: list[dict]) -> list[dict]:
    """VQA examples, one per question: question + "Answer with one word." → the answer."""
    return [{"image": shapes.render(r["scene"]), "prompt": r["question"] + shapes.SUFFIX,
             "answer": r["answer"], "type": r["type"]} for r in shapes.qa_rows(scenes)]


class VLMCollator:
    """Batches examples for training: chat template, image placeholders, prompt-masked labels.

    Labels are the input ids with -100 on padding and on every prompt token, so the loss is the
    answer (and its end-of-turn token) only. Right padding, as training wants; with ``flat`` the
    batch comes as one row without padding (:func:`flatten`).
    """

    def __init__(self, processor, image_size: int | None = None, flat: bool = False):
        self.processor, self.image_size, self.flat = processor, image_size, flat

    def texts(self, example: dict) -> tuple[str, str]:
        turn = user_turn(example["prompt"])
        answer = [{"role": "assistant", "content": [{"type": "text",
                                                     "text": example["answer"]}]}]
        prompt = self.processor.apply_chat_template(turn, add_generation_prompt=True)
        full = self.processor.apply_chat_template(turn + answer)
        if not full.startswith(prompt):
            raise ValueError("the chat template renders the prompt differently inside the "
                             "full conversation; cannot mask it out of the loss")
        return prompt, full

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        prompts, fulls = zip(*(self.texts(e) for e in examples))
        images = [[prepare_image(e["image"], self.image_size)] for e in examples]
        tok = self.processor.tokenizer
        side, tok.padding_side = tok.padding_side, "right"
        try:
            batch = self.processor(text=list(fulls), images=images, return_tensors="pt",
                                   padding=True)
            prompt_ids = self.processor(text=list(prompts), images=images, padding=True,
                                        return_tensors="pt")["attention_mask"].sum(1)
        finally:
            tok.padding_side = side
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = -100
        for i, n in enumerate(prompt_ids.tolist()):
            labels[i, :n] = -100
        batch = {**batch, "labels": labels}
        return flatten(batch) if self.flat else batch


def flatten(batch: dict) -> dict:
    """A right-padded batch as one row of its real tokens (padding-free training).

    ``input_ids`` and ``labels`` ``(B, T)`` become ``(1, N)``, N the batch's real tokens;
    ``position_ids`` restart at every example and ``cu_seq_lens_q/k`` mark where each begins, so
    that :func:`ftkit.train.speed.packing.segment_attention` attends within examples only. The
    image tensors stay as they are: the model swaps the projected patches in wherever the image
    placeholders sit. No example's first token is a label, so none is predicted across a seam.
    """
    real = batch["attention_mask"].bool()
    lengths = real.sum(1)  # (B,)
    cu = torch.nn.functional.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)  # (B + 1,)
    labels = batch["labels"][real]
    labels[cu[:-1].long()] = -100
    longest = int(lengths.max())
    rest = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "labels")}
    return {**rest, "input_ids": batch["input_ids"][real][None], "labels": labels[None],
            "position_ids": torch.cat([torch.arange(n) for n in lengths.tolist()])[None],
            "cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest,
            "max_length_k": longest}


def use_packed_language_model(model) -> bool:
    """Switch a LLaVA model's language model to packed attention (``segment_attention``).

    Returns False, changing nothing, for other VLMs (their forward may not pass the example
    boundaries on); those train on padded batches. Without boundaries (evaluation, generation)
    the attention defers to SDPA, so outputs there are unchanged.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "model_type", None) != "llava":
        return False
    return packed_attention.set_packed_attention(base.model.language_model)


def label_only_loss(model, inputs: dict, num_items_in_batch=None) -> torch.Tensor:
    """Next-token loss over the answer tokens, vocabulary logits computed there only.

    The VLM's decoder (image features swapped into the text embeddings) runs on the whole
    batch; the output head and cross-entropy see only positions whose next token has a label
    (the answer), as :mod:`ftkit.train.speed.fastloss` does for text models.
    """
    import torch.nn.functional as F

    decoder, head = _parts(model)
    labels = inputs["labels"]
    hidden = decoder(**{k: v for k, v in inputs.items() if k != "labels"}).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != -100
    logits = head(hidden[:, :-1][keep]).float()  # (label tokens, vocab)
    if num_items_in_batch is None:
        return F.cross_entropy(logits, targets[keep])
    return F.cross_entropy(logits, targets[keep], reduction="sum") / num_items_in_batch


def _vlm_trainer_class():
    from transformers import Trainer

    class VLMTrainer(Trainer):
        """A Trainer whose loss runs under bf16 autocast itself (the wrapper accelerate puts
        on ``forward`` is not put back on a model trained before) with label-only logits."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            device = inputs["input_ids"].device.type
            with torch.autocast(device_type=device, dtype=torch.bfloat16,
                                enabled=self.args.bf16):
                if return_outputs:
                    return super().compute_loss(model, inputs, True, num_items_in_batch)
                return label_only_loss(model, inputs, num_items_in_batch)

    return VLMTrainer


def trainer(model, processor, examples: list[dict], train: TrainConfig, output_dir: str,
            seed: int = 42, title: str = "training", callbacks: list | None = None,
            packing: bool = True):
    """A transformers Trainer for a VLM stage: ftkit's TrainingArguments, live plot, collator.

    No evaluation during training (the notebook scores exact-match answers between stages);
    ``remove_unused_columns=False`` keeps the raw images for the collator. ``packing``: train the
    LLaVA assembly on padding-free batches (:func:`flatten`); other VLMs train padded.
    """

    if len(examples) < train.batch_size:
        raise ConfigError(f"TrainConfig.batch_size = {train.batch_size} is larger than the "
                          f"training set ({len(examples)} examples)")
    args = training_arguments(train, output_dir, seed, eval_strategy="no",
                              remove_unused_columns=False,
                              logging_steps=max(1, (train.max_steps or 10) // 10))
    size = getattr(getattr(model, "config", None), "vision_config", None)
    size = getattr(size, "image_size", None) if size is not None else None
    flat = packing and use_packed_language_model(model)
    return factory.build(_vlm_trainer_class(), model, args, path="vqa", title=title,
                         callbacks=callbacks, levers=Levers(label_only_logits=True, packing=flat),
                         train_dataset=examples, data_collator=VLMCollator(processor, size, flat))


def train_stage(model, processor, examples: list[dict], train: TrainConfig, steps: int,
                output_dir: str, seed: int = 42, title: str = "training",
                packing: bool = True, frozen_bf16: bool = True) -> tuple[Any, dict]:
    """Train ``steps`` optimiser steps on ``examples``; returns ``(model, cost row)``.

    The row holds the trainable parameters and share, the median step time, the wall time and
    the mean training loss. ``frozen_bf16``: with bf16 autocast, the frozen Linear weights are
    stored in bf16 while training (:func:`ftkit.train.speed.layer.frozen_weights_to_bf16`:
    the same training steps, ~280 MB less peak memory for the workshop VLM) and stay
    bf16-rounded afterwards; ``False`` keeps their fp32 values (the speed layer then computes
    with a bf16 copy of each while training). Measured in ``benchmarks/vqa_step.py``: the
    same speed and held-out loss either way. The model comes back unwrapped (no autocast
    wrapper, fp32 again), in eval mode. ``packing``: see :func:`trainer`.
    """

    counts = trainable_summary(model)
    if frozen_bf16 and use_bf16(train.bf16):  # the condition under which the Trainer autocasts
        frozen_weights_to_bf16(model, peft_only=False)
    timer = StepTimer()
    stage_cfg = dataclasses.replace(train, max_steps=steps)
    t0 = time.perf_counter()
    run = trainer(model, processor, examples, stage_cfg, output_dir, seed, title, [timer],
                  packing)
    result = run.train()
    model = unwrap(run)
    return model.eval(), {"trainable_params": counts["trainable"],
                          "total_params": counts["total"], "trainable_share": counts["share"],
                          "step_seconds": timer.median,
                          "train_seconds": time.perf_counter() - t0,
                          "train_loss": result.training_loss}
